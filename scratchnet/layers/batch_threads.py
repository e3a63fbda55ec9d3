"""The batch split over threads, for the layers' NumPy code on several cores.

NumPy runs its copies and element-wise operations on one thread; only its BLAS (matrix products) uses
several, and it splits each product between them, which gains little on products as small as one image's
convolution ((16, 144) @ (144, 1024) in ResNet-20) and leaves the copies around them on one core. A layer
can split the *batch* instead: :func:`over_batch_parts` runs its work on T contiguous parts of the batch at
once, T = the threads NumPy's BLAS was given (``OPENBLAS_NUM_THREADS``, threadpoolctl, ``--threads``), each
part on a thread of its own, with BLAS limited to one thread meanwhile. NumPy lets go of the GIL inside its
copies and products, so the parts run at the same time. Layers that all do this also keep BLAS's own
threads asleep: woken by one layer's products, they would spin, waiting for more work, on the cores the
next layer's parts need.

Which layers split: the convolution always; Linear from ``SPLIT_MIN_MULTIPLY_ADDS`` up (LeNet-5's small
layers lose more to the handoff than a second core saves them); ReLU, BatchNorm, MaxPool2D's fast path and
the residual block's sums and shortcut through :func:`batch_parts`, only when their array holds at least
``SPLIT_MIN_VALUES`` numbers. The other layers (average pooling, GlobalAvgPool2D, LRN, dropout, the losses)
run on the calling thread.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import threadpoolctl

# The element-wise and per-channel layers (ReLU, BatchNorm, max-pooling, the residual sums and shortcut)
# split their batch only from this many values up. Handing a part to the other thread and waiting for it
# costs some 50-90 µs, and NumPy passes over the arrays at a few values per ns: the second core has to save
# more than that. Measured with timeit (min of 7 repeats, 2 BLAS threads) splitting every size against
# none: at (128, 64, 8, 8) (524k values, ResNet-20's last stage) it is a wash (BatchNorm forward
# 653 -> 630 µs, backward 562 -> 495, ReLU forward 199 -> 180, but ReLU backward 150 -> 162 and the
# residual sum 55 -> 100); at (128, 32, 16, 16) (1M) every one gains (ReLU forward 390 -> 275 µs,
# BatchNorm forward 1770 -> 1120); LeNet-5's (64, 6, 28, 28) and (64, 16, 10, 10) only lose (ReLU forward
# 117 -> 137 µs and 42 -> 96).
SPLIT_MIN_VALUES = 1 << 20

# Linear splits its rows from this many multiply-adds per product (N·D·M) up. Measured with timeit (min of
# 7 repeats, 2 BLAS threads), split against one thread: (64, 400) @ (400, 120) (3.1M, LeNet-5's fc1 at
# batch 64) forward 127 against 77 µs and backward 216 against 171; (256, 400) @ (400, 120) (12.3M)
# forward 233 against 273 µs and backward 411 against 549.
SPLIT_MIN_MULTIPLY_ADDS = 1 << 23


class _BatchThreads:
    """The threads :func:`over_batch_parts` runs parts on, and the BLAS thread setting it reads and limits
    (through threadpoolctl), created on first use. A forked child process starts without the pool (its
    threads stayed in the parent) and makes its own."""

    def __init__(self):
        self._blas = None  # threadpoolctl's controller of the BLAS libraries NumPy loaded
        self._forget_pool()
        os.register_at_fork(after_in_child=self._forget_pool)

    def _forget_pool(self):
        self._pool, self._workers = None, 0  # a ThreadPoolExecutor, replaced when a call wants more threads
        self._lock = threading.Lock()

    def blas_threads(self) -> int:
        """The threads NumPy's BLAS is set to use now (1 where no BLAS library is known)."""
        if self._blas is None:
            self._blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
        return max((info["num_threads"] for info in self._blas.info()), default=1)

    def limit_blas_to_one(self):
        return self._blas.limit(limits=1)

    def pool(self, workers: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._workers < workers:
                if self._pool is not None:
                    self._pool.shutdown(wait=False)  # its threads end once idle
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="scratchnet-batch")
                self._workers = workers
            return self._pool


_BATCH_THREADS = _BatchThreads()


def over_batch_parts(work, N: int, workspace=None, split: bool = True) -> list:
    """``[work(images, workspace.part(i)) for each part i]``: the images 0..N-1 split into T contiguous
    parts, T = the threads NumPy's BLAS is set to use (at most N), run at the same time on T threads
    (the caller's one of them) with BLAS limited to one thread meanwhile. With T = 1 (one core, or a
    data-parallel rank that was given one thread), ``[work(slice(0, N), workspace)]`` on this thread.
    ``split=False`` (work too small to pay for the handoff): one part on this thread, BLAS still limited
    to one thread, so that its own threads stay asleep.
    ``workspace``: a conv :class:`~scratchnet.layers.conv.Workspace`, or None (each part then gets None)."""
    threads = min(N, _BATCH_THREADS.blas_threads())
    if threads == 1:
        return [work(slice(0, N), workspace)]
    if not split:
        with _BATCH_THREADS.limit_blas_to_one():
            return [work(slice(0, N), workspace)]

    def part(i):
        return None if workspace is None else workspace.part(i)

    bounds = [N * i // threads for i in range(threads + 1)]
    parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with _BATCH_THREADS.limit_blas_to_one():
        others = [
            _BATCH_THREADS.pool(threads - 1).submit(work, images, part(i))
            for i, images in enumerate(parts[1:], start=1)
        ]
        first = work(parts[0], part(0))
        return [first] + [future.result() for future in others]


def one_part(work) -> list:
    """``[work(images)]`` with ``images`` the whole batch, on this thread: the ``parts`` argument of the
    layers' math functions when nothing is split."""
    return [work(slice(None))]


def batch_parts(N: int, values: int):
    """``parts(work) -> [work(images) for each part]``, for an element-wise or per-channel layer whose
    arrays hold ``values`` numbers over a batch of N: :func:`over_batch_parts` from ``SPLIT_MIN_VALUES``
    values up, :func:`one_part` below. ``work(images)`` writes its part's outputs into arrays allocated
    for the whole batch (``out=y[images]``) and returns what the caller combines (a part's partial sums)."""
    if values < SPLIT_MIN_VALUES:
        return one_part
    return lambda work: over_batch_parts(lambda images, _: work(images), N)
