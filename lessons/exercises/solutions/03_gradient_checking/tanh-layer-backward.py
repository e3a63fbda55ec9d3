import numpy as np


def tanh_layer_backward(dy, x, weight):
    y = np.tanh(x @ weight)  # (N, M)
    dz = dy * (1 - y**2)  # (N, M): through tanh, tanh'(z) = 1 - tanh(z)^2
    return dz @ weight.T, x.T @ dz  # dx (N, D), dweight (D, M)
