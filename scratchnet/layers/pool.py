"""MaxPool2D: the largest value of each window (LeNet-5 used average pooling; AlexNet made max-pooling usual),
and AvgPool2D: the mean of each window.

Shapes: x (N, C, H, W) -> y (N, C, OH, OW) with OH = floor((H + 2*PH - KH) / SH) + 1 (likewise OW).

Forward. Output (oh, ow) looks at the KH x KW window whose top-left corner is (oh*SH - PH, ow*SW - PW);
positions outside the input are padding and count as -inf::

    y[n, c, oh, ow] = max over 0 <= kh < KH, 0 <= kw < KW of  x[n, c, oh*SH - PH + kh, ow*SW - PW + kw]

and ``argmax[n, c, oh, ow]`` remembers where that maximum is, as the row-major window offset kh*KW + kw.
Ties go to the FIRST maximum in that order (as PyTorch), on every device, so cpu and kernels route the
gradient to the same element.

Backward. y is one of the inputs of its window, so ∂y/∂x is 1 for the argmax and 0 for the others::

    dL/dx[n, c, h, w] = Σ over the windows (oh, ow) whose argmax is (h, w) of  dL/dy[n, c, oh, ow]

With overlapping windows (stride < kernel, as AlexNet's 3x3 stride 2) an input can be the maximum of
several windows, and its gradients add up.

Implementations:

* ``impl="naive"`` (cpu): loops over every output element and its window, the readable reference.
* ``impl="fast"`` (cpu): loops only over the KH*KW window offsets; each step compares one strided view
  ``x[:, :, kh::SH, kw::SW]`` (covering every output at once) with the running maximum. Backward writes
  dy where the argmax is that offset into the same view of dx (+= when windows overlap). A large batch
  runs as one part per BLAS thread (:func:`~scratchnet.layers.batch_threads.batch_parts`).
* gpu and sim (``impl`` does not apply) launch ``maxpool_forward`` (one thread per output, storing the
  argmax) and ``maxpool_backward`` (one thread per input element gathering the dy of the windows whose
  argmax it is: no atomics, deterministic) from ``kernels/pool.cu``.

NaN: a NaN input makes its window's output NaN on every device; which element then gets the gradient is
not specified.

AvgPool2D. The mean of each window, padding counted as zeros (PyTorch's ``count_include_pad=True``)::

    y[n, c, oh, ow]   = 1/(KH*KW) Σ over kh < KH, kw < KW of  x[n, c, oh*SH - PH + kh, ow*SW - PW + kw]
    dL/dx[n, c, h, w] = 1/(KH*KW) Σ over the windows (oh, ow) that contain (h, w) of  dL/dy[n, c, oh, ow]

so an input that no window covers (stride > kernel) gets dL/dx = 0. On cpu it sums the KH*KW strided views
(as the fast max-pool); on gpu and sim ``avgpool_forward`` (one thread per output) and ``avgpool_backward``
(one thread per input, a gather) from ``kernels/pool.cu``.
"""

from __future__ import annotations

import numpy as np

from scratchnet.layers.base import Layer, int_pair, window_output_hw
from scratchnet.layers.batch_threads import batch_parts

IMPLS = ("fast", "naive")


class _Pool2D(Layer):
    """What the pools share: a KH x KW window sliding by (SH, SW) over the input padded by (PH, PW)."""

    kernel_file = "pool.cu"

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        *,
        device="cpu",
        dtype=np.float32,
    ):
        super().__init__(device=device, dtype=dtype)
        name = type(self).__name__
        self.kernel_size = int_pair(kernel_size, "kernel_size", 1, name)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", 1, name)
        self.padding = int_pair(padding, "padding", 0, name)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            # So that every window holds at least one real input (PyTorch has the same rule).
            raise ValueError(
                f"{name}: padding must be at most half the kernel size, got padding={self.padding} "
                f"for kernel_size={self.kernel_size}"
            )

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 4:
            self._fail_shape("(N, C, H, W)", shape)
        who = f"{type(self).__name__}: input {shape}"
        window_output_hw(shape[2:], self.kernel_size, self.stride, self.padding, who)

    def output_shape(self, input_shape: tuple) -> tuple:
        N, C, H, W = input_shape
        return (N, C, *window_output_hw((H, W), self.kernel_size, self.stride, self.padding))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _geometry(self, H: int, W: int) -> tuple:
        """The sizes every pool kernel takes after its arrays and element count."""
        OH, OW = window_output_hw((H, W), self.kernel_size, self.stride, self.padding)
        return (H, W, OH, OW, *self.kernel_size, *self.stride, *self.padding)


