"""Correct, written with np.einsum: the checker must pass it."""

import numpy as np


def linear_backward(dy, x, weight):
    dx = np.einsum("nm,dm->nd", dy, weight)  # (N, D)
    dweight = np.einsum("nd,nm->dm", x, dy)  # (D, M)
    dbias = np.einsum("nm->m", dy)  # (M,)
    return dx, dweight, dbias
