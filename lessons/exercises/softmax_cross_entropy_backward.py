"""The backward pass of softmax cross-entropy (lesson 02).

Forward:   p[n, k] = exp(z[n, k]) / Σ_j exp(z[n, j])        softmax of each row of the logits z (N, K)
           L = (1/N) Σ_n −log p[n, labels[n]]               labels (N,) integers in [0, K)

Return dlogits = dL/dz (N, K). The checker also uses logits around 1000.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/softmax_cross_entropy_backward.py
    python -m scratchnet.gradcheck lessons/exercises/softmax_cross_entropy_backward.py --hint   # + formulas
"""

import numpy as np


def softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dlogits (N, K) from logits (N, K) and labels (N,)."""
    raise NotImplementedError("write softmax_cross_entropy_backward, then run the check")
