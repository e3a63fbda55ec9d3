"""2-D convolution, the layer LeNet-5 and AlexNet are built from.

Shapes and names: input x (N, C, H, W); F filters W (F, C/G, kh, kw) and biases b (F,); G groups; stride
(sh, sw); zero padding (ph, pw); output y (N, F, Ho, Wo) with

    Ho = (H + 2 ph - kh) // sh + 1,        Wo = (W + 2 pw - kw) // sw + 1.

Write xp for x padded with zeros, Cg = C/G, Fg = F/G, and g(f) = f // Fg for the group of filter f: filter f
sees only the Cg input channels of its group, starting at channel c0(f) = g(f) Cg. (Like every deep
learning library this is a cross-correlation: the kernel is not flipped.)

Forward::

    y[n, f, ho, wo] = b[f] + Σ_{c < Cg, i < kh, j < kw} W[f, c, i, j] · xp[n, c0(f) + c, ho·sh + i, wo·sw + j]

Backward, given dy = dL/dy (N, F, Ho, Wo)::

    db[f]          = Σ_{n, ho, wo} dy[n, f, ho, wo]
    dW[f, c, i, j] = Σ_{n, ho, wo} dy[n, f, ho, wo] · xp[n, c0(f) + c, ho·sh + i, wo·sw + j]
    dxp[n, c0(f) + c, ho·sh + i, wo·sw + j] += W[f, c, i, j] · dy[n, f, ho, wo]   (all f, c, i, j, ho, wo)

and dx is dxp without its padding. Each formula is the forward sum read the other way round: an input
pixel receives gradient from every output whose receptive field contains it.

Three implementations, tested against each other and against PyTorch:

* ``conv2d_forward_naive`` / ``conv2d_backward_naive``: the formulas as Python loops. Slow; the definition.
* ``conv2d_forward_fast`` / ``conv2d_backward_fast``: im2col + one matrix product (BLAS), the cpu default.
* on ``gpu`` and ``sim``, CUDA kernels from ``kernels/``. ``impl="naive"``: ``conv2d_forward_naive``,
  ``conv2d_backward_input_naive``, ``conv2d_backward_weight_naive`` (conv.cu), one thread per output value.
  ``impl="fast"``: ``im2col`` and ``col2im`` (conv.cu), ``gemm_tiled`` and ``add_bias`` (gemm.cu),
  ``swap_axes01`` (conv.cu) between the GEMM's (F, N, Ho·Wo) layout and NCHW. Both use ``bias_grad``
  (reduce.cu) for db.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from scratchnet.device import Device
from scratchnet.layers.base import Layer, int_pair
from scratchnet.layers.linear import add_bias, bias_grad, gemm

IMPLS = ("fast", "naive")


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: (size + 2 padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


# --- the definition: explicit loops ------------------------------------------------------------------------
def conv2d_forward_naive(x, w, b, stride=(1, 1), padding=(0, 0), groups=1):
    """y (N, F, Ho, Wo) from x (N, C, H, W), w (F, C/groups, kh, kw), b (F,): the forward formula as loops."""
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    Fg = F // groups
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H + 2ph, W + 2pw)
    y = np.empty((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg  # first input channel of filter f's group
            for ho in range(Ho):
                for wo in range(Wo):
                    field = xp[
                        n, c0 : c0 + Cg, ho * sh : ho * sh + kh, wo * sw : wo * sw + kw
                    ]  # (Cg, kh, kw)
                    y[n, f, ho, wo] = np.sum(field * w[f]) + b[f]
    return y


def conv2d_backward_naive(dy, x, w, stride=(1, 1), padding=(0, 0), groups=1):
    """(dx, dw, db) from dy (N, F, Ho, Wo) and the forward's x and w: the backward formulas as loops."""
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    Fg = F // groups
    _, _, Ho, Wo = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for ho in range(Ho):
                for wo in range(Wo):
                    rows, cols = slice(ho * sh, ho * sh + kh), slice(wo * sw, wo * sw + kw)
                    dw[f] += dy[n, f, ho, wo] * xp[n, c0 : c0 + Cg, rows, cols]
                    dxp[n, c0 : c0 + Cg, rows, cols] += dy[n, f, ho, wo] * w[f]
    db = dy.sum(axis=(0, 2, 3))
    dx = dxp[:, :, ph : ph + H, pw : pw + W]
    return np.ascontiguousarray(dx), dw, db


