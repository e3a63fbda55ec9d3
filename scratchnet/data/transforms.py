"""Batch transforms: augmentation and normalisation of float image batches, reproducibly seeded.

Every transform is a callable `t(x, rng) -> x` on a whole batch x: float (B, C, H, W), values in
[0, 1] as the DataLoader produces them, and an `np.random.Generator` that the DataLoader derives from
(seed, epoch, batch index). Working on batches keeps NumPy fast (no Python loop per image), and taking
the generator as an argument (instead of a global seed) is what makes a resumed run draw exactly the
same crops and flips as an uninterrupted one. Inputs are never modified in place.

Order matters as in torchvision: augment first, normalise last, e.g.

    Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(*MEAN_STD["cifar10"])])

so that the zero padding of RandomCrop is black, not the mean colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Compose:
    """Apply transforms one after another, all drawing from the same generator."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """Per channel c: y[:, c] = (x[:, c] - mean[c]) / std[c]; use the training set's statistics (MEAN_STD)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"need one positive std per mean, got mean={mean}, std={std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize expects (B, {len(self.mean)}, H, W), got shape {x.shape}")
        mean = np.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)  # broadcasts over (B, C, H, W)
        std = np.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """Zero-pad each side by `padding`, then cut a random size x size window per image.

    The window's top-left corner is uniform over every position that fits, drawn independently for each
    image of the batch. With padding=4 and size 32 on CIFAR-10 this shifts images by up to 4 pixels, the
    classic augmentation of ResNet-era CIFAR training.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0 or min(self.size) < 1:
            raise ValueError(f"need size >= 1 and padding >= 0, got size={size}, padding={padding}")
        self.padding = padding

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p, (crop_h, crop_w) = self.padding, self.size
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # (B, C, H + 2p, W + 2p), zeros
        height, width = padded.shape[2:]
        if crop_h > height or crop_w > width:
            raise ValueError(f"RandomCrop {self.size} does not fit padded images of size {(height, width)}")
        top = rng.integers(0, height - crop_h + 1, size=len(x))  # (B,)
        left = rng.integers(0, width - crop_w + 1, size=len(x))  # (B,)
        # All windows as a view (B, C, H', W', crop_h, crop_w); pick window (top[b], left[b]) of image b.
        windows = np.lib.stride_tricks.sliding_window_view(padded, (crop_h, crop_w), axis=(2, 3))
        return np.ascontiguousarray(windows[np.arange(len(x)), :, top, left])  # (B, C, crop_h, crop_w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability p (one coin per image)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(len(x)) < self.p  # (B,) bool
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]  # reverse the width axis
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"
