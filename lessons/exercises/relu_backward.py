"""Exercise 1: the backward pass of ReLU.

Forward:  y = max(0, x), element-wise, for x of any shape.

The chain rule, element by element: ∂L/∂x = ∂L/∂y · ∂y/∂x, and ∂y/∂x is 1 where x > 0 and 0 where x < 0
(at x = 0 the slope is undefined; like every library, scratchnet uses 0 there).

Write the body of ``relu_backward``, then check it:

    python -m scratchnet.gradcheck lessons/exercises/relu_backward.py
"""

import numpy as np


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dL/dx of y = max(0, x).

    dy: dL/dy, the same shape as x.  x: the input of the forward pass.
    Returns dx, the same shape and dtype as x:   dx = dy ⊙ 1[x > 0]
    Do not modify dy or x in place.
    """
    raise NotImplementedError("write relu_backward (the docstring has the formula)")
