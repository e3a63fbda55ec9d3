def _window_sum(v, before, after):
    """out[:, c] = sum of v[:, c'] for c' from c - before to c + after, over the channels that exist."""
    out = v.copy()
    for d in range(1, before + 1):
        out[:, d:] += v[:, :-d]
    for d in range(1, after + 1):
        out[:, :-d] += v[:, d:]
    return out


def lrn_backward(dy, x, size, alpha, beta, k):
    """dx (N, C, H, W) from dy (N, C, H, W) and the forward's input x (across channels, the paper's alpha)."""
    s = k + alpha * _window_sum(x * x, size // 2, (size - 1) // 2)  # (N, C, H, W)
    y = x * s**-beta
    # The outputs i that see channel j: the mirrored window [j - (size - 1)//2, j + size//2].
    return dy * s**-beta - 2 * alpha * beta * x * _window_sum(dy * y / s, (size - 1) // 2, size // 2)
