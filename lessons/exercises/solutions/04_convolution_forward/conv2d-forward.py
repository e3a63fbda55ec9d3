import numpy as np


def conv2d_forward(x, weight, bias, S, P):
    """y (N, F, OH, OW) from x (N, C, H, W), weight (F, C, KH, KW), bias (F,), stride S, padding P."""
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))  # (N, C, H + 2P, W + 2P)
    y = np.empty((N, F, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * S : oh * S + KH, ow * S : ow * S + KW]  # (N, C, KH, KW)
            y[:, :, oh, ow] = np.einsum("ncij,fcij->nf", window, weight) + bias  # (N, F)
    return y
