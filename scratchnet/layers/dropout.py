"""Dropout (Hinton et al. 2012; Srivastava et al. 2014): randomly silence units while training.

Forward, training (``p`` is the probability of DROPPING a unit; "inverted" dropout scales the survivors so
that the expected output equals the input and evaluation needs no change)::

    mask_i = [u_i >= p] / (1 - p)        u_i uniform on [0, 1)
    y = x * mask                         (any shape)

Forward, evaluation (``training=False``): y = x, the identity.

Backward: dL/dx = dL/dy * mask, the same mask as the forward pass. After an evaluation forward with
``keep_for_backward=True`` (a saliency map) the backward is that of the identity: dL/dx = dL/dy.

The random numbers. Each u_i is a pure function of (seed, calls, i), a counter-based hash, so the NumPy
code here and the kernel in ``kernels/dropout.cu`` draw the same mask bit for bit, on any device::

    mix64(z) = SplitMix64's finalizer (see _mix64), all arithmetic on uint64 modulo 2^64
    key      = mix64(seed + GOLDEN * (calls + 1))      GOLDEN = 0x9E3779B97F4A7C15
    h_i      = mix64(key + GOLDEN * (i + 1))           i = flat (C-order) index of the element in the batch
    u_i      = (h_i >> 40) / 2^24                      (24 random bits)
    keep i  <=>  u_i >= p  <=>  (h_i >> 40) >= ceil(p * 2^24)

``calls`` is :attr:`Dropout.rng_calls`, the number of training forwards so far: every call draws a fresh
mask, and saving ``seed`` and ``rng_calls`` in a checkpoint is enough to resume with the very same masks
(:meth:`Dropout.rewind` sets it back; the gradient check rewinds before every evaluation of f, so that all
of them see one mask).

``i`` counts from the first element of the *whole* batch: under data parallelism (``scratchnet.parallel``)
a process told by :meth:`Dropout.shard_from` that its examples start at ``first_example`` numbers them as
one process would, ``i = first_example * (x.size / N) + local index``, so every example gets its mask
whatever the number of processes.

Kernels (gpu and sim): ``dropout_forward`` and ``dropout_backward``, one thread per element.
"""

from __future__ import annotations

import math
import numbers
import secrets

import numpy as np

from scratchnet._cuda.sources import cuda_defines
from scratchnet.layers.base import Layer

_DEFINES = cuda_defines("dropout.cu")  # the kernel's constants, so that cpu and kernels draw the same mask
GOLDEN = _DEFINES["SPLITMIX64_GOLDEN"]  # 2^64 / golden ratio = 0x9E3779B97F4A7C15: SplitMix64's increment
UNIFORM_BITS = _DEFINES["UNIFORM_BITS"]  # u has 24 random bits: exactly representable in float32 too


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on a uint64 array (NumPy integer arrays wrap around modulo 2^64 silently)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def keep_mask(seed: int, calls: int, n: int, p: float, first: int = 0) -> np.ndarray:
    """Boolean (n,) array: element ``first + i`` is kept (see the module docstring for the exact formula)."""
    key = _mix64(np.array([(seed + GOLDEN * (calls + 1)) % 2**64], dtype=np.uint64))[0]
    i = np.arange(first, first + n, dtype=np.uint64)  # (n,) indices in the whole batch
    h = _mix64(key + np.uint64(GOLDEN) * (i + np.uint64(1)))
    return (h >> np.uint64(64 - UNIFORM_BITS)) >= np.uint64(_threshold(p))


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"Dropout: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _threshold(p: float) -> int:
    """u >= p  <=>  (h >> 40) >= ceil(p * 2^24): compared as integers, identically on every device."""
    return math.ceil(p * 2**UNIFORM_BITS)


class Dropout(Layer):
    """Inverted dropout with drop probability ``p``; masks reproducible from ``(seed, rng_calls)``."""

    kernel_file = "dropout.cu"

    def __init__(self, p: float = 0.5, seed: int | None = None, *, device="cpu", dtype=np.float32):
        super().__init__(device=device, dtype=dtype)
        if not (isinstance(p, numbers.Real) and 0 <= p < 1):
            raise ValueError(f"Dropout: p (the drop probability) must be in [0, 1), got {p!r}")
        if seed is None:
            seed = secrets.randbits(64)  # OS entropy; kept in self.seed so the run can be repeated
        if not (isinstance(seed, int | np.integer) and 0 <= seed < 2**64):
            raise ValueError(f"Dropout: seed must be an integer in [0, 2^64), got {seed!r}")
        self.p = float(p)
        self.seed = int(seed)
        self._rng_calls = 0  # training forwards so far: the "calls" of the hash
        self._first_example = 0  # index in the whole batch of the input's first example (data parallelism)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def torch_equivalent(self, torch):
        return torch.nn.Dropout(self.p)  # the same expectation; PyTorch draws its own masks

    # --- the random stream: what checkpoints, the gradient check and data parallelism use ------------
    @property
    def rng_calls(self) -> int:
        """The masks drawn so far (one per training forward): the position in the random stream, which a
        checkpoint saves beside ``seed``."""
        return self._rng_calls

    def rewind(self, rng_calls: int) -> None:
        """Make the next training forward draw mask number ``rng_calls`` again: a resumed run continues
        the stream where its checkpoint stopped; the gradient check replays one mask for every f(x)."""
        self._rng_calls = _count(rng_calls, "rng_calls")

    def shard_from(self, first_example: int) -> None:
        """Data parallelism: the next inputs start at example ``first_example`` of the whole batch, so that
        each example gets the mask that one process training on the whole batch would give it."""
        self._first_example = _count(first_example, "first_example")

    def _first_element(self, x) -> int:
        """Index in the whole batch of x's first element: first_example times the elements per example."""
        return self._first_example * (int(np.prod(x.shape[1:])) if x.ndim > 1 else 1)

    @property
    def scale(self) -> float:
        return 1.0 / (1.0 - self.p)

    # --- cpu: NumPy ------------------------------------------------------------------------------
    # Saved for backward: ``mask`` (same shape as x), 0 or 1 / (1 - p); None for the identity (evaluation).
    def _forward_numpy(self, x, training):
        if not training:
            self._save_for_backward(mask=None)
            return x
        keep = keep_mask(self.seed, self._rng_calls, x.size, self.p, self._first_element(x)).reshape(x.shape)
        self._rng_calls += 1
        mask = keep.astype(self.dtype) * self.dtype.type(self.scale)
        self._save_for_backward(mask=mask)
        return x * mask

    def _backward_numpy(self, dy):
        mask = self._saved().mask
        return dy if mask is None else dy * mask

    # --- gpu and sim: kernels/dropout.cu ---------------------------------------------------------
    def _forward_kernels(self, x, training):
        if not training:
            self._save_for_backward(mask=None)
            return x
        y = self.device.empty(x.shape, self.dtype)
        mask = self.device.empty(x.shape, self.dtype)
        first = self._first_element(x)
        args = (x, y, mask, self.seed, self._rng_calls, first, _threshold(self.p), self.scale, x.size)
        self._kernel("dropout_forward").launch_1d(x.size, args)
        self._rng_calls += 1
        self._save_for_backward(mask=mask)
        return y

    def _backward_kernels(self, dy):
        mask = self._saved().mask
        if mask is None:
            return dy
        dx = self.device.empty(dy.shape, self.dtype)
        self._kernel("dropout_backward").launch_1d(dy.size, (dy, mask, dx, dy.size))
        return dx
