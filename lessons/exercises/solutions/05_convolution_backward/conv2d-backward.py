import numpy as np


def conv2d_backward(dy, x, weight, stride, padding):
    """(dx, dweight, dbias) from dy (N, F, OH, OW), x (N, C, H, W), weight (F, C, KH, KW)."""
    S, P = stride, padding
    F, C, KH, KW = weight.shape
    N, C, H, W = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))  # (N, C, H + 2P, W + 2P)
    dx_pad = np.zeros_like(x_pad)
    dweight = np.zeros_like(weight)
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            rows, cols = slice(oh * S, oh * S + KH), slice(ow * S, ow * S + KW)
            dy_here = dy[:, :, oh, ow]  # (N, F): this output position, every example and filter
            dweight += np.einsum("nf,ncij->fcij", dy_here, x_pad[:, :, rows, cols])  # sum over n, and +=
            dx_pad[:, :, rows, cols] += np.einsum("nf,fcij->ncij", dy_here, weight)  # +=: windows overlap
    dx = dx_pad[:, :, P : P + H, P : P + W]  # the padding is not part of x
    dbias = dy.sum(axis=(0, 2, 3))  # bias[f] is added at every (n, oh, ow)
    return dx, dweight, dbias
