"""What every layer shares: parameters and gradients, its device and dtype, input checks, and dispatch.

A layer subclass writes four methods, side by side in its own file (as Chainer does):

* ``_forward_numpy(x, training)`` / ``_backward_numpy(dy)``: the NumPy math, used on ``cpu``;
* ``_forward_kernels(x, training)`` / ``_backward_kernels(dy)``: launches of the CUDA kernels in
  ``kernels/*.cu``, used on ``gpu`` and ``sim`` (arrays from ``self.device``; no NumPy math on them).

:meth:`Layer.forward` checks the input first, so a wrong shape or dtype is a clear ``ValueError`` naming
what was expected, never a traceback from deep inside the math. ``backward`` must be called after a
``forward`` with ``training=True``; it returns dL/dx and *overwrites* ``self.grads``.
"""

from __future__ import annotations

import numpy as np

from scratchnet.device import Device, get_device

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 or float64."""
    d = np.dtype(dtype)
    if d not in FLOAT_DTYPES:
        raise ValueError(f"layers compute in float32 or float64, not {d}")
    return d


def check_on_device(device: Device, a, who: str, what: str) -> None:
    """ValueError unless ``a`` is an array on ``device``, saying how to move it there."""
    if not device.is_array(a):
        raise ValueError(
            f"{who}: {what} must be an array on device '{device.name}', got {type(a).__name__} "
            f"(move data with scratchnet.get_device('{device.name}').array(...))"
        )


def int_pair(value, name: str, minimum: int, who: str) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``, as a pair; ``who`` names the layer in errors."""
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{who}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


class Layer:
    """Base class. ``params``/``grads``: dicts of arrays on ``self.device`` (empty without parameters)."""

    def __init__(self, *, device: str | Device = "cpu", dtype=np.float32):
        self.device = get_device(device)
        self.dtype = float_dtype(dtype)
        self.params: dict = {}
        self.grads: dict = {}
        # Buffers: state that is not trained (no gradient, not in params, never touched by the optimizer)
        # but belongs to the model, e.g. BatchNorm's running statistics; in state dicts and checkpoints.
        self.buffers: dict = {}
        self._out_shape: tuple | None = None  # shape of the last forward output, to check dy

    # --- the public API -------------------------------------------------------------------------
    def forward(self, x, training: bool = True):
        """``x`` on this layer's device, in its dtype; returns the output (see the subclass docstring)."""
        self._check_array(x, "x")
        self.check_input_shape(tuple(x.shape))
        fwd = self._forward_kernels if self.device.uses_kernels else self._forward_numpy
        y = fwd(x, training)
        self._out_shape = tuple(y.shape)
        return y

    def backward(self, dy):
        """dL/dy -> dL/dx; fills ``self.grads`` with dL/dparam (same keys and shapes as ``params``)."""
        if self._out_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        self._check_array(dy, "dy")
        if tuple(dy.shape) != self._out_shape:
            raise ValueError(
                f"{type(self).__name__}.backward: dy must have the output's shape {self._out_shape}, "
                f"got {tuple(dy.shape)}"
            )
        bwd = self._backward_kernels if self.device.uses_kernels else self._backward_numpy
        return bwd(dy)

    def output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for one input shape (with the batch axis), computed without running."""
        raise NotImplementedError

    def check_input_shape(self, shape: tuple) -> None:
        """Raise ``ValueError`` naming the expected shape if ``shape`` is wrong for this layer."""

    def to(self, device: str | Device, dtype=None) -> Layer:
        """Move (and optionally cast) parameters and gradients to ``device``; returns ``self``."""
        new = get_device(device)
        dtype = self.dtype if dtype is None else float_dtype(dtype)
        for store in (self.params, self.grads, self.buffers):
            for k, v in store.items():
                store[k] = new.array(self.device.to_host(v), dtype=dtype)
        self.device, self.dtype = new, dtype
        self._out_shape = None
        return self

    def num_params(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.params.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""

    # --- helpers for subclasses -------------------------------------------------------------------
    def _set_param(self, name: str, host_value: np.ndarray) -> None:
        """Store a parameter (given on the host) on this layer's device, and a zero gradient beside it."""
        self.params[name] = self.device.array(host_value, dtype=self.dtype)
        self.grads[name] = self.device.zeros(host_value.shape, self.dtype)

    def _set_buffer(self, name: str, host_value: np.ndarray) -> None:
        """Store a buffer (given on the host) on this layer's device; see ``buffers`` in ``__init__``."""
        self.buffers[name] = self.device.array(host_value, dtype=self.dtype)

    def _check_array(self, a, what: str) -> None:
        layer = type(self).__name__
        check_on_device(self.device, a, layer, what)
        if a.dtype != self.dtype:
            raise ValueError(f"{layer}: {what} must have dtype {self.dtype}, got {a.dtype}")

    def _fail_shape(self, expected: str, shape: tuple) -> None:
        raise ValueError(f"{type(self).__name__}: expected input of shape {expected}, got {shape}")
