"""Solution of ../maxpool_backward.py."""

import numpy as np


def maxpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    N, C, Ho, Wo = dy.shape
    k, s = kernel_size, stride
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * s : i * s + k, j * s : j * s + k]
                    u, v = np.unravel_index(np.argmax(window), window.shape)  # first maximum on ties
                    dx[n, c, i * s + u, j * s + v] += dy[n, c, i, j]
    return dx
