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
* ``conv2d_forward_fast`` / ``conv2d_backward_fast``: im2col + one matrix product (BLAS) per image, the cpu
  default; with several BLAS threads the batch is split into one part per thread (``over_batch_parts``).
  dx by col2im (``conv2d_backward_im2col``), or, at stride 1 where that pays, as a convolution of dy with the
  flipped kernel (``conv2d_backward_input_flipped``).
* on ``gpu`` and ``sim``, CUDA kernels from ``kernels/``. ``impl="naive"``: ``conv2d_forward_naive``,
  ``conv2d_backward_input_naive``, ``conv2d_backward_weight_naive`` (conv.cu), one thread per output value.
  ``impl="fast"``: ``im2col`` (into ``cols_batch_first``) and ``col2im`` (conv.cu); the register-blocked
  GEMM of gemm_blocked.cu: ``gemm_blocked_bias`` for the forward product, whose epilogue adds the bias and
  stores the GEMM's (F, N, OH·OW) result directly as NCHW, ``gemm_blocked`` for the backward products,
  after ``swap_axes01`` (conv.cu) has turned dy into that (F, N, OH·OW) layout (the weight gradient, a
  small product over a long K, split along K). Both use ``bias_grad`` (reduce.cu) for dbias.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from scratchnet.device import Device
from scratchnet.layers.base import Layer, int_pair, window_output_hw
from scratchnet.layers.batch_threads import over_batch_parts
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


# --- the fast version: im2col + one matrix product per image ---------------------------------------------
#
# im2col lays every receptive field of image n out as a column of one matrix per image:
#
#     cols_per_image[n, (c, kh, kw), (oh, ow)] = xp[n, c, oh·SH + kh, ow·SW + kw]      (N, C·KH·KW, OH·OW)
#
# so the forward sum is a matrix product per image, and the backward formulas are two more:
#
#     Y[n]     = Wm cols[n]        Wm = weight as (F, Cg·KH·KW),   Y[n] = y[n] as (F, OH·OW)
#     dWm      = Σ_n dY[n] cols[n]ᵀ
#     dcols[n] = Wmᵀ dY[n]         and col2im adds each entry of dcols back onto the pixel it was copied from.
#
# With groups, the rows of cols[n] for group g are the contiguous block of its channels, so cols[n] is a
# stack (G, Cg·KH·KW, OH·OW) and np.matmul broadcasts the products over n and g.
#
# Why one matrix per image: Y[n] (F, OH·OW) *is* y[n] in NCHW, so the product writes straight into the
# layer's output (``np.matmul(..., out=y[chunk])``) and dcols[n] reads dy[n] where the next layer left it:
# nothing is transposed between the GEMMs. (One product over a chunk's columns side by side, the kernels'
# batch-first order, measured slower: OpenBLAS multiplied LeNet-5's small per-image matrices faster than
# one long one.) The images go through in chunks of a few, so that a chunk's columns (about CHUNK_BYTES)
# are still in the cache when the GEMM reads them. The columns are not kept for the backward (for the
# whole batch they are KH·KW times the input: 75 MB for ResNet-20's first stage at batch 128): the
# backward builds them again from x, chunk by chunk. A :class:`Workspace` keeps
# the padded input and the buffers of one chunk (each the size of a whole chunk, the last and smaller
# chunk using the start of them) from one call to the next.
#
# Several cores: the batch is split into parts, one per thread (:mod:`scratchnet.layers.batch_threads`).
# Left to itself, a multi-threaded BLAS would split each small per-image product ((16, 144) @ (144, 1024) in
# ResNet-20) between its threads, and im2col and col2im, which NumPy runs on one thread, would leave the
# other cores idle. Each thread instead runs its part's whole loop (im2col, products, col2im) with a
# one-thread BLAS; NumPy releases the GIL inside copies and products, so the parts run at the same time.
CHUNK_BYTES = 1 << 20


