import numpy as np


def batchnorm_backward(dy, x, gamma, eps):
    """(dx, dgamma, dbeta) of BatchNorm in training mode; dy and x (N, D), gamma (D,)."""
    N = x.shape[0]
    mean = x.mean(axis=0)  # (D,)
    var = x.var(axis=0)  # (D,), biased: divided by N
    s = np.sqrt(var + eps)  # (D,)
    x_hat = (x - mean) / s  # (N, D)
    dbeta = dy.sum(axis=0)  # (D,)
    dgamma = (dy * x_hat).sum(axis=0)  # (D,)
    dx = gamma / s * (dy - dbeta / N - x_hat * dgamma / N)  # (N, D)
    return dx, dgamma, dbeta
