import numpy as np


def pad_and_crop(image, padding, top, left):
    """The (C, H, W) window at (top, left) of image (C, H, W) padded with zeros by `padding` on each side."""
    _, H, W = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))  # (C, H + 2p, W + 2p), zeros
    return padded[:, top : top + H, left : left + W].copy()
