"""Exercise 3: the gradient of the softmax cross-entropy loss with respect to the logits.

Forward, for logits z (N, K) and integer labels y (N,):

    p[n, k] = exp(z[n, k]) / Σ_j exp(z[n, j])          (softmax, row by row)
    L = (1/N) Σ_n −log p[n, y[n]]                       (the MEAN over the batch)

The derivative of −log p[n, y] with respect to z[n, k] is p[n, k] − 1[k = y]: the probabilities, minus one
at the correct class. Compute the softmax stably: subtract each row's maximum before exp (it cancels in
the ratio, and exp of a large logit would overflow).

Write the body of ``softmax_cross_entropy_backward``, then check it:

    python -m scratchnet.gradcheck lessons/exercises/softmax_cross_entropy_backward.py
"""

import numpy as np


def softmax_cross_entropy_backward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dL/dz of the mean softmax cross-entropy. logits (N, K) float, labels (N,) int64.

    dz = (softmax(z) − onehot(y)) / N        (N, K)
    """
    raise NotImplementedError("write softmax_cross_entropy_backward (the docstring has the formula)")
