"""Solution of ../conv2d_backward.py."""

import numpy as np


def conv2d_backward(
    dy: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, s, k = padding, stride, W.shape[2]
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # (N, C, H + 2p, W + 2p)
    dx_pad = np.zeros_like(x_pad)
    dW = np.zeros_like(W)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            window = x_pad[:, :, i * s : i * s + k, j * s : j * s + k]  # (N, C, k, k)
            g = dy[:, :, i, j]  # (N, F)
            dW += np.einsum("nf,ncuv->fcuv", g, window)
            dx_pad[:, :, i * s : i * s + k, j * s : j * s + k] += np.einsum("nf,fcuv->ncuv", g, W)
    dx = dx_pad[:, :, p : p + x.shape[2], p : p + x.shape[3]]
    return dx, dW, dy.sum(axis=(0, 2, 3))
