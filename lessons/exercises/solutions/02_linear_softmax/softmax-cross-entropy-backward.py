import numpy as np


def softmax_cross_entropy_backward(logits, labels):
    """dlogits (N, K) = dL/dlogits of the mean cross-entropy L of logits (N, K), labels (N,)."""
    N = len(labels)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))  # (N, K)
    dlogits = e / e.sum(axis=1, keepdims=True)  # softmax p
    dlogits[np.arange(N), labels] -= 1  # p - onehot(labels)
    return dlogits / N  # the loss is a mean over the batch
