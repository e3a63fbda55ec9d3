"""Exercise 2: the backward pass of the fully connected (Linear) layer.

Forward:  y = x @ W + b        x (N, D), W (D, M), b (M,), y (N, M)

Written out, y[n, m] = Σ_d x[n, d] W[d, m] + b[m]. Differentiate L with respect to one x[n, d], one W[d, m]
and one b[m], collecting every y[n, m] it touches, and you get three matrix products. Check the shapes:
each gradient has the shape of the thing it is the gradient of.

Write the body of ``linear_backward``, then check it:

    python -m scratchnet.gradcheck lessons/exercises/linear_backward.py
"""

import numpy as np


def linear_backward(
    dy: np.ndarray, x: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dL/dx, dL/dW, dL/db of y = x @ W + b, given dy = dL/dy of shape (N, M).

    dx = dy @ Wᵀ            (N, D)
    dW = xᵀ @ dy            (D, M)   a sum over the batch of the outer products x_n dy_nᵀ
    db = Σ_n dy[n, :]       (M,)     b is added to every row, so its gradient sums the rows
    """
    raise NotImplementedError("write linear_backward: return dx, dW, db (the docstring has the formulas)")
