"""Inverted dropout, forward and backward (lesson 06).

While training, dropout zeroes each unit with probability p (keep[i] is False for a dropped unit) and
scales the survivors so that the expected value of every unit is unchanged: at test time the layer is the
identity. Write the training forward, y from x (any shape), and the backward, dx from dy.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/dropout.py
    python -m scratchnet.gradcheck lessons/exercises/dropout.py --hint   # + formulas
"""

import numpy as np


def dropout_forward(x: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """y (the shape of x) from x and the boolean mask keep (True: the unit survives); p: drop probability."""
    raise NotImplementedError("write dropout_forward, then run the check")


def dropout_backward(dy: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    """dx from dy, through the forward's mask."""
    raise NotImplementedError("write dropout_backward, then run the check")
