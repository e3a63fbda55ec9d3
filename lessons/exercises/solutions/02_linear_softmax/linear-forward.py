def linear_forward(x, weight, bias):
    """y (N, M) from x (N, D), weight (D, M), bias (M,)."""
    return x @ weight + bias  # (N, D) @ (D, M) -> (N, M); bias broadcasts over the N rows
