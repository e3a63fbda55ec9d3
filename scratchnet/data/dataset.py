"""What a dataset is in scratchnet: a list of (image, label) pairs fetched a batch at a time.

Every dataset, whatever file format it came from, offers the same small interface:

    ds.name, ds.classes (list of class names), ds.num_classes, len(ds), ds.shape -> (C, H, W)
    ds.labels                         int64 (N,): all labels, cheap (no image decoding)
    ds.get_batch(indices, rng=None)   -> images uint8 (B, C, H, W), labels int64 (B,)

Images stay uint8 here (a quarter of the memory of float32); the `DataLoader` turns a batch into float32
in [0, 1] and applies the augmentations. `rng` matters only for datasets that crop at decode time (the
image folder's random-resized crop); the others ignore it.

`ArrayDataset` holds everything in memory (MNIST: 47 MB, CIFAR-10: 150 MB). `Subset` is a view through
an index array, which is how validation splits and `--limit-train` work without copying images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class Dataset:
    """The interface; subclasses set name, classes, labels, shape and implement get_batch."""

    name: str
    classes: list[str]
    labels: np.ndarray  # int64 (N,)
    shape: tuple[int, int, int]  # (C, H, W) of the images get_batch returns

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(
        self, indices: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def with_crop(self, crop: str) -> Dataset:
        """The same images cropped another way ("center" or "random-resized"; see folder.py).

        In-memory datasets have no decode-time crop, so only "center" (themselves) is possible. Use it
        to evaluate a validation part split off a randomly cropped training set: `val.with_crop("center")`.
        """
        if crop != "center":
            raise ValueError(f"{self.name} has no decode-time crops; crop={crop!r} applies to image folders")
        return self

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {self.name} with {len(self)} images")
        return indices

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"{kind}({self.name!r}, {len(self)} images, shape={self.shape}, classes={self.num_classes})"


class ArrayDataset(Dataset):
    """A dataset held in memory: images uint8 (N, C, H, W), labels int64 (N,).

    image_size: if given and different from the stored size, get_batch resizes each image (bilinear,
    Pillow) to image_size x image_size, e.g. 28 -> 32 for the original LeNet-5 input or -> 227 to run
    AlexNet on small images. None keeps the stored size.
    """

    def __init__(
        self,
        name: str,
        images: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        image_size: int | None = None,
    ):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
        self.name = name
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.classes = list(classes)
        channels, height, width = images.shape[1:]
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size}")
        self.image_size = None if image_size == height == width else image_size  # None: no resizing
        size = (height, width) if self.image_size is None else (image_size, image_size)
        self.shape = (channels, *size)

    def get_batch(
        self, indices: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        indices = self._check_indices(indices)
        images = self.images[indices]  # (B, C, H, W) uint8, a copy
        if self.image_size is not None:
            images = resize_batch(images, self.image_size)
        return images, self.labels[indices]


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of every image in a uint8 (B, C, H, W) batch to (B, C, size, size), with Pillow."""
    out = np.empty(images.shape[:2] + (size, size), dtype=np.uint8)
    for b, image in enumerate(images):
        for c, plane in enumerate(image):  # one 'L' image per channel keeps any channel count working
            out[b, c] = np.asarray(Image.fromarray(plane).resize((size, size), Image.BILINEAR))
    return out


class Subset(Dataset):
    """The images of `dataset` at `indices` (a view: nothing is copied), with the same interface."""

    def __init__(self, dataset: Dataset, indices: np.ndarray):
        indices = dataset._check_indices(np.asarray(indices, dtype=np.int64))
        if isinstance(dataset, Subset):  # flatten views of views: one index lookup per batch
            dataset, indices = dataset.dataset, dataset.indices[indices]
        self.dataset = dataset
        self.indices = indices
        self.name = dataset.name
        self.classes = dataset.classes
        self.shape = dataset.shape
        self.labels = dataset.labels[indices]

    def get_batch(
        self, indices: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.dataset.get_batch(self.indices[self._check_indices(indices)], rng=rng)

    def with_crop(self, crop: str) -> Subset:
        return Subset(self.dataset.with_crop(crop), self.indices)


def balanced_indices(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """`limit` indices spread as evenly as possible over the classes, chosen at random with `seed`.

    Classes take turns: a seeded shuffle, then each image ranked by how many images of its class came
    before it; the `limit` smallest ranks win (ties by shuffled position). With enough images in every
    class the counts differ by at most one. Returned sorted, so the original order is kept.
    """
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    shuffled_labels = labels[shuffled]
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(shuffled_labels == label)
        rank_in_class[members] = np.arange(len(members))
    # Sort by rank within class, then by shuffled position (lexsort: last key is primary).
    order = np.lexsort((np.arange(len(labels)), rank_in_class))
    return np.sort(shuffled[order[:limit]])


def subset(dataset: Dataset, limit: int | None, seed: int | None = 0) -> Dataset:
    """At most `limit` images of `dataset` (for --limit-train / --limit-test); None returns it whole.

    seed=int (default 0): a seeded class-balanced choice (`balanced_indices`), so a small limit still
    sees every class even when the files are sorted by class (image folders are). seed=None: simply the
    first `limit` images.
    """
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    indices = np.arange(limit) if seed is None else balanced_indices(dataset.labels, limit, seed)
    return Subset(dataset, indices)


def random_split(dataset: Dataset, val_fraction: float, seed: int = 0) -> tuple[Subset, Subset]:
    """Split into disjoint (train, validation) subsets that together cover every image once.

    round(val_fraction * N) images, chosen by a seeded permutation, go to validation. Both index arrays
    are sorted (the dataset's own order is kept within each part).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    num_val = round(val_fraction * len(dataset))
    if num_val == 0 or num_val == len(dataset):
        raise ValueError(
            f"val_fraction {val_fraction} of {len(dataset)} images leaves an empty train or validation part"
        )
    permutation = np.random.default_rng(seed).permutation(len(dataset))
    return Subset(dataset, np.sort(permutation[num_val:])), Subset(dataset, np.sort(permutation[:num_val]))
