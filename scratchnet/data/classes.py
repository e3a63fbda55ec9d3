"""Keeping some classes of a dataset, renumbered 0..k-1 (``--classes 0-4``, ``TrainConfig.classes``).

Transfer learning trains on some classes and fine-tunes on others; the loss wants labels 0..k-1 for k
classes, so the kept classes are renumbered in the order given, and their names come along::

    shirts_and_shoes = select_classes(dataset, "6,5,7")   # Shirt -> 0, Sandal -> 1, Sneaker -> 2
    shirts_and_shoes.classes                               # ['Shirt', 'Sandal', 'Sneaker']

The selection is a view (no image is copied): images are fetched from the wrapped dataset and their labels
mapped through a lookup table, ``new_label = table[old_label]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scratchnet.data.dataset import Dataset, Subset


def parse_classes(classes: str | Sequence[int], num_classes: int) -> list[int]:
    """The class ids a selection names: ``"0-4"`` -> [0, 1, 2, 3, 4], ``"0,2,7"`` and ``"0-2,7"`` too, or a
    sequence of ints. Order is kept; ids must be in [0, num_classes), distinct, and at least one."""
    if isinstance(classes, str):
        ids: list[int] = []
        for part in classes.replace(" ", "").split(","):
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ValueError(
                    f"classes {classes!r}: {part!r} is not a class id or a range (e.g. '0-4' or '0,2,7')"
                )
            low, high = int(first), int(last) if dash else int(first)
            if high < low:
                raise ValueError(f"classes {classes!r}: the range {part!r} runs backwards")
            if high >= num_classes:  # before listing the range: 0-99999999999999 would fill the memory
                raise ValueError(f"classes {part!r}: {high} is not in 0..{num_classes - 1}, the ids")
            ids += range(low, high + 1)
    else:
        ids = list(classes)
        if not all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in ids):
            raise ValueError(f"classes must be class ids (ints), got {classes!r}")
        ids = [int(c) for c in ids]
    if not ids:
        raise ValueError("classes: select at least one class")
    outside = [c for c in ids if not 0 <= c < num_classes]
    if outside:
        raise ValueError(f"classes {classes!r}: {outside} not in 0..{num_classes - 1}, the dataset's ids")
    repeated = sorted({c for c in ids if ids.count(c) > 1})
    if repeated:
        raise ValueError(f"classes {classes!r}: class ids {repeated} are given more than once")
    return ids


class ClassSelection(Dataset):
    """The images of ``dataset`` whose class is in ``kept`` (ids, in order), labelled 0..len(kept)-1."""

    def __init__(self, dataset: Dataset, kept: list[int]):
        self.dataset = dataset
        self.kept = list(kept)
        self.table = np.full(dataset.num_classes, -1, dtype=np.int64)  # old label -> new (-1: dropped)
        self.table[self.kept] = np.arange(len(self.kept))
        self.indices = np.flatnonzero(self.table[dataset.labels] >= 0)  # (n,) ascending
        self.view = Subset(dataset, self.indices)
        self.name = dataset.name
        self.classes = [dataset.classes[c] for c in self.kept]
        self.shape = dataset.shape
        self.labels = self.table[self.view.labels]

    def get_batch(
        self, indices: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        images, old_labels = self.view.get_batch(self._check_indices(indices), rng=rng)
        return images, self.table[old_labels]

    def with_crop(self, crop: str) -> ClassSelection:
        return ClassSelection(self.dataset.with_crop(crop), self.kept)


def select_classes(dataset: Dataset, classes: str | Sequence[int] | None) -> Dataset:
    """The images of the classes named by ``classes`` (see :func:`parse_classes`), labels renumbered
    0..k-1 in that order, class names kept; ``None`` returns ``dataset`` itself."""
    if classes is None:
        return dataset
    return ClassSelection(dataset, parse_classes(classes, dataset.num_classes))
