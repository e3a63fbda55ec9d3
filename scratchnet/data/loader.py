"""The DataLoader: mini-batches in a seeded order, converted to float and augmented.

    loader = DataLoader(dataset, batch_size=128, shuffle=True, seed=0, transform=None, drop_last=False)
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)
        for x, y in loader:        # x float32 (B, C, H, W) in [0, 1], transformed; y int64 (B,)
            ...

Reproducibility without hidden state: the order of epoch e is a permutation drawn from a generator
seeded with (seed, e), and batch b of that epoch gets its own generator seeded with (seed, e, b) for
augmentation and decode-time crops. Nothing depends on how many batches came before, so a run resumed
from a checkpoint at epoch e sees exactly the batches an uninterrupted run would have seen, and the same
holds for any single batch (`loader.batch(b)`).

Workers. Decoding an image folder (JPEG, resize, crop) is the slow part of ImageNet-style training: one
Pillow process manages a few hundred images per second. With `workers=k` the loader prepares the next
batches in k worker processes (forked, so they share the dataset without copying it) while the model
trains on the current one, keeping up to `prefetch` batches per worker in flight. Because batch b
depends only on (seed, epoch, b), the batches are the same, in the same order, whatever k is.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from scratchnet.data.dataset import Dataset
from scratchnet.errors import DatasetError
from scratchnet.parallel import die_with_parent

# Stream tags keep the order generator and the per-batch generators of an epoch independent.
_ORDER_STREAM, _BATCH_STREAM = 0, 1


class DataLoader:
    """Iterate over `dataset` in batches of `batch_size`; see the module docstring for the seeding."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        drop_last: bool = False,
        workers: int = 0,
        prefetch: int = 2,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        if workers < 0 or prefetch < 1:
            raise ValueError(
                f"need workers >= 0 and prefetch >= 1, got workers={workers}, prefetch={prefetch}"
            )
        if len(dataset) == 0 or (drop_last and len(dataset) < batch_size):
            raise ValueError(f"{len(dataset)} images give no batch of {batch_size} (drop_last={drop_last})")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.drop_last = drop_last
        self.workers = workers
        self.prefetch = prefetch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration produces."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of batches per epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def order(self) -> np.ndarray:
        """The dataset indices of this epoch, in the order they are served (int64 (N,))."""
        if not self.shuffle:
            return np.arange(len(self.dataset))
        return np.random.default_rng([self.seed, self.epoch, _ORDER_STREAM]).permutation(len(self.dataset))

    def batch(self, b: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch `b` of the current epoch: x float32 (B, C, H, W), y int64 (B,)."""
        return self._transform(*self._decode(b, order))

    def _decode(self, b: int, order: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
        """The slow half of batch `b` (a worker's job): its uint8 images, labels, and the generator after the
        decode-time draws, which the transforms continue."""
        if not 0 <= b < len(self):
            raise IndexError(f"batch {b} out of range: this loader has {len(self)} batches per epoch")
        order = self.order() if order is None else order
        indices = order[b * self.batch_size : (b + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, _BATCH_STREAM, b])
        images, labels = self.dataset.get_batch(indices, rng=rng)  # uint8 (B, C, H, W), int64 (B,)
        return images, labels, rng

    def _transform(self, images, labels, rng) -> tuple[np.ndarray, np.ndarray]:
        x = images.astype(np.float32) / np.float32(255.0)
        if self.transform is not None:
            x = self.transform(x, rng)
        return x, labels

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.order()
        if self.workers == 0:
            for b in range(len(self)):
                yield self.batch(b, order)
            return
        # Fork: the workers inherit this loader and the epoch's order instead of receiving pickled copies.
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_set_worker_state,
            initargs=(self, order, os.getpid()),
        )
        try:
            ahead = self.workers * self.prefetch
            pending = {b: pool.submit(_worker_batch, b) for b in range(min(ahead, len(self)))}
            for b in range(len(self)):
                if b + ahead < len(self):
                    pending[b + ahead] = pool.submit(_worker_batch, b + ahead)
                # The workers send uint8 images (a quarter of the float32 bytes) and the generator's state.
                yield self._transform(*pending.pop(b).result())
        except BrokenProcessPool:
            raise DatasetError(
                "a data loader worker process died while preparing batches (killed, perhaps by the system "
                "for lack of memory); try fewer workers"
            ) from None
        finally:  # also when the consumer stops early: drop the batches not yet started
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, transform={self.transform!r}, drop_last={self.drop_last}, "
            f"workers={self.workers})"
        )


# In a worker process: the loader it serves batches for, and the epoch's order.
_worker_state: tuple[DataLoader, np.ndarray] | None = None


def _set_worker_state(loader: DataLoader, order: np.ndarray, parent: int) -> None:
    global _worker_state
    _worker_state = (loader, order)
    die_with_parent(parent)  # a trainer killed by kill -9 cannot stop its workers itself


def _worker_batch(b: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    loader, order = _worker_state
    return loader._decode(b, order)
