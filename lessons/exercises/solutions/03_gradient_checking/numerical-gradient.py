import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """An array of x's shape: entry i approximates ∂f/∂x[i] of the scalar function f at x."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h
        f_minus = f(x)
        x[i] = old  # restore exactly
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad
