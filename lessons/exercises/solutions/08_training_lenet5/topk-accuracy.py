import numpy as np


def topk_accuracy(logits, labels, k):
    """The share of rows of logits (N, K) whose true class labels[n] is among the k largest logits."""
    N = len(labels)
    true_logit = logits[np.arange(N), labels][:, None]  # (N, 1)
    # The rank of the true class: how many classes beat it (larger, or equal with a lower index).
    lower_index = np.arange(logits.shape[1]) < labels[:, None]  # (N, K)
    rank = (logits > true_logit).sum(axis=1) + ((logits == true_logit) & lower_index).sum(axis=1)  # (N,)
    return float(np.mean(rank < k))
