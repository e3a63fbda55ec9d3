def linear_backward(dy, x, weight):
    """(dx, dweight, dbias) of y = x @ weight + bias, given dy (N, M), x (N, D), weight (D, M)."""
    dx = dy @ weight.T  # (N, M) @ (M, D) -> (N, D)
    dweight = x.T @ dy  # (D, N) @ (N, M) -> (D, M): a sum over the batch
    dbias = dy.sum(axis=0)  # (M,): bias is added to every row
    return dx, dweight, dbias
