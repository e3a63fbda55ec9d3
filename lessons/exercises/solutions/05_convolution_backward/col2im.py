import numpy as np


def col2im(cols_batch_first, x_shape, KH, KW, S, P):
    """(N, C, H, W) from cols_batch_first (C·KH·KW, N·OH·OW): each entry added where im2col took it."""
    N, C, H, W = x_shape
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    cols = cols_batch_first.reshape(C, KH, KW, N, OH, OW)
    dx_pad = np.zeros((N, C, H + 2 * P, W + 2 * P), dtype=cols.dtype)
    for kh in range(KH):
        for kw in range(KW):
            # kernel offset (kh, kw) of every window: pixels kh, kh + S, ..., of the padded input
            rows = slice(kh, kh + S * (OH - 1) + 1, S)
            columns = slice(kw, kw + S * (OW - 1) + 1, S)
            dx_pad[:, :, rows, columns] += cols[:, kh, kw].transpose(
                1, 0, 2, 3
            )  # (N, C, OH, OW); +=: overlap
    return dx_pad[:, :, P : P + H, P : P + W]
