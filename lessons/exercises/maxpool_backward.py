"""The backward pass of max-pooling, with overlapping windows (lesson 06).

Forward:   y[n, c, oh, ow] = max of x[n, c, oh*S : oh*S + K, ow*S : ow*S + K]
           x (N, C, H, W), y (N, C, OH, OW), OH = (H − K) // S + 1; K = kernel_size, S = stride

Given dy (N, C, OH, OW), return dx (N, C, H, W). On a tie the first maximum (in row-major order) wins.
AlexNet pools with K = 3, S = 2: neighbouring windows share pixels.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/maxpool_backward.py
    python -m scratchnet.gradcheck lessons/exercises/maxpool_backward.py --hint   # + formulas
"""

import numpy as np


def maxpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    """dx (N, C, H, W) from dy (N, C, OH, OW) and the forward's input x."""
    raise NotImplementedError("write maxpool_backward, then run the check")
