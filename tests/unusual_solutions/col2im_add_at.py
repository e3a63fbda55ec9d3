"""Correct, vectorised with np.add.at (which adds repeated indices, where += on a fancy index would keep only
one): the checker must pass it."""

import numpy as np


def col2im(cols_batch_first, x_shape, KH, KW, S, P):
    N, C, H, W = x_shape
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    c, kh, kw = np.unravel_index(np.arange(C * KH * KW), (C, KH, KW))
    n, oh, ow = np.unravel_index(np.arange(N * OH * OW), (N, OH, OW))
    dx_pad = np.zeros((N, C, H + 2 * P, W + 2 * P), dtype=cols_batch_first.dtype)
    np.add.at(
        dx_pad,
        (n[None, :], c[:, None], oh[None, :] * S + kh[:, None], ow[None, :] * S + kw[:, None]),
        cols_batch_first,
    )
    return dx_pad[:, :, P : P + H, P : P + W]
