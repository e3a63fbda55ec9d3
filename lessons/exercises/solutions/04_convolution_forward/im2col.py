import numpy as np


def im2col(x, KH, KW, S, P):
    """cols_batch_first (C·KH·KW, N·OH·OW) from x (N, C, H, W)."""
    N, C, H, W = x.shape
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    cols = np.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for kh in range(KH):  # one strided slice per kernel offset covers every window at once
        for kw in range(KW):
            rows = slice(kh, kh + S * (OH - 1) + 1, S)
            columns = slice(kw, kw + S * (OW - 1) + 1, S)
            cols[:, kh, kw] = x_pad[:, :, rows, columns].transpose(1, 0, 2, 3)  # (C, N, OH, OW)
    return cols.reshape(C * KH * KW, N * OH * OW)
