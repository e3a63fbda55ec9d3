import numpy as np


def remap_labels(labels, classes):
    """(indices of the images whose label is in classes, their labels renumbered by position in classes)."""
    indices = np.flatnonzero(np.isin(labels, classes))  # ascending
    table = np.full(max(labels.max(), max(classes)) + 1, -1, dtype=np.int64)  # old label -> new label
    table[classes] = np.arange(len(classes))
    return indices, table[labels[indices]]
