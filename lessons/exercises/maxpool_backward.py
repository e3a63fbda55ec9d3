"""Exercise 4: the backward pass of max-pooling, with overlapping windows.

Forward, kernel k and stride s (no padding), x (N, C, H, W) -> y (N, C, Ho, Wo), Ho = (H − k) // s + 1:

    y[n, c, i, j] = max over the window x[n, c, i*s : i*s + k, j*s : j*s + k]

Each output depends on ONE input, the window's maximum (the first in row-major order on ties), with slope
1. So dy[n, c, i, j] flows back to that position only; all other inputs get 0. When s < k (AlexNet uses
k = 3, s = 2) windows overlap and one input can be the maximum of several windows: it must receive the
sum of their gradients.

Write the body of ``maxpool_backward``, then check it:

    python -m scratchnet.gradcheck lessons/exercises/maxpool_backward.py
"""

import numpy as np


def maxpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    """dL/dx of max-pooling. dy (N, C, Ho, Wo), x (N, C, H, W); returns dx like x.

    For every window (i, j): find the argmax (u, v) of x[n, c, i*s : i*s+k, j*s : j*s+k]
    (np.argmax of the flattened window, then np.unravel_index), and
        dx[n, c, i*s + u, j*s + v] += dy[n, c, i, j]        (+=, not =: windows can overlap)
    """
    raise NotImplementedError("write maxpool_backward (the docstring has the recipe)")
