"""Solution of ../relu_backward.py."""

import numpy as np


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dy * (x > 0)
