"""The backward pass of the convolution (lesson 05).

Forward:   y[n, f, oh, ow] = bias[f] + Σ_{c, kh, kw} weight[f, c, kh, kw] · x_pad[n, c, oh*S + kh, ow*S + kw]
           x (N, C, H, W), x_pad: x with P zeros on each side of H and W, weight (F, C, KH, KW), bias (F,),
           y (N, F, OH, OW), OH = (H + 2P − KH) // S + 1; S = stride, P = padding

Given dy (N, F, OH, OW), return dx (N, C, H, W), dweight (F, C, KH, KW), dbias (F,).

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/conv2d_backward.py
    python -m scratchnet.gradcheck lessons/exercises/conv2d_backward.py --hint   # + formulas
"""

import numpy as np


def conv2d_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) from dy (N, F, OH, OW), x (N, C, H, W), weight (F, C, KH, KW)."""
    raise NotImplementedError("write conv2d_backward, then run the check")