# --- the fast version: im2col + one matrix product ---------------------------------------------------------
#
# im2col lays every receptive field out as a column:
#
#     cols[(c, i, j), (ho, wo, n)] = xp[n, c, ho·sh + i, wo·sw + j]         (C·kh·kw, Ho·Wo·N)
#
# so the forward sum is a matrix product, and the backward formulas are two more:
#
#     Y    = Wm cols          Wm = W as (F, Cg·kh·kw),   Y = y as (F, Ho·Wo·N)
#     dWm  = dY colsᵀ
#     dcols = Wmᵀ dY          and col2im adds each entry of dcols back onto the pixel it was copied from.
#
# With groups, the rows of cols for group g are the contiguous block of its channels, so cols is a stack
# (G, Cg·kh·kw, Ho·Wo·N) and the products are stacks of G matrix products (np.matmul broadcasts).
#
# The batch axis comes LAST inside the fast path: the layer transposes x (N, C, H, W) to (C, H, W, N) on the
# way in and y back to NCHW on the way out (likewise dy in, dx out). Why: im2col and col2im are loops over
# the kh·kw kernel offsets, each moving the pixels of offset (i, j) for every output at once, i.e. the
# strided block xp[:, :, i : i + Ho·sh : sh, j : j + Wo·sw : sw]. NumPy runs such a block as many short
# contiguous runs, and with batch last a run is Wo·N numbers long (1280 for LeNet's conv2) instead of Wo
# (10): NumPy's per-run overhead, not the copying, dominated the NCHW version, 3-6 times slower. The four
# transposes are plain 2-D ones, (N, rest) <-> (rest, N), done in blocks to stay in cache. (The CUDA kernels
# keep the batch first: one thread per number has no per-run overhead to avoid.)


def _transpose_2d(a):
    """a.T for a C-contiguous 2-D a, as a C-contiguous array. A plain ``ascontiguousarray(a.T)`` reads or
    writes with a large stride and misses the cache on every element; copying blocks of 64 rows keeps each
    block's source and destination in cache (3-4 times faster here)."""
    rows, columns = a.shape
    out = np.empty((columns, rows), dtype=a.dtype)
    for r in range(0, rows, 64):
        out[:, r : r + 64] = a[r : r + 64].T
    return out


def _batch_last(x):
    """(N, ...) -> (..., N), C-contiguous."""
    return _transpose_2d(x.reshape(x.shape[0], -1)).reshape(*x.shape[1:], x.shape[0])


def _batch_first(x):
    """(..., N) -> (N, ...), C-contiguous; the inverse of :func:`_batch_last`."""
    return _transpose_2d(x.reshape(-1, x.shape[-1])).reshape(x.shape[-1], *x.shape[:-1])


