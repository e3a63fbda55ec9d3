import numpy as np


def maxpool_backward(dy, x, kernel_size, stride):
    """dx (N, C, H, W) from dy (N, C, OH, OW) and the forward's input x."""
    K, S = kernel_size, stride
    N, C, OH, OW = dy.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    window = x[n, c, oh * S : oh * S + K, ow * S : ow * S + K]
                    kh, kw = np.unravel_index(np.argmax(window), window.shape)  # the first maximum on ties
                    dx[n, c, oh * S + kh, ow * S + kw] += dy[n, c, oh, ow]  # +=: windows may overlap
    return dx
