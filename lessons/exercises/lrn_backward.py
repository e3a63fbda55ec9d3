"""ADVANCED: the backward pass of AlexNet's local response normalisation.

Forward, across channels, at every (n, h, w) (the paper's convention: α not divided by size):
           s_c = k + α Σ_{c' = c − size//2 .. c + (size − 1)//2} a_{c'}²    (only channels in [0, C))
           b_c = a_c · s_c^(−β)
           a = x (N, C, H, W), b = y (N, C, H, W)

Given dy = dL/db, return dx = dL/da. Every b_i whose window contains channel j depends on a_j.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/lrn_backward.py
    python -m scratchnet.gradcheck lessons/exercises/lrn_backward.py --hint   # + formulas
"""

import numpy as np


def lrn_backward(dy: np.ndarray, x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """dx (N, C, H, W) from dy (N, C, H, W) and the forward's input x."""
    raise NotImplementedError("write lrn_backward, then run the check")
