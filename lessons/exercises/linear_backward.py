"""The backward pass of the Linear layer (lesson 02).

Forward:   y = x @ weight + bias        x (N, D), weight (D, M), bias (M,), y (N, M)

Given dy = dL/dy (N, M), return dL/dx, dL/dweight and dL/dbias. Each gradient has the shape of what it is
the gradient of.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/linear_backward.py
    python -m scratchnet.gradcheck lessons/exercises/linear_backward.py --hint   # + formulas
"""

import numpy as np


def linear_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx (N, D), dweight (D, M), dbias (M,)) from dy (N, M), x (N, D), weight (D, M)."""
    raise NotImplementedError("write linear_backward, then run the check")