class Workspace:
    """Scratch arrays reused across calls: ``get(name, shape, dtype)`` returns a view of one buffer per name,
    grown when too small. It is all zeros whenever its shape differs from the last call's, and callers write
    only where they read afterwards: the border of a padded image, never written, stays zero.
    ``part(i)``: the workspace of the batch's part i, for the thread that runs that part."""

    def __init__(self):
        self._buffers: dict[str, tuple[np.ndarray, tuple]] = {}  # name -> (flat buffer, last shape)
        self._parts: dict[int, Workspace] = {}

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        size = math.prod(shape)
        buffer, last_shape = self._buffers.get(name, (None, None))
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = np.zeros(size, dtype)
        elif shape != last_shape:
            buffer[:size] = 0
        self._buffers[name] = (buffer, shape)
        return buffer[:size].reshape(shape)

    def part(self, index: int) -> Workspace:
        return self._parts.setdefault(index, Workspace())


_SHARED_WORKSPACES = threading.local()  # each thread's {geometry: Workspace}


def shared_workspace(geometry: tuple) -> Workspace:
    """The workspace of every convolution of this ``geometry`` (its channels, kernel, stride, padding,
    groups, dtype) that runs on this thread. The layers of a model run one after another, and a call
    leaves nothing in its buffers that the next one needs (only zeros where nothing is written), so layers
    of one geometry can share one set of buffers: ResNet-20's 19 convolutions have 6 geometries, so they
    hold a third of the memory one set per layer would. The sets stay allocated from step to step."""
    workspaces = getattr(_SHARED_WORKSPACES, "by_geometry", None)
    if workspaces is None:
        workspaces = _SHARED_WORKSPACES.by_geometry = {}
    return workspaces.setdefault(geometry, Workspace())