def _im2col(x, kernel_size, stride, padding):
    """cols[(c, i, j), (ho, wo, n)] = xp[n, c, ho·sh + i, wo·sw + j]: (C·kh·kw, Ho·Wo·N), C-contiguous."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    # Transpose, then pad: padded rows of 2^k numbers (32x32 for LeNet's conv1) transpose slowly (cache
    # associativity), and the padding copy is cheap with batch last.
    x_last = xp_last = _batch_last(x)  # (C, H, W, N)
    if ph or pw:
        xp_last = np.zeros((C, H + 2 * ph, W + 2 * pw, N), dtype=x.dtype)
        xp_last[:, ph : ph + H, pw : pw + W] = x_last
    # windows[c, ho, wo, n, i, j] = xp[n, c, ho·sh + i, wo·sw + j]: a view, nothing copied yet
    windows = sliding_window_view(xp_last, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    Ho, Wo = windows.shape[1:3]
    cols = np.ascontiguousarray(windows.transpose(0, 4, 5, 1, 2, 3))  # (C, kh, kw, Ho, Wo, N): the copy
    return cols.reshape(C * kh * kw, Ho * Wo * N)


def _col2im(dcols, x_shape, kernel_size, stride, padding):
    """dx (N, C, H, W) from dcols (C·kh·kw, Ho·Wo·N): each dcols[(c, i, j), (ho, wo, n)] added onto
    dxp[n, c, ho·sh + i, wo·sw + j], the pixel :func:`_im2col` copied it from (its adjoint)."""
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    dcols = dcols.reshape(C, kh, kw, Ho, Wo, N)
    dxp_last = np.zeros((C, H + 2 * ph, W + 2 * pw, N), dtype=dcols.dtype)  # dxp, batch last
    for i in range(kh):
        for j in range(kw):
            # +=: where windows overlap (stride < kernel), a pixel sums what every window gives it
            dxp_last[:, i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw] += dcols[:, i, j]
    return _batch_first(np.ascontiguousarray(dxp_last[:, ph : ph + H, pw : pw + W]))  # crop, to NCHW


def conv2d_forward_fast(x, w, b, stride=(1, 1), padding=(0, 0), groups=1):
    """Forward by im2col + matmul. Returns y (N, F, Ho, Wo) and the cache that the backward needs."""
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    Ho, Wo = conv_output_size(H, kh, stride[0], padding[0]), conv_output_size(W, kw, stride[1], padding[1])
    cols = _im2col(x, (kh, kw), stride, padding).reshape(groups, Cg * kh * kw, Ho * Wo * N)
    y_last = w.reshape(groups, F // groups, Cg * kh * kw) @ cols  # (G, Fg, Ho·Wo·N) = (F, Ho, Wo, N)
    y_last = y_last.reshape(F, Ho, Wo, N)
    y_last += b[:, None, None, None]
    return _batch_first(y_last), (cols, x.shape)


def conv2d_backward_fast(dy, cache, w, stride=(1, 1), padding=(0, 0), groups=1, input_grad=True):
    """Backward by matmul + col2im. Returns (dx, dw, db); dx is None when ``input_grad`` is False."""
    cols, x_shape = cache
    F, Cg, kh, kw = w.shape
    dy_last = _batch_last(dy).reshape(groups, F // groups, -1)  # (G, Fg, Ho·Wo·N): cols' column order
    db = dy_last.reshape(F, -1).sum(axis=1)  # (F,)
    dw = (dy_last @ cols.transpose(0, 2, 1)).reshape(w.shape)  # dY colsᵀ
    if not input_grad:
        return None, dw, db
    w_mat = w.reshape(groups, F // groups, Cg * kh * kw)  # (G, Fg, Cg·kh·kw)
    dcols = w_mat.transpose(0, 2, 1) @ dy_last  # Wmᵀ dY: (G, Cg·kh·kw, Ho·Wo·N)
    return _col2im(dcols, x_shape, (kh, kw), stride, padding), dw, db


# --- the layer ---------------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _positive_int(value, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"Conv2D: {name} must be a positive integer, got {value!r}")
    return int(value)


class Conv2D(Layer):
    """2-D convolution over (N, C, H, W) inputs; the math is in the module docstring.

    ``kernel_size``, ``stride``, ``padding``: an int or an (h, w) pair. ``groups`` splits the channels into
    independent convolutions (``groups = in_channels`` is a depthwise convolution). ``impl``: "fast"
    (im2col + GEMM) or "naive" (direct loops / one thread per output). ``W`` starts He-normal,
    std = sqrt(2 / fan_in) with fan_in = in_channels / groups · kh · kw; ``b`` at zero; ``seed`` seeds it.
    ``needs_input_grad = False`` (for a network's first layer) makes ``backward`` skip dL/dx and return None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        impl: str = "fast",
        device: str | Device = "cpu",
        dtype=np.float32,
        seed=None,
    ):
        super().__init__(device=device, dtype=dtype)
        in_channels = _positive_int(in_channels, "in_channels")
        out_channels = _positive_int(out_channels, "out_channels")
        groups = _positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2D: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                f"divisible by groups ({groups})"
            )
        if impl not in IMPLS:
            raise ValueError(f"Conv2D: impl must be one of {IMPLS}, got {impl!r}")
        self.in_channels, self.out_channels, self.groups, self.impl = in_channels, out_channels, groups, impl
        self.kernel_size = int_pair(kernel_size, "kernel_size", 1, "Conv2D")
        self.stride = int_pair(stride, "stride", 1, "Conv2D")
        self.padding = int_pair(padding, "padding", 0, "Conv2D")

        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((out_channels, in_channels // groups, kh, kw)) * np.sqrt(2 / fan_in)
        self._set_param("W", w)
        self._set_param("b", np.zeros(out_channels))
        # Set to False on a network's first layer, whose dL/dx nobody reads: backward then skips computing
        # it (about a third of the backward's work) and returns None.
        self.needs_input_grad = True

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 4 or shape[1] != self.in_channels:
            self._fail_shape(f"(N, {self.in_channels}, H, W)", shape)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if shape[2] + 2 * ph < kh or shape[3] + 2 * pw < kw:
            raise ValueError(
                f"Conv2D: input of shape {shape} is smaller than the {kh}x{kw} kernel "
                f"(with padding {self.padding}, H and W must be at least {kh - 2 * ph} and {kw - 2 * pw})"
            )

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        self.check_input_shape(input_shape)
        N, _, H, W = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (N, self.out_channels, conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw))

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.impl != "fast":
            text += f", impl={self.impl!r}"
        return text

    # --- cpu: NumPy ----------------------------------------------------------------------------------
    # Saved for backward: ``x`` (naive), or the im2col ``cache`` (fast).
    def _forward_numpy(self, x, training):
        conv = dict(stride=self.stride, padding=self.padding, groups=self.groups)
        w, b = self.params["W"], self.params["b"]
        if self.impl == "naive":
            self._save_for_backward(x=x)
            return conv2d_forward_naive(x, w, b, **conv)
        y, cache = conv2d_forward_fast(x, w, b, **conv)
        self._save_for_backward(cache=cache)
        return y

    def _backward_numpy(self, dy):
        conv = dict(stride=self.stride, padding=self.padding, groups=self.groups)
        w, saved = self.params["W"], self._saved()
        if self.impl == "naive":
            dx, dw, db = conv2d_backward_naive(dy, saved.x, w, **conv)
        else:
            dx, dw, db = conv2d_backward_fast(dy, saved.cache, w, **conv, input_grad=self.needs_input_grad)
        self.grads["W"], self.grads["b"] = dw, db
        return dx if self.needs_input_grad else None

    # --- gpu and sim: kernels/conv.cu, kernels/gemm.cu, kernels/reduce.cu ----------------------------
    def _sizes(self, x_shape) -> tuple[int, ...]:
        """The size arguments of im2col and col2im: N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo.

        The naive kernels take F and groups after them.
        """
        N, C, H, W = x_shape
        _, _, Ho, Wo = self.output_shape(x_shape)
        return (N, C, H, W, *self.kernel_size, *self.stride, *self.padding, Ho, Wo)

    def _conv_kernel(self, name: str):
        return self.device.kernel("conv.cu", name, self.dtype)

    def _forward_kernels(self, x, training):
        dev, w, b = self.device, self.params["W"], self.params["b"]
        N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo = sizes = self._sizes(x.shape)
        F, G = self.out_channels, self.groups
        if self.impl == "naive":
            y = dev.empty((N, F, Ho, Wo), self.dtype)
            self._conv_kernel("conv2d_forward_naive").launch_1d(y.size, (x, w, b, y, *sizes, F, G))
            self._save_for_backward(x=x)
            return y
        # rows (c, i, j), columns (n, ho, wo): the stack (G, Cg·kh·kw, N·Ho·Wo)
        cols = dev.empty((G, C // G * kh * kw, N * Ho * Wo), self.dtype)
        self._conv_kernel("im2col").launch_1d(cols.size, (x, cols, *sizes))
        y_t = gemm(dev, w.reshape(G, F // G, -1), cols)  # (G, Fg, N·Ho·Wo) = (F, N, Ho·Wo)
        y = dev.empty((N, F, Ho, Wo), self.dtype)
        self._conv_kernel("swap_axes01").launch_1d(y.size, (y_t, y, F, N, Ho * Wo))
        add_bias(dev, y, b, positions=Ho * Wo)
        self._save_for_backward(cols=cols, x_shape=x.shape)
        return y

    def _backward_kernels(self, dy):
        dev, w = self.device, self.params["W"]
        F, G = self.out_channels, self.groups
        N, Ho, Wo = dy.shape[0], dy.shape[2], dy.shape[3]
        saved = self._saved()
        self.grads["b"] = bias_grad(dev, dy, positions=Ho * Wo)
        if self.impl == "naive":
            x = saved.x
            sizes = (*self._sizes(x.shape), F, G)
            dw = dev.empty(w.shape, self.dtype)
            self._conv_kernel("conv2d_backward_weight_naive").launch_1d(dw.size, (dy, x, dw, *sizes))
            self.grads["W"] = dw
            if not self.needs_input_grad:
                return None
            dx = dev.empty(x.shape, self.dtype)
            self._conv_kernel("conv2d_backward_input_naive").launch_1d(dx.size, (dy, w, dx, *sizes))
            return dx
        cols, x_shape = saved.cols, saved.x_shape
        dy_t = dev.empty((G, F // G, N * Ho * Wo), self.dtype)  # dy as (F, N, Ho·Wo), the GEMM's layout
        self._conv_kernel("swap_axes01").launch_1d(dy_t.size, (dy, dy_t, N, F, Ho * Wo))
        self.grads["W"] = gemm(dev, dy_t, cols, transpose_b=True).reshape(w.shape)  # dY colsᵀ
        if not self.needs_input_grad:
            return None
        dcols = gemm(dev, w.reshape(G, F // G, -1), dy_t, transpose_a=True)  # Wmᵀ dY (G, Cg·kh·kw, N·Ho·Wo)
        dx = dev.empty(x_shape, self.dtype)
        self._conv_kernel("col2im").launch_1d(dx.size, (dcols, dx, *self._sizes(x_shape)))
        return dx
