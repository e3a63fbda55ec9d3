import numpy as np


def saliency_map(input_gradient):
    """input_gradient (N, C, H, W) -> saliency (N, H, W): max over channels of |g|, each image scaled to 1."""
    strength = np.abs(input_gradient).max(axis=1)  # (N, H, W): a pixel matters if any channel does
    return strength / strength.max(axis=(1, 2), keepdims=True)  # each image's strongest pixel -> 1