def _chunks(N, column_numbers, itemsize) -> tuple[int, list[slice]]:
    """The chunk size (how many images' columns fit in CHUNK_BYTES, at least one) and the chunks of the
    images 0..N-1."""
    size = max(1, min(N, CHUNK_BYTES // (column_numbers * itemsize)))
    return size, [slice(n0, min(N, n0 + size)) for n0 in range(0, N, size)]


def _chunk_buffer(workspace, name, chunk_size, shape, dtype, axis=0):
    """The workspace array ``name`` sized for a whole chunk (``chunk_size`` images along ``axis``) and cut
    to the ``shape`` of this chunk: the shape the workspace sees stays the same from chunk to chunk, so it
    is not zeroed again for a last, smaller chunk."""
    full = list(shape)
    full[axis] = chunk_size
    buffer = workspace.get(name, tuple(full), dtype)
    return buffer[(slice(None),) * axis + (slice(0, shape[axis]),)]


def _padded(x, padding, workspace, name="xp"):
    """x (N, C, H, W) inside a zero border: (N, C, H + 2 PH, W + 2 PW), the workspace array ``name``, whose
    border is never written and stays zero. x itself when there is no padding and x is C-contiguous."""
    N, C, H, W = x.shape
    PH, PW = padding
    if not (PH or PW) and x.flags.c_contiguous:
        return x
    xp = workspace.get(name, (N, C, H + 2 * PH, W + 2 * PW), x.dtype)
    xp[:, :, PH : PH + H, PW : PW + W] = x
    return xp


def _windows(x, kernel_size, stride, padding, workspace):
    """windows[n, c, kh, kw, oh, ow] = xp[n, c, oh·SH + kh, ow·SW + kw]: (N, C, KH, KW, OH, OW), a view of x
    (of xp, x copied inside a zero border, when there is padding); nothing else is copied yet."""
    (KH, KW), (SH, SW) = kernel_size, stride
    xp = _padded(x, padding, workspace)
    windows = sliding_window_view(xp, (KH, KW), axis=(2, 3))[:, :, ::SH, ::SW]  # (N, C, OH, OW, KH, KW)
    return windows.transpose(0, 1, 4, 5, 2, 3)


def _im2col(windows, chunk_size, workspace, name="cols"):
    """cols[n, c, kh, kw, ...] = windows[n, c, kh, kw, ...] for a chunk of images: one copy into the
    workspace array ``name``, or none where the windows already lie in that order (a 1×1 kernel at
    stride 1)."""
    if windows.flags.c_contiguous:
        return windows
    cols = _chunk_buffer(workspace, name, chunk_size, windows.shape, windows.dtype)
    np.copyto(cols, windows)
    return cols


def _col2im(dcols, dx, stride, padding, chunk_size, workspace):
    """dx (b, C, H, W) from dcols (b, C, KH, KW, OH, OW): each entry [n, c, kh, kw, oh, ow] added onto
    dxp[n, c, oh·SH + kh, ow·SW + kw], the pixel :func:`_im2col` copied it from (its adjoint).

    Adding each kernel offset's block in place (``dxp[.., kh::SH, kw::SW] += dcols[:, :, kh, kw]``) would run
    NumPy's addition over rows only OW numbers long, whose per-row overhead costs more than the adding. So
    each offset's block is copied into its own zero image, ``shifted[kh, kw]``, and the KH·KW images are
    summed in one reduction over long contiguous rows. Each call copies into the same places, so the rest
    of every shifted image stays zero from one call to the next."""
    b, C, KH, KW, OH, OW = dcols.shape
    _, _, H, W = dx.shape
    (SH, SW), (PH, PW) = stride, padding
    if (KH, KW, SH, SW, PH, PW) == (1, 1, 1, 1, 0, 0):  # the columns were the image
        dx[...] = dcols.reshape(dx.shape)
        return
    shifted = _chunk_buffer(
        workspace, "shifted", chunk_size, (KH * KW, b, C, H + 2 * PH, W + 2 * PW), dx.dtype, 1
    )
    for kh in range(KH):
        for kw in range(KW):
            rows, columns = slice(kh, kh + SH * (OH - 1) + 1, SH), slice(kw, kw + SW * (OW - 1) + 1, SW)
            shifted[kh * KW + kw, :, :, rows, columns] = dcols[:, :, kh, kw]
    if PH or PW:
        dxp = shifted.sum(
            axis=0, out=_chunk_buffer(workspace, "dxp", chunk_size, shifted.shape[1:], dx.dtype)
        )
        dx[...] = dxp[:, :, PH : PH + H, PW : PW + W]  # crop the padding
    else:
        shifted.sum(axis=0, out=dx)


def _summed_weight_products(cols, dy_matrices, chunk_size, workspace):
    """Σ_n cols[n] dY[n]ᵀ (G, Cg·KH·KW, Fg), the transpose of the chunk's share of dWm = Σ_n dY[n] cols[n]ᵀ,
    from cols (b, G, Cg·KH·KW, P) and dY (b, G, Fg, P). The same numbers as dY[n] cols[n]ᵀ, but OpenBLAS
    runs this orientation faster on the models' shapes (``python tools/conv_routes.py`` times both)."""
    b, G, rows, _ = cols.shape
    Fg = dy_matrices.shape[2]
    per_image = _chunk_buffer(workspace, "dweight_per_image", chunk_size, (b, G, rows, Fg), cols.dtype)
    np.matmul(cols, dy_matrices.transpose(0, 1, 3, 2), out=per_image)
    return per_image.sum(axis=0)


def conv2d_forward_fast(x, weight, bias, stride=(1, 1), padding=(0, 0), groups=1, workspace=None):
    """Forward by im2col + one matmul per image. Returns y (N, F, OH, OW) and the cache the backward needs
    (x itself). ``bias``: (F,), or None for none. ``workspace``: a :class:`Workspace` to reuse buffers from
    (a new one when None)."""
    workspace = workspace or Workspace()
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    OH, OW = window_output_hw((H, W), (KH, KW), stride, padding)
    G, rows = groups, Cg * KH * KW
    weight_matrix = weight.reshape(G, F // G, rows)  # Wm (G, Fg, Cg·KH·KW)
    y = np.empty((N, F, OH, OW), dtype=x.dtype)
    y_per_group = y.reshape(N, G, F // G, OH * OW)  # Y[n], a view of y

    def forward_part(images, workspace):
        windows = _windows(x[images], (KH, KW), stride, padding, workspace)  # (b, C, KH, KW, OH, OW)
        y_part = y_per_group[images]
        chunk_size, chunks = _chunks(len(windows), C * KH * KW * OH * OW, x.itemsize)
        for chunk in chunks:
            cols = _im2col(windows[chunk], chunk_size, workspace)
            cols = cols.reshape(-1, G, rows, OH * OW)  # (b, G, Cg·KH·KW, OH·OW)
            np.matmul(weight_matrix, cols, out=y_part[chunk])  # Y[n] = Wm cols[n], written into y
        if bias is not None:  # None: no bias (ResNet's convolutions), no pass over y to add zeros
            y[images] += bias[:, None, None]

    over_batch_parts(forward_part, N, workspace)
    return y, x


def conv2d_backward_im2col(dy, cache, weight, stride, padding, groups, input_grad, workspace, with_bias):
    """Backward by matmul + col2im, any stride. Returns (dx, dweight, dbias); dx is None when ``input_grad``
    is False, dbias None when ``with_bias`` is False. The arguments: :func:`conv2d_backward_fast`'s."""
    workspace = workspace or Workspace()
    x = cache
    N, C, H, W = x.shape
    F, Cg, KH, KW = weight.shape
    _, _, OH, OW = dy.shape
    G, Fg, rows = groups, F // groups, Cg * KH * KW
    weight_matrix = weight.reshape(G, Fg, rows)  # Wm (G, Fg, Cg·KH·KW)
    dy_per_group = dy.reshape(N, G, Fg, OH * OW)  # dY[n], a view of dy
    dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None

    def backward_part(images, workspace):
        """This part's Σ cols[n] dY[n]ᵀ (G, Cg·KH·KW, Fg); its dx[images] when input_grad."""
        windows = _windows(x[images], (KH, KW), stride, padding, workspace)  # the forward's columns again
        dy_part = dy_per_group[images]
        dweight = np.zeros((G, rows, Fg), dtype=weight.dtype)
        chunk_size, chunks = _chunks(len(windows), C * KH * KW * OH * OW, x.itemsize)
        for chunk in chunks:
            cols = _im2col(windows[chunk], chunk_size, workspace)
            cols = cols.reshape(-1, G, rows, OH * OW)  # (b, G, Cg·KH·KW, OH·OW)
            dy_chunk = dy_part[chunk]  # (b, G, Fg, OH·OW)
            dweight += _summed_weight_products(cols, dy_chunk, chunk_size, workspace)
            if input_grad:
                b = len(dy_chunk)
                dcols = _chunk_buffer(workspace, "dcols", chunk_size, (b, G, rows, OH * OW), x.dtype)
                np.matmul(weight_matrix.transpose(0, 2, 1), dy_chunk, out=dcols)  # dcols[n] = Wmᵀ dY[n]
                dcols = dcols.reshape(b, C, KH, KW, OH, OW)
                _col2im(dcols, dx[images][chunk], stride, padding, chunk_size, workspace)
        return dweight

    dweight = sum(over_batch_parts(backward_part, N, workspace))  # Σ over the parts: (G, Cg·KH·KW, Fg)
    dbias = dy.sum(axis=(0, 2, 3)) if with_bias else None  # (F,)
    return dx, dweight.transpose(0, 2, 1).reshape(weight.shape), dbias


# --- stride 1: dx as a convolution of dy with the flipped kernel, on wide columns -------------------------
#
# col2im adds KH·KW shifted copies of the columns onto dx, pass after pass over short rows, a large share of
# ResNet-20's backward. With stride 1 there is another way (lesson 05): dx is a stride-1
# convolution of dy, zero-padded by Q = K − 1 − P, with the flipped kernel,
#
#     dx[n, c, h, w] = Σ_{f, kh, kw} Wflip[c, f, kh, kw] · dyq[n, f, h + kh, w + kw],
#     Wflip[c, f, kh, kw] = weight[f, c, KH − 1 − kh, KW − 1 − kw]      (within a group),
#
# an im2col and one product per image, no col2im. Its columns are *wide*: read each padded channel as one long
# row, pixel (h, w) at dyq_flat[h·Wq + w], and number the outputs p = h·Wq + w as if each row were Wq long.
# Window p's pixel (kh, kw) is then dyq_flat[p + kh·Wq + kw], so cols[f, kh, kw, p] = dyq_flat[f, kh·Wq + kw
# + p]: for each (f, kh, kw) one contiguous run, L = (H − 1)·Wq + W long, where compact columns copy rows W
# long (:func:`_wide_windows`, a strided view; one copy). The price: the outputs with w ≥ W wrap round a
# row's end; the product computes them and they are dropped (:func:`_wide_outputs`), Wq / W − 1 more work.
#
# The fast backward takes this route for stride 1 with Q ≥ 0 where it pays: few wasted outputs, Wq / W ≤
# DX_WIDE_MAX_EXTRA (34 / 32 down to 10 / 8 in ResNet-20; not LeNet-5's conv2, 18 / 14), and no more filters
# than channels, F ≤ DX_MAX_FILTERS_PER_CHANNEL · C: the columns of dy hold F·KH·KW rows where col2im passes
# over C·KH·KW, and for the widening layers of VGG-CIFAR and AlexNet-CIFAR (F = 2C or 1.5C) col2im was
# faster. ``python tools/conv_routes.py`` times both routes on the models' shapes. The forward keeps compact
# columns: wide ones were slower there (every product computes the wasted columns, and there is no col2im
# to save).
DX_WIDE_MAX_EXTRA = 1.25
DX_MAX_FILTERS_PER_CHANNEL = 1


def dx_by_flipped_kernel(x_shape, weight_shape, stride, padding) -> bool:
    """Whether :func:`conv2d_backward_fast` computes dx with :func:`conv2d_backward_input_flipped`."""
    (_, C, _, W), (F, _, KH, KW), (PH, PW) = x_shape, weight_shape, padding
    possible = tuple(stride) == (1, 1) and PH < KH and PW < KW  # a stride-1 convolution of dy, Q ≥ 0
    pays = W + KW - 1 <= DX_WIDE_MAX_EXTRA * W and F <= DX_MAX_FILTERS_PER_CHANNEL * C
    return possible and pays


def _wide_windows(xp, kernel_size, length):
    """windows[n, c, kh, kw, p] = xp_flat[n, c, kh·Wp + kw + p] for p < ``length``: (N, C, KH, KW, L), a
    read-only view of the padded images xp (N, C, Hp, Wp), which must be C-contiguous."""
    (KH, KW), (N, C, _, _) = kernel_size, xp.shape
    s_n, s_c, s_h, s_w = xp.strides
    return as_strided(xp, (N, C, KH, KW, length), (s_n, s_c, s_h, s_w, s_w), writeable=False)


def _wide_outputs(wide, out_hw, row_length):
    """The view (N, F, OH, OW) of wide outputs (N, F, L), output (oh, ow) at p = oh·Wp + ow (Wp =
    ``row_length``): the wrapped-round outputs between the rows are left out."""
    (OH, OW), (N, F, _) = out_hw, wide.shape
    s_n, s_f, s_p = wide.strides
    return as_strided(wide, (N, F, OH, OW), (s_n, s_f, row_length * s_p, s_p), writeable=False)


def conv2d_backward_input_flipped(dy, weight, input_hw, padding=(0, 0), groups=1, workspace=None):
    """dx (N, C, H, W) of a stride-1 convolution (padding at most K − 1), as the convolution of dy,
    zero-padded by K − 1 − P, with the flipped kernel, on wide columns."""
    workspace = workspace or Workspace()
    N, F, _, _ = dy.shape
    _, Cg, KH, KW = weight.shape
    (H, W), (PH, PW), G, Fg = input_hw, padding, groups, F // groups
    Wq = W + KW - 1
    L = (H - 1) * Wq + W
    # Wflip[g, c, (f, kh, kw)] = weight[g·Fg + f, c, KH − 1 − kh, KW − 1 − kw]: (G, Cg, Fg·KH·KW)
    flipped = weight.reshape(G, Fg, Cg, KH, KW)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    flipped_matrix = flipped.reshape(G, Cg, Fg * KH * KW)
    dx = np.empty((N, G * Cg, H, W), dtype=dy.dtype)

    def input_grad_part(images, workspace):
        dyq = _padded(dy[images], (KH - 1 - PH, KW - 1 - PW), workspace, "dyq")  # (b, F, H + KH − 1, Wq)
        chunk_size, chunks = _chunks(len(dyq), F * KH * KW * L, dy.itemsize)
        for chunk in chunks:
            cols = _im2col(_wide_windows(dyq[chunk], (KH, KW), L), chunk_size, workspace, "dy_cols")
            b = len(cols)  # cols (b, F, KH, KW, L)
            wide = _chunk_buffer(workspace, "dx_wide", chunk_size, (b, G, Cg, L), dy.dtype)
            np.matmul(flipped_matrix, cols.reshape(b, G, Fg * KH * KW, L), out=wide)  # Wflip cols[n]
            np.copyto(dx[images][chunk], _wide_outputs(wide.reshape(b, G * Cg, L), (H, W), Wq))

    over_batch_parts(input_grad_part, N, workspace)
    return dx


# --- the cpu default backward ------------------------------------------------------------------------------
def conv2d_backward_fast(
    dy,
    cache,
    weight,
    stride=(1, 1),
    padding=(0, 0),
    groups=1,
    input_grad=True,
    workspace=None,
    with_bias=True,
):
    """The fast backward: dweight (and dbias) by :func:`conv2d_backward_im2col`; dx by its col2im, or by
    :func:`conv2d_backward_input_flipped` where :func:`dx_by_flipped_kernel`. Returns (dx, dweight, dbias)."""
    flipped = input_grad and dx_by_flipped_kernel(cache.shape, weight.shape, stride, padding)
    dx, dweight, dbias = conv2d_backward_im2col(
        dy, cache, weight, stride, padding, groups, input_grad and not flipped, workspace, with_bias
    )
    if flipped:
        dx = conv2d_backward_input_flipped(dy, weight, cache.shape[2:], padding, groups, workspace)
    return dx, dweight, dbias


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
    def _workspace(self) -> Workspace:
        """The fast path's buffers, shared with the convolutions of the same geometry (see
        :func:`shared_workspace`) and reused from one step to the next."""
        geometry = (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding)
        return shared_workspace(geometry + (self.groups, self.dtype))

    # Saved for backward: ``x`` (naive), or the fast path's ``cache`` (x too: backward rebuilds the columns).
    def _forward_numpy(self, x, training):
        conv = dict(stride=self.stride, padding=self.padding, groups=self.groups)
        weight, bias = self.params["W"], self._bias()
        if self.impl == "naive":
            self._save_for_backward(x=x)
            return conv2d_forward_naive(x, weight, bias, **conv)
        bias = bias if self.bias else None  # nothing to add
        y, cache = conv2d_forward_fast(x, weight, bias, **conv, workspace=self._workspace())
        self._save_for_backward(cache=cache)
        return y

    def _backward_numpy(self, dy):
        conv = dict(stride=self.stride, padding=self.padding, groups=self.groups)
        weight, saved = self.params["W"], self._saved()
        if self.impl == "naive":
            dx, dweight, dbias = conv2d_backward_naive(dy, saved.x, weight, **conv)
        else:
            workspace, input_grad = self._workspace(), self.needs_input_grad
            dx, dweight, dbias = conv2d_backward_fast(
                dy,
                saved.cache,
                weight,
                **conv,
                input_grad=input_grad,
                workspace=workspace,
                with_bias=self.bias,
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
