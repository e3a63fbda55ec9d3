"""Exercise 5: the backward pass of 2-D convolution (a cross-correlation, as in every deep learning library).

Forward, x (N, C, H, W), W (F, C, k, k), b (F,), stride s, zero padding p; x_pad is x padded by p zeros on
each side of H and W; y (N, F, Ho, Wo) with Ho = (H + 2p − k) // s + 1:

    y[n, f, i, j] = b[f] + Σ_{c, u, v} W[f, c, u, v] · x_pad[n, c, i*s + u, j*s + v]

Every term of that sum gives one contribution to each gradient. Loop over the output positions (i, j),
take the window x_pad[n, :, i*s : i*s + k, j*s : j*s + k] and spread dy[n, f, i, j] back to it: neighbouring
windows overlap (whenever s < k), so accumulate with +=.

Write the body of ``conv2d_backward``, then check it:

    python -m scratchnet.gradcheck lessons/exercises/conv2d_backward.py
"""

import numpy as np


def conv2d_backward(
    dy: np.ndarray, x: np.ndarray, W: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dL/dx, dL/dW, dL/db of the convolution above, given dy = dL/dy (N, F, Ho, Wo).

    db[f]          = Σ_{n, i, j} dy[n, f, i, j]                                   (F,)
    dW[f, c, u, v] = Σ_{n, i, j} dy[n, f, i, j] · x_pad[n, c, i*s + u, j*s + v]   (F, C, k, k)
    dx_pad[n, c, i*s + u, j*s + v] += Σ_f dy[n, f, i, j] · W[f, c, u, v]          (N, C, H + 2p, W + 2p)
    dx = dx_pad without its padding                                               (N, C, H, W)

    Hint: np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) pads; np.einsum or np.tensordot do the sums over f
    and over (c, u, v) for one output position at a time.
    """
    raise NotImplementedError("write conv2d_backward: return dx, dW, db (the docstring has the formulas)")
