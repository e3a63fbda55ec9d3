def dropout_forward(x, keep, p):
    """y (the shape of x) from x and the boolean mask keep (True: the unit survives); p: drop probability."""
    return x * keep / (1 - p)  # E[y] = (1 - p) · x / (1 - p) = x


def dropout_backward(dy, keep, p):
    """dx from dy, through the forward's mask."""
    return dy * keep / (1 - p)  # y is linear in x with this very factor
