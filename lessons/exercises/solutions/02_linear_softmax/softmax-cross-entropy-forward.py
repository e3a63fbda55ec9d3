import numpy as np


def softmax_cross_entropy(logits, labels):
    """The mean cross-entropy L (a number) of logits (N, K) and integer labels (N,) in [0, K)."""
    z = logits - logits.max(axis=1, keepdims=True)  # (N, K), row max 0: exp never overflows
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N, K) log-softmax
    return -log_p[np.arange(len(labels)), labels].mean()  # one entry per row: row n, column labels[n]