class MaxPool2D(_Pool2D):
    """Max-pooling over KH x KW windows; see the module docstring for the formulas."""

    def __init__(
        self, kernel_size, stride=None, padding=0, impl: str = "fast", *, device="cpu", dtype=np.float32
    ):
        super().__init__(kernel_size, stride, padding, device=device, dtype=dtype)
        if impl not in IMPLS:
            raise ValueError(f"MaxPool2D: impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl

    def torch_equivalent(self, torch):
        return torch.nn.MaxPool2d(self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        impl = "" if self.impl == "fast" else f", impl={self.impl!r}"
        return super().extra_repr() + impl

    # --- cpu: NumPy ------------------------------------------------------------------------------
    # Saved for backward: ``argmax`` (N, C, OH, OW), the window offset of each maximum, and the input shape.
    # The fast path splits a large batch over the BLAS threads (batch_parts), each part writing its slice.
    def _forward_numpy(self, x, training):
        window = (self.kernel_size, self.stride, self.padding)
        if self.impl == "naive":
            y, argmax = _max_pool_naive(x, *window)
        else:
            y = np.empty(self.output_shape(x.shape), dtype=x.dtype)  # (N, C, OH, OW)
            argmax = np.empty(y.shape, dtype=np.int32)
            batch_parts(len(x), x.size)(
                lambda images: _max_pool_fast(x[images], *window, y[images], argmax[images])
            )
        self._save_for_backward(argmax=argmax, input_shape=tuple(x.shape))
        return y

    def _backward_numpy(self, dy):
        saved = self._saved()
        window = (self.kernel_size, self.stride, self.padding)
        if self.impl == "naive":
            return _max_unpool_naive(dy, saved.argmax, saved.input_shape, *window)
        dx = np.zeros(saved.input_shape, dtype=dy.dtype)  # (N, C, H, W); inputs in no window get 0
        batch_parts(len(dx), dx.size)(
            lambda images: _max_unpool_fast(dy[images], saved.argmax[images], *window, dx[images])
        )
        return dx

    # --- gpu and sim: kernels/pool.cu ------------------------------------------------------------
    def _forward_kernels(self, x, training):
        _, _, H, W = x.shape
        out_shape = self.output_shape(x.shape)
        y = self.device.empty(out_shape, self.dtype)
        argmax = self.device.empty(out_shape, np.int32)
        kernel = self._kernel("maxpool_forward")
        kernel.launch_1d(y.size, (x, y, argmax, y.size, *self._geometry(H, W)))
        self._save_for_backward(argmax=argmax, input_shape=tuple(x.shape))
        return y

    def _backward_kernels(self, dy):
        saved = self._saved()
        _, _, H, W = saved.input_shape
        dx = self.device.empty(saved.input_shape, self.dtype)
        kernel = self._kernel("maxpool_backward")
        kernel.launch_1d(dx.size, (dy, saved.argmax, dx, dx.size, *self._geometry(H, W)))
        return dx


# --- naive: the definition, one output element at a time -------------------------------------------
def _max_pool_naive(x, kernel, stride, padding):
    """-> y (N, C, OH, OW) and argmax (N, C, OH, OW): window offset kh*KW + kw of the first maximum."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel, stride, padding
    OH, OW = window_output_hw((H, W), kernel, stride, padding)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int32)
    for n, c, oh, ow in np.ndindex(N, C, OH, OW):
        best, best_offset = -np.inf, -1
        for kh in range(KH):
            for kw in range(KW):
                h, w = oh * SH - PH + kh, ow * SW - PW + kw
                value = x[n, c, h, w] if 0 <= h < H and 0 <= w < W else -np.inf  # padding is -inf
                # The first element, a strictly larger one (so ties keep the first), or a NaN.
                if best_offset < 0 or value > best or np.isnan(value):
                    best, best_offset = value, kh * KW + kw
        y[n, c, oh, ow] = best
        argmax[n, c, oh, ow] = best_offset
    return y, argmax


def _max_unpool_naive(dy, argmax, input_shape, kernel, stride, padding):
    """dx (input_shape): each dy[n, c, oh, ow] added to the input element its window's maximum came from."""
    _, _, H, W = input_shape
    KW, (SH, SW), (PH, PW) = kernel[1], stride, padding
    dx = np.zeros(input_shape, dtype=dy.dtype)
    for n, c, oh, ow in np.ndindex(dy.shape):
        kh, kw = divmod(int(argmax[n, c, oh, ow]), KW)
        h, w = oh * SH - PH + kh, ow * SW - PW + kw
        if 0 <= h < H and 0 <= w < W:  # a maximum in the padding (possible only if the inputs are -inf)
            dx[n, c, h, w] += dy[n, c, oh, ow]  # +=: overlapping windows can share their maximum
    return dx


# --- fast: a loop over the KH*KW window offsets, vectorized over every output ----------------------
def _window_views(a, kernel, stride, out_hw):
    """For each window offset (kh, kw), in row-major order, the strided view of ``a`` (already padded)
    holding element (kh, kw) of every window: ``view[n, c, oh, ow] = a[n, c, oh*SH + kh, ow*SW + kw]``."""
    (KH, KW), (SH, SW), (OH, OW) = kernel, stride, out_hw
    return [
        a[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW]
        for kh in range(KH)
        for kw in range(KW)
    ]


def _pad(a, padding, value):
    (PH, PW) = padding
    if PH == 0 and PW == 0:
        return a
    return np.pad(a, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=value)


def _max_pool_fast(x, kernel, stride, padding, y, argmax):
    """Same results as :func:`_max_pool_naive`, ties included, written into y and argmax (N, C, OH, OW)."""
    views = _window_views(_pad(x, padding, -np.inf), kernel, stride, y.shape[2:])  # KH*KW views like y
    np.copyto(y, views[0])
    for view in views[1:]:
        np.maximum(y, view, out=y)
    # The argmax is the FIRST offset holding the maximum, i.e. the number of offsets before it:
    # argmax = Σ_o [none of the offsets 0..o holds the maximum]. (Boolean arrays make this cheap.)
    not_found = views[0] != y
    np.copyto(argmax, not_found)
    for view in views[1:-1]:
        not_found &= view != y
        argmax += not_found


def _max_unpool_fast(dy, argmax, kernel, stride, padding, dx):
    """Each dy into dx (N, C, H, W), zeros on entry, at its window's argmax."""
    N, C, H, W = dx.shape
    (PH, PW) = padding
    dx_padded = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype) if PH or PW else dx
    views = _window_views(dx_padded, kernel, stride, dy.shape[2:])
    if stride == kernel:
        # Windows that do not overlap (LeNet's 2x2 stride 2): every input is in at most one window, so the
        # views are disjoint and each is written once, straight from dy: no read-modify-write, no temporary.
        for offset, view in enumerate(views):
            np.multiply(dy, argmax == offset, out=view)
    else:
        # +=: overlapping windows can share their maximum. Going through the offsets backwards adds each
        # input's gradients in increasing (oh, ow) order, as the naive loop and the kernel do: the sums agree
        # to the bit.
        for offset in range(len(views) - 1, -1, -1):
            views[offset] += dy * (argmax == offset)
    if PH or PW:
        dx[...] = dx_padded[:, :, PH : PH + H, PW : PW + W]


class AvgPool2D(_Pool2D):
    """Average pooling over KH x KW windows, padding counted as zeros; see the module docstring."""

    def torch_equivalent(self, torch):
        return torch.nn.AvgPool2d(self.kernel_size, self.stride, self.padding)

    # --- cpu: NumPy ------------------------------------------------------------------------------
    def _forward_numpy(self, x, training):
        out_hw = window_output_hw(x.shape[2:], self.kernel_size, self.stride, self.padding)
        views = _window_views(_pad(x, self.padding, 0), self.kernel_size, self.stride, out_hw)
        y = views[0].copy()  # (N, C, OH, OW)
        for view in views[1:]:
            y += view
        self._save_for_backward(input_shape=tuple(x.shape))
        return y / self.dtype.type(len(views))

    def _backward_numpy(self, dy):
        N, C, H, W = self._saved().input_shape
        (PH, PW) = self.padding
        dx_padded = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
        views = _window_views(dx_padded, self.kernel_size, self.stride, dy.shape[2:])
        share = dy / self.dtype.type(len(views))  # each input of a window gets 1/(KH*KW) of its dy
        for view in views:
            view += share  # +=: overlapping windows add up; inputs of no window stay 0
        return np.ascontiguousarray(dx_padded[:, :, PH : PH + H, PW : PW + W])

    # --- gpu and sim: kernels/pool.cu ------------------------------------------------------------
    def _forward_kernels(self, x, training):
        _, _, H, W = x.shape
        y = self.device.empty(self.output_shape(x.shape), self.dtype)
        self._kernel("avgpool_forward").launch_1d(y.size, (x, y, y.size, *self._geometry(H, W)))
        self._save_for_backward(input_shape=tuple(x.shape))
        return y

    def _backward_kernels(self, dy):
        input_shape = self._saved().input_shape
        dx = self.device.empty(input_shape, self.dtype)
        self._kernel("avgpool_backward").launch_1d(
            dx.size, (dy, dx, dx.size, *self._geometry(*input_shape[2:]))
        )
        return dx
