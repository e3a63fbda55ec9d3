"""What every layer shares: parameters and gradients, its device and dtype, input checks, dispatch, and the
backward cache.

A layer subclass writes four methods, side by side in its own file (as Chainer does):

* ``_forward_numpy(x, training)`` / ``_backward_numpy(dy)``: the NumPy math, used on ``cpu``;
* ``_forward_kernels(x, training)`` / ``_backward_kernels(dy)``: launches of the CUDA kernels in
  ``kernels/*.cu``, used on ``gpu`` and ``sim`` (arrays from ``self.device``; no NumPy math on them).

and declares what the rest of scratchnet needs to know about it: ``kernel_file`` (its file of ``kernels/``,
which ``self._kernel(name)`` loads from) and ``torch_equivalent(torch)`` (its PyTorch twin, for the
benchmarks and the parity tests). Convolutions and pools size their output with :func:`window_output_hw`.

:meth:`Layer.forward` checks the input first, so a wrong shape or dtype is a clear ``ValueError`` naming
what was expected, never a traceback from deep inside the math. ``backward`` returns dL/dx and
*overwrites* ``self.grads``; it needs a forward that kept what it needs (see :class:`Layer`).
"""

from __future__ import annotations

from types import SimpleNamespace

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
    """TypeError unless ``a`` is an array on ``device`` (not a list, not another device's array), saying how
    to move it there."""
    if not device.is_array(a):
        raise TypeError(
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


def window_output_hw(input_hw, kernel_size, stride=1, padding=0, who: str = "") -> tuple[int, int]:
    """(OH, OW): the positions of a KH x KW window sliding by (SH, SW) over an H x W input with PH, PW zeros
    added on each side (convolution, pooling)::

        OH = (H + 2 PH - KH) // SH + 1        OW = (W + 2 PW - KW) // SW + 1

    ``kernel_size``, ``stride`` and ``padding`` are ints or (h, w) pairs. ValueError when the window does not
    fit in the padded input even once (the output would be empty); ``who`` starts its message."""
    (H, W), (KH, KW) = input_hw, _as_pair(kernel_size)
    (SH, SW), (PH, PW) = _as_pair(stride), _as_pair(padding)
    if H + 2 * PH < KH or W + 2 * PW < KW:
        prefix = f"{who}: " if who else ""
        raise ValueError(
            f"{prefix}a {KH}x{KW} window does not fit in a {H}x{W} input with padding ({PH}, {PW}): the "
            f"output would be empty (H and W must be at least {KH - 2 * PH} and {KW - 2 * PW})"
        )
    return (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1


def _as_pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


class BackwardCache:
    """The backward-cache protocol, shared by :class:`Layer` and the loss (cf. CS231n's ``return out, cache``
    and Chainer's ``retain_inputs``): a forward *saves* what its backward needs, the backward *reads* it.

    ::

        def _forward_numpy(self, x, training):
            y = np.maximum(x, 0)
            self._save_for_backward(y=y)       # kept only when the forward was asked to keep
            return y

        def _backward_numpy(self, dy):
            y = self._saved().y                # RuntimeError if nothing was kept
            return dy * (y > 0)                # dL/dx = dL/dy · [y > 0]
    """

    _keep = False  # whether the running forward keeps what backward needs
    _saved_arrays: SimpleNamespace | None = None  # what the last forward kept (None: nothing)

    def _start_forward(self, keep: bool) -> None:
        """Before each forward: forget the previous forward's arrays; say whether to keep new ones."""
        self._keep = bool(keep)
        self._saved_arrays = None

    def _save_for_backward(self, **arrays) -> None:
        """Keep ``arrays`` (by name) for backward, if this forward keeps anything; otherwise drop them."""
        if self._keep:
            self._saved_arrays = SimpleNamespace(**arrays)

    def _saved(self) -> SimpleNamespace:
        """What the last forward kept, as attributes (``self._saved().x``); a clear error if nothing."""
        if self._saved_arrays is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward needs a forward with training=True or "
                f"keep_for_backward=True first (an evaluation forward keeps nothing, to save memory)"
            )
        return self._saved_arrays


class Layer(BackwardCache):
    """Base class. ``params``/``grads``: dicts of arrays on ``self.device`` (empty without parameters).

    The backward cache. ``forward(x, training=True, keep_for_backward=None)`` computes y = layer(x); the
    backward needs some of the forward's arrays again (ReLU its y, Linear its x, max-pool where each maximum
    was), so the forward may *keep* them::

        keep = training if keep_for_backward is None else keep_for_backward
        y    = forward(x)             subclass calls self._save_for_backward(name=array, ...)
        dx   = backward(dy)           subclass reads  self._saved().name; refused unless keep was true

    * training (``training=True``): keep, as training always runs backward next;
    * evaluation (``training=False``): keep nothing (no memory held for a backward that never comes), and
      ``backward`` raises "backward needs a forward with training=True or keep_for_backward=True";
    * evaluation with ``keep_for_backward=True``: the evaluation forward (Dropout is the identity) and its
      exact backward (Dropout's backward is the identity too), e.g. for a saliency map dL/dx of a trained net.

    Each forward forgets what the previous one kept, so a backward always belongs to the latest forward.

    At the boundary. ``forward`` and ``backward`` take arrays on the layer's device in its dtype (a list or
    another device's array is a ``TypeError``, a wrong dtype or shape a ``ValueError``, each naming the
    layer); a non-contiguous array (a slice, a transpose) is copied into a C-contiguous one on the device,
    as kernels index memory flatly. An empty input (a batch of 0) runs no math (a kernel cannot launch an
    empty grid): the output is empty, and ``backward`` gives an empty dL/dx and zero parameter gradients.
    """

    # What the rest of scratchnet needs to know about a layer, the layer declares (no list elsewhere names
    # layers): its kernel file here, its PyTorch twin in torch_equivalent.
    kernel_file: str | None = None  # the file of kernels/ with this layer's kernels, e.g. "pool.cu"

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
    def forward(self, x, training: bool = True, keep_for_backward: bool | None = None):
        """``x`` on this layer's device, in its dtype; returns the output (see the subclass docstring).

        ``keep_for_backward``: keep what ``backward`` needs; None means "same as ``training``".
        """
        x = self._checked_array(x, "x")
        self.check_input_shape(tuple(x.shape))
        self._start_forward(training if keep_for_backward is None else keep_for_backward)
        if x.size == 0 and not self._sums_over_ranks(training):  # a batch of 0: nothing to compute
            self._save_for_backward(empty_input_shape=tuple(x.shape))
            y = self.device.zeros(self.output_shape(tuple(x.shape)), self.dtype)
        else:
            fwd = self._forward_kernels if self.device.uses_kernels else self._forward_numpy
            y = fwd(x, training)
        self._out_shape = tuple(y.shape)
        return y

    def backward(self, dy):
        """dL/dy -> dL/dx; fills ``self.grads`` with dL/dparam (same keys and shapes as ``params``)."""
        saved = self._saved()  # refuse now if the last forward kept nothing
        dy = self._checked_array(dy, "dy")
        if tuple(dy.shape) != self._out_shape:
            raise ValueError(
                f"{type(self).__name__}.backward: dy must have the output's shape {self._out_shape}, "
                f"got {tuple(dy.shape)}"
            )
        if hasattr(saved, "empty_input_shape"):  # a batch of 0: dL/dx is empty, dL/dparam = 0
            for name, value in self.params.items():
                self.grads[name] = self.device.zeros(value.shape, self.dtype)
            needs_input_grad = getattr(self, "needs_input_grad", True)  # see Conv2D
            return self.device.zeros(saved.empty_input_shape, self.dtype) if needs_input_grad else None
        bwd = self._backward_kernels if self.device.uses_kernels else self._backward_numpy
        return bwd(dy)

    def _sums_over_ranks(self, training: bool) -> bool:
        """Whether this forward (and its backward) sums over data-parallel ranks, and so must run on a batch
        of 0 too, as every rank takes part: synchronised BatchNorm (:mod:`scratchnet.layers.batchnorm`)."""
        return False

    def output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for one input shape (with the batch axis), computed without running."""
        raise NotImplementedError

    def torch_equivalent(self, torch):
        """The ``torch.nn.Module`` computing what this layer computes, holding a copy of its parameters and
        buffers in the layer's dtype (float64 weights are not rounded to float32 on the way). ``torch`` is
        the PyTorch module, passed in: scratchnet runs without PyTorch. The benchmarks time and train these
        twins; the parity tests compare outputs with them."""
        raise NotImplementedError(f"{type(self).__name__} declares no PyTorch equivalent (torch_equivalent)")

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
        self._saved_arrays = None  # arrays of the old device
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

    def _kernel(self, name: str):
        """Kernel ``name`` of ``kernels/<kernel_file>``, instantiated for this layer's dtype."""
        return self.device.kernel(self.kernel_file, name, self.dtype)

    def _torch_dtype(self, torch):
        return torch.float64 if self.dtype == np.float64 else torch.float32

    def _host(self, name: str) -> np.ndarray:
        """A host copy of parameter or buffer ``name``."""
        store = self.params if name in self.params else self.buffers
        return np.asarray(self.device.to_host(store[name]))

    def _to_torch(self, torch, module, **host_arrays):
        """``module`` with each named tensor overwritten by a host array:
        ``self._to_torch(torch, module, weight=self._host("W").T, bias=self._host("b"))``."""
        with torch.no_grad():
            for name, value in host_arrays.items():
                getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return module

    def _set_buffer(self, name: str, host_value: np.ndarray) -> None:
        """Store a buffer (given on the host) on this layer's device; see ``buffers`` in ``__init__``."""
        self.buffers[name] = self.device.array(host_value, dtype=self.dtype)

    def _checked_array(self, a, what: str):
        """``a`` itself, or a C-contiguous copy on the device; an error naming the layer if ``a`` is not an
        array of this device and dtype."""
        layer = type(self).__name__
        check_on_device(self.device, a, layer, what)
        if a.dtype != self.dtype:
            raise ValueError(f"{layer}: {what} must have dtype {self.dtype}, got {a.dtype}")
        return a if a.flags.c_contiguous else a.copy()  # .copy() is C-ordered, on NumPy and CuPy alike

    def _fail_shape(self, expected: str, shape: tuple) -> None:
        raise ValueError(f"{type(self).__name__}: expected input of shape {expected}, got {shape}")
