"""2-D convolution, the layer LeNet-5 and AlexNet are built from.

Shapes (the notation of :mod:`scratchnet.layers`): input x (N, C, H, W); F filters, weight (F, C/G, KH, KW)
and bias (F,); G groups; stride (SH, SW); zero padding (PH, PW); output y (N, F, OH, OW) with

    OH = (H + 2 PH - KH) // SH + 1,        OW = (W + 2 PW - KW) // SW + 1.

Write xp for x padded with zeros, Cg = C/G and Fg = F/G for the channels and filters of one group, and
g(f) = f // Fg for the group of filter f: filter f sees only the Cg input channels of its group, starting at
channel c0(f) = g(f) Cg. (Like every deep learning library this is a cross-correlation: the kernel is not
flipped.)

Forward::

    y[n, f, oh, ow] = bias[f] + Σ_{c < Cg, kh < KH, kw < KW} weight[f, c, kh, kw] · xp[n, c0(f) + c, h, w]

    with h = oh·SH + kh, w = ow·SW + kw: the input pixel that kernel offset (kh, kw) of output (oh, ow) sees.

Backward, given dy = dL/dy (N, F, OH, OW)::

    dbias[f]               = Σ_{n, oh, ow} dy[n, f, oh, ow]
    dweight[f, c, kh, kw]  = Σ_{n, oh, ow} dy[n, f, oh, ow] · xp[n, c0(f) + c, h, w]
    dxp[n, c0(f) + c, h, w] += weight[f, c, kh, kw] · dy[n, f, oh, ow]        (for all f, c, kh, kw, oh, ow)

and dx is dxp without its padding. Each formula is the forward sum read the other way round: an input
pixel receives gradient from every output whose receptive field contains it.

Three implementations, tested against each other and against PyTorch:

* ``conv2d_forward_naive`` / ``conv2d_backward_naive``: the formulas as Python loops. Slow; the definition.
* ``conv2d_forward_fast`` / ``conv2d_backward_fast``: im2col + one matrix product (BLAS), the cpu default.
* on ``gpu`` and ``sim``, CUDA kernels from ``kernels/``. ``impl="naive"``: ``conv2d_forward_naive``,
  ``conv2d_backward_input_naive``, ``conv2d_backward_weight_naive`` (conv.cu), one thread per output value.
  ``impl="fast"``: ``im2col`` (into ``cols_batch_first``) and ``col2im`` (conv.cu); the register-blocked
  GEMM of gemm_blocked.cu: ``gemm_blocked_bias`` for the forward product, whose epilogue adds the bias and
  stores the GEMM's (F, N, OH·OW) result directly as NCHW, ``gemm_blocked`` for the backward products,
  after ``swap_axes01`` (conv.cu) has turned dy into that (F, N, OH·OW) layout (the weight gradient, a
  small product over a long K, split along K). Both use ``bias_grad`` (reduce.cu) for dbias.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from scratchnet.device import Device
from scratchnet.layers.base import Layer, int_pair, window_output_hw
from scratchnet.layers.linear import bias_grad, gemm

IMPLS = ("fast", "naive")


# --- the definition: explicit loops ------------------------------------------------------------------------
def conv2d_forward_naive(x, weight, bias, stride=(1, 1), padding=(0, 0), groups=1):
    """y (N, F, OH, OW) from x (N, C, H, W), weight (F, C/groups, KH, KW), bias (F,): the forward formula as
    loops."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    (SH, SW), (PH, PW) = stride, padding
    Fg = F // groups
    OH, OW = window_output_hw((H, W), (KH, KW), stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))  # (N, C, H + 2 PH, W + 2 PW)
    y = np.empty((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg  # first input channel of filter f's group
            for oh in range(OH):
                for ow in range(OW):
                    h, w = oh * SH, ow * SW  # the receptive field's top-left pixel in xp
                    field = xp[n, c0 : c0 + Cg, h : h + KH, w : w + KW]  # (Cg, KH, KW)
                    y[n, f, oh, ow] = np.sum(field * weight[f]) + bias[f]
    return y


def conv2d_backward_naive(dy, x, weight, stride=(1, 1), padding=(0, 0), groups=1):
    """(dx, dweight, dbias) from dy (N, F, OH, OW) and the forward's x and weight: the backward formulas as
    loops."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    (SH, SW), (PH, PW) = stride, padding
    Fg = F // groups
    _, _, OH, OW = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(weight)
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    h, w = oh * SH, ow * SW  # the receptive field's top-left pixel in xp
                    field = (n, slice(c0, c0 + Cg), slice(h, h + KH), slice(w, w + KW))  # (Cg, KH, KW)
                    dweight[f] += dy[n, f, oh, ow] * xp[field]
                    dxp[field] += dy[n, f, oh, ow] * weight[f]
    dbias = dy.sum(axis=(0, 2, 3))
    dx = dxp[:, :, PH : PH + H, PW : PW + W]
    return np.ascontiguousarray(dx), dweight, dbias


# --- the fast version: im2col + one matrix product ---------------------------------------------------------
#
# im2col lays every receptive field out as a column:
#
#     cols_batch_last[(c, kh, kw), (oh, ow, n)] = xp[n, c, oh·SH + kh, ow·SW + kw]      (C·KH·KW, OH·OW·N)
#
# so the forward sum is a matrix product, and the backward formulas are two more:
#
#     Y     = Wm cols         Wm = weight as (F, Cg·KH·KW),   Y = y as (F, OH·OW·N)
#     dWm   = dY colsᵀ
#     dcols = Wmᵀ dY          and col2im adds each entry of dcols back onto the pixel it was copied from.
#
# With groups, the rows of cols for group g are the contiguous block of its channels, so cols is a stack
# (G, Cg·KH·KW, OH·OW·N) and the products are stacks of G matrix products (np.matmul broadcasts).
#
# The batch axis comes LAST inside the fast path: the layer transposes x (N, C, H, W) to (C, H, W, N) on the
# way in and y back to NCHW on the way out (likewise dy in, dx out). Why: im2col and col2im are loops over
# the KH·KW kernel offsets, each moving the pixels of offset (kh, kw) for every output at once, i.e. the
# strided block xp[:, :, kh : kh + OH·SH : SH, kw : kw + OW·SW : SW]. NumPy runs such a block as many short
# contiguous runs, and with batch last a run is OW·N numbers long (1280 for LeNet's conv2) instead of OW
# (10): NumPy's per-run overhead, not the copying, dominated the NCHW version, 3-6 times slower. The four
# transposes are plain 2-D ones, (N, rest) <-> (rest, N), done in blocks to stay in cache. (The CUDA kernels
# keep the batch first, in cols_batch_first: one thread per number has no per-run overhead to avoid.)


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
    """cols_batch_last[(c, kh, kw), (oh, ow, n)] = xp[n, c, oh·SH + kh, ow·SW + kw]: (C·KH·KW, OH·OW·N),
    C-contiguous."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    # Transpose, then pad: padded rows of 2^k numbers (32x32 for LeNet's conv1) transpose slowly (cache
    # associativity), and the padding copy is cheap with batch last.
    x_last = xp_last = _batch_last(x)  # (C, H, W, N)
    if PH or PW:
        xp_last = np.zeros((C, H + 2 * PH, W + 2 * PW, N), dtype=x.dtype)
        xp_last[:, PH : PH + H, PW : PW + W] = x_last
    # windows[c, oh, ow, n, kh, kw] = xp[n, c, oh·SH + kh, ow·SW + kw]: a view, nothing copied yet
    windows = sliding_window_view(xp_last, (KH, KW), axis=(1, 2))[:, ::SH, ::SW]
    OH, OW = windows.shape[1:3]
    cols_batch_last = np.ascontiguousarray(windows.transpose(0, 4, 5, 1, 2, 3))  # (C, KH, KW, OH, OW, N)
    return cols_batch_last.reshape(C * KH * KW, OH * OW * N)


def _col2im(dcols_batch_last, x_shape, kernel_size, stride, padding):
    """dx (N, C, H, W) from dcols_batch_last (C·KH·KW, OH·OW·N): each entry [(c, kh, kw), (oh, ow, n)] added
    onto dxp[n, c, oh·SH + kh, ow·SW + kw], the pixel :func:`_im2col` copied it from (its adjoint)."""
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH, OW = window_output_hw((H, W), kernel_size, stride, padding)
    dcols = dcols_batch_last.reshape(C, KH, KW, OH, OW, N)
    dxp_last = np.zeros((C, H + 2 * PH, W + 2 * PW, N), dtype=dcols.dtype)  # dxp, batch last
    for kh in range(KH):
        for kw in range(KW):
            # +=: where windows overlap (stride < kernel), a pixel sums what every window gives it
            dxp_last[:, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW] += dcols[
                :, kh, kw
            ]
    return _batch_first(np.ascontiguousarray(dxp_last[:, PH : PH + H, PW : PW + W]))  # crop, to NCHW


def conv2d_forward_fast(x, weight, bias, stride=(1, 1), padding=(0, 0), groups=1):
    """Forward by im2col + matmul. Returns y (N, F, OH, OW) and the cache that the backward needs."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    OH, OW = window_output_hw((H, W), (KH, KW), stride, padding)
    cols_batch_last = _im2col(x, (KH, KW), stride, padding).reshape(groups, Cg * KH * KW, OH * OW * N)
    y_last = weight.reshape(groups, F // groups, Cg * KH * KW) @ cols_batch_last  # (G, Fg, OH·OW·N)
    y_last = y_last.reshape(F, OH, OW, N)
    y_last += bias[:, None, None, None]
    return _batch_first(y_last), (cols_batch_last, x.shape)


def conv2d_backward_fast(dy, cache, weight, stride=(1, 1), padding=(0, 0), groups=1, input_grad=True):
    """Backward by matmul + col2im. Returns (dx, dweight, dbias); dx is None when ``input_grad`` is False."""
    cols_batch_last, x_shape = cache
    F, Cg, KH, KW = weight.shape
    dy_last = _batch_last(dy).reshape(groups, F // groups, -1)  # (G, Fg, OH·OW·N): the columns' order
    dbias = dy_last.reshape(F, -1).sum(axis=1)  # (F,)
    dweight = (dy_last @ cols_batch_last.transpose(0, 2, 1)).reshape(weight.shape)  # dY colsᵀ
    if not input_grad:
        return None, dweight, dbias
    weight_matrix = weight.reshape(groups, F // groups, Cg * KH * KW)  # Wm (G, Fg, Cg·KH·KW)
    dcols_batch_last = weight_matrix.transpose(0, 2, 1) @ dy_last  # Wmᵀ dY: (G, Cg·KH·KW, OH·OW·N)
    return _col2im(dcols_batch_last, x_shape, (KH, KW), stride, padding), dweight, dbias


# --- the layer ---------------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _positive_int(value, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"Conv2D: {name} must be a positive integer, got {value!r}")
    return int(value)


class Conv2D(Layer):
    """2-D convolution over (N, C, H, W) inputs; the math is in the module docstring.

    ``kernel_size`` (KH, KW), ``stride`` (SH, SW), ``padding`` (PH, PW): an int or a pair. ``groups`` (G)
    splits the channels into independent convolutions (``groups = in_channels`` is a depthwise
    convolution). ``impl``: "fast" (im2col + GEMM) or "naive" (direct loops / one thread per output). The
    weight (key "W") starts He-normal, std = sqrt(2 / fan_in) with fan_in = in_channels / groups · KH · KW;
    the bias (key "b") at zero; ``seed`` seeds it.
    ``bias=False``: no ``b`` (b = 0 in the formulas), for a convolution followed by BatchNorm, whose β
    does its job (ResNet).
    ``needs_input_grad = False`` (for a network's first layer) makes ``backward`` skip dL/dx and return None.
    """

    kernel_file = "conv.cu"  # and the GEMM and bias-gradient kernels of linear.py

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
        bias: bool = True,
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

        KH, KW = self.kernel_size
        fan_in = in_channels // groups * KH * KW
        rng = np.random.default_rng(seed)
        weight = rng.standard_normal((out_channels, in_channels // groups, KH, KW)) * np.sqrt(2 / fan_in)
        self._set_param("W", weight)
        self.bias = bool(bias)
        if self.bias:
            self._set_param("b", np.zeros(out_channels))
        # Set to False on a network's first layer, whose dL/dx nobody reads: backward then skips computing
        # it (about a third of the backward's work) and returns None.
        self.needs_input_grad = True

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 4 or shape[1] != self.in_channels:
            self._fail_shape(f"(N, {self.in_channels}, H, W)", shape)
        window_output_hw(shape[2:], self.kernel_size, self.stride, self.padding, f"Conv2D: input {shape}")

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        self.check_input_shape(input_shape)
        N, _, H, W = input_shape
        return (N, self.out_channels, *window_output_hw((H, W), self.kernel_size, self.stride, self.padding))

    def torch_equivalent(self, torch):
        module = torch.nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            groups=self.groups,
            bias=self.bias,
            dtype=self._torch_dtype(torch),
        )
        bias = {"bias": self._host("b")} if self.bias else {}
        return self._to_torch(torch, module, weight=self._host("W"), **bias)  # (F, C / G, KH, KW) in both

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.impl != "fast":
            text += f", impl={self.impl!r}"
        if not self.bias:
            text += ", bias=False"
        return text

    def _bias(self):
        """``b``, or zeros without a bias (the forward formulas then add nothing)."""
        return self.params["b"] if self.bias else self.device.zeros((self.out_channels,), self.dtype)

    # --- cpu: NumPy ----------------------------------------------------------------------------------
    # Saved for backward: ``x`` (naive), or the im2col ``cache`` (fast: cols_batch_last and x's shape).
    def _forward_numpy(self, x, training):
        conv = dict(stride=self.stride, padding=self.padding, groups=self.groups)
        weight, bias = self.params["W"], self._bias()
        if self.impl == "naive":
            self._save_for_backward(x=x)
            return conv2d_forward_naive(x, weight, bias, **conv)
        y, cache = conv2d_forward_fast(x, weight, bias, **conv)
        self._save_for_backward(cache=cache)
        return y

    def _backward_numpy(self, dy):
        conv = dict(stride=self.stride, padding=self.padding, groups=self.groups)
        weight, saved = self.params["W"], self._saved()
        if self.impl == "naive":
            dx, dweight, dbias = conv2d_backward_naive(dy, saved.x, weight, **conv)
        else:
            dx, dweight, dbias = conv2d_backward_fast(
                dy, saved.cache, weight, **conv, input_grad=self.needs_input_grad
            )
        self.grads["W"] = dweight
        if self.bias:
            self.grads["b"] = dbias
        return dx if self.needs_input_grad else None

    # --- gpu and sim: kernels/conv.cu, kernels/gemm_blocked.cu, kernels/reduce.cu --------------------
    def _sizes(self, x_shape) -> tuple[int, ...]:
        """The size arguments of im2col and col2im: N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW.

        The naive kernels take F and G after them.
        """
        N, C, H, W = x_shape
        _, _, OH, OW = self.output_shape(x_shape)
        return (N, C, H, W, *self.kernel_size, *self.stride, *self.padding, OH, OW)

    def _forward_kernels(self, x, training):
        dev, weight, bias = self.device, self.params["W"], self._bias()
        N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = sizes = self._sizes(x.shape)
        F, G = self.out_channels, self.groups
        if self.impl == "naive":
            y = dev.empty((N, F, OH, OW), self.dtype)
            self._kernel("conv2d_forward_naive").launch_1d(y.size, (x, weight, bias, y, *sizes, F, G))
            self._save_for_backward(x=x)
            return y
        # rows (c, kh, kw), columns (n, oh, ow): the stack (G, Cg·KH·KW, N·OH·OW)
        cols_batch_first = dev.empty((G, C // G * KH * KW, N * OH * OW), self.dtype)
        # one thread per (c, n, oh, ow), each copying its KH·KW window
        self._kernel("im2col").launch_1d(C * N * OH * OW, (x, cols_batch_first, *sizes))
        # y = Wm cols + bias: the GEMM's (G, Fg, N·OH·OW) = (F, N, OH·OW) result, which its epilogue stores
        # straight into NCHW with the bias added (zeros without one): one launch
        y = gemm(dev, weight.reshape(G, F // G, -1), cols_batch_first, bias=bias, positions=OH * OW)
        y = y.reshape(N, F, OH, OW)
        self._save_for_backward(cols_batch_first=cols_batch_first, x_shape=x.shape)
        return y

    def _backward_kernels(self, dy):
        dev, weight = self.device, self.params["W"]
        F, G = self.out_channels, self.groups
        N, _, OH, OW = dy.shape
        saved = self._saved()
        if self.bias:
            self.grads["b"] = bias_grad(dev, dy, positions=OH * OW)
        if self.impl == "naive":
            x = saved.x
            sizes = (*self._sizes(x.shape), F, G)
            dweight = dev.empty(weight.shape, self.dtype)
            self._kernel("conv2d_backward_weight_naive").launch_1d(dweight.size, (dy, x, dweight, *sizes))
            self.grads["W"] = dweight
            if not self.needs_input_grad:
                return None
            dx = dev.empty(x.shape, self.dtype)
            self._kernel("conv2d_backward_input_naive").launch_1d(dx.size, (dy, weight, dx, *sizes))
            return dx
        cols_batch_first, x_shape = saved.cols_batch_first, saved.x_shape
        dy_t = dev.empty((G, F // G, N * OH * OW), self.dtype)  # dy as (F, N, OH·OW), the GEMM's layout
        self._kernel("swap_axes01").launch_1d(dy_t.size, (dy, dy_t, N, F, OH * OW))
        dweight = gemm(dev, dy_t, cols_batch_first, transpose_b=True)  # dY colsᵀ
        self.grads["W"] = dweight.reshape(weight.shape)
        if not self.needs_input_grad:
            return None
        # Wmᵀ dY: (G, Cg·KH·KW, N·OH·OW)
        dcols_batch_first = gemm(dev, weight.reshape(G, F // G, -1), dy_t, transpose_a=True)
        dx = dev.empty(x_shape, self.dtype)
        self._kernel("col2im").launch_1d(dx.size, (dcols_batch_first, dx, *self._sizes(x_shape)))
        return dx
