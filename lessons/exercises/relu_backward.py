"""The backward pass of ReLU (lesson 06).

Forward:   y = max(0, x)        element by element; x and y of any shape

Given dy = dL/dy (the shape of x), return dx = dL/dx. Do not modify dy or x.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/relu_backward.py
    python -m scratchnet.gradcheck lessons/exercises/relu_backward.py --hint   # + formulas
"""

import numpy as np


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx (the shape of x) from dy and the forward's input x."""
    raise NotImplementedError("write relu_backward, then run the check")
