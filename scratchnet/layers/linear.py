"""Fully connected (affine) layer, and the GEMM launcher that it and the convolution share.

Forward, for a batch of N row vectors of D features, to M features (``in_features`` D, ``out_features`` M)::

    y = x · weight + bias           x (N, D), weight (D, M), bias (M,), y (N, M)
    y[n, m] = bias[m] + Σ_d x[n, d] weight[d, m]

Backward, given dy = dL/dy (N, M)::

    dx      = dy · weightᵀ          (N, M) @ (M, D) -> (N, D)
    dweight = xᵀ · dy               (D, N) @ (N, M) -> (D, M)
    dbias   = Σ_n dy[n, :]          (M,)

(each entry of the weight touches every row of the batch, hence the sum over n in dweight and dbias.)

On ``cpu`` these are three NumPy matrix products. On ``gpu`` and ``sim`` the layer launches, from
``kernels/``, the register-blocked GEMM of gemm_blocked.cu: ``gemm_blocked_bias`` for the forward, which
adds the bias just before it stores each element of y (one launch instead of a GEMM and a second pass
over y), and ``gemm_blocked`` for the two backward products, using its transpose flags instead of copying
a transposed matrix; and ``bias_grad`` (reduce.cu) for dbias. :func:`gemm` launches the GEMM kernels on
their own, the lessons' ``gemm_naive`` and ``gemm_tiled`` (gemm.cu) too; it names its sizes as BLAS does,
C (M, N) = A (M, K) · B (K, N), apart from the layers' notation.
"""

from __future__ import annotations

import numpy as np

from scratchnet._cuda.limits import cdiv
from scratchnet._cuda.sources import cuda_defines
from scratchnet.device import Device, get_device
from scratchnet.layers import batch_threads
from scratchnet.layers.base import Layer
from scratchnet.layers.batch_threads import over_batch_parts

GEMM_TILE = cuda_defines("common.cuh")["TILE"]  # gemm_naive and gemm_tiled: blocks of GEMM_TILE x GEMM_TILE
# gemm_blocked: blocks of BLOCK_SIDE x BLOCK_SIDE threads, each computing a BLOCK_TILE x BLOCK_TILE tile of C
_BLOCKED = cuda_defines("gemm_blocked.cu")
REDUCE_THREADS = cuda_defines("reduce.cu")["REDUCE_THREADS"]  # the block size bias_grad is written for
GEMM_IMPLS = ("blocked", "tiled", "naive")
# Split K when the tiles of C alone make fewer than SPLIT_K_BLOCKS blocks (a GPU has 100+ multiprocessors
# to fill), into at most SPLIT_K_BLOCKS blocks and chunks of at least SPLIT_K_MIN_STEPS k-steps each.
SPLIT_K_BLOCKS = 128
SPLIT_K_MIN_STEPS = 256
# The kernels count along K in int, a tile of `step` values at a time: k0 goes up to K rounded up to a whole
# step, at most K + step - 1, which must fit in an int. So K <= MAX_K[impl] = 2^31 - step. gemm_blocked with
# splits computes cdiv(K, splits * TILE_K), whose numerator K + splits * TILE_K - 1 is its largest int (each
# chunk, a whole number of TILE_K steps, ends at most there): split_k keeps that in range too.
INT_MAX = 2**31 - 1
K_STEP = {"blocked": _BLOCKED["TILE_K"], "tiled": GEMM_TILE, "naive": 1}
MAX_K = {impl: INT_MAX + 1 - step for impl, step in K_STEP.items()}


def gemm(
    device: str | Device,
    A,
    B,
    transpose_a: bool = False,
    transpose_b: bool = False,
    impl: str = "blocked",
    bias=None,
    positions: int = 0,
):
    """C = op(A) @ op(B) with the kernel ``gemm_<impl>``: "blocked" (kernels/gemm_blocked.cu, what the layers
    use), or the lessons' "tiled" and "naive" (kernels/gemm.cu).

    ``A`` is (M, K), or (K, M) with ``transpose_a``; ``B`` is (K, N), or (N, K) with ``transpose_b``;
    C is (M, N). Stacks (batch, ., .) of matrices multiply pairwise into (batch, M, N), one grid layer per
    matrix. Arrays live on ``device`` (gpu or sim), C-contiguous, both float32 or both float64.

    With ``bias``, C = op(A) @ op(B) + bias in one launch of ``gemm_blocked_bias`` (or, with impl "tiled",
    ``gemm_bias`` of gemm_bias.cu): bias (N,) is added to every row of C (Linear). With ``positions`` = P > 0
    it is a convolution's forward: the stack of G weight matrices (G, Fg, K) times the columns
    (G, K, N_img · P) is stored directly as y (N_img, F = G · Fg, P), NCHW, with bias (F,) one value per
    filter.

    "blocked" without a bias splits a long K over several blocks when C is too small to fill the grid (see
    :func:`split_k`), then adds the chunks with ``sum_splits``.
    """
    device = get_device(device)
    if impl not in GEMM_IMPLS:
        raise ValueError(f"gemm: impl must be one of {GEMM_IMPLS}, got {impl!r}")
    if bias is not None and impl == "naive":
        raise ValueError("gemm: a bias needs impl='blocked' or 'tiled' (the kernels with the bias epilogue)")
    if A.ndim not in (2, 3) or B.ndim != A.ndim:
        raise ValueError(
            f"gemm: A and B must both be matrices or both stacks of matrices, got {A.shape} and {B.shape}"
        )
    if A.ndim == 3 and A.shape[0] != B.shape[0]:
        raise ValueError(f"gemm: stacks of different lengths: A {A.shape}, B {B.shape}")
    if A.dtype != B.dtype:
        raise ValueError(f"gemm: A and B must have the same dtype, got {A.dtype} and {B.dtype}")
    M, K = A.shape[-2:][::-1] if transpose_a else A.shape[-2:]
    K_b, N = B.shape[-2:][::-1] if transpose_b else B.shape[-2:]
    if K != K_b:
        raise ValueError(
            f"gemm: op(A) is {M}x{K} but op(B) is {K_b}x{N} (A {A.shape}, B {B.shape}, "
            f"transpose_a={transpose_a}, transpose_b={transpose_b}): inner sizes differ"
        )
    if min(M, N, K) == 0:
        raise ValueError(f"gemm: empty matrices (A {A.shape}, B {B.shape})")
    if K > MAX_K[impl]:
        raise ValueError(
            f"gemm: K = {K} is too long for gemm_{impl}, which counts along K in 32-bit int, {K_STEP[impl]} "
            f"at a time: at most K = {MAX_K[impl]}; split the product over K and add the parts"
        )
    batch = A.shape[0] if A.ndim == 3 else 1
    sizes = (M, N, K, int(transpose_a), int(transpose_b))
    if impl == "blocked":
        tile, block = _BLOCKED["BLOCK_TILE"], (_BLOCKED["BLOCK_SIDE"], _BLOCKED["BLOCK_SIDE"])
    else:
        tile, block = GEMM_TILE, (GEMM_TILE, GEMM_TILE)
    grid = (cdiv(N, tile), cdiv(M, tile), batch)
    if bias is None:
        C = device.empty(A.shape[:-2] + (M, N), A.dtype)
        if impl != "blocked":
            device.kernel("gemm.cu", f"gemm_{impl}", A.dtype)(grid, block, (A, B, C, *sizes))
            return C
        splits = split_k(M, N, K, batch)
        kernel = device.kernel("gemm_blocked.cu", "gemm_blocked", A.dtype)
        if splits == 1:
            kernel(grid, block, (A, B, C, *sizes, 1))
            return C
        partial = device.empty((batch, splits, M, N), A.dtype)
        kernel(grid[:2] + (batch * splits,), block, (A, B, partial, *sizes, splits))
        sum_kernel = device.kernel("gemm_blocked.cu", "sum_splits", A.dtype)
        sum_kernel.launch_1d(C.size, (partial, C, M * N, C.size, splits), block=_BLOCKED["SUM_THREADS"])
        return C
    if positions:  # a convolution: C is y (N_img, F, P)
        if N % positions:
            raise ValueError(f"gemm: {N} columns are not a whole number of images of {positions} positions")
        C = device.empty((N // positions, batch * M, positions), A.dtype)
        bias_shape = (batch * M,)
    else:
        C = device.empty(A.shape[:-2] + (M, N), A.dtype)
        bias_shape = (N,)
    if tuple(bias.shape) != bias_shape:
        raise ValueError(
            f"gemm: bias has shape {tuple(bias.shape)}, C {C.shape} needs {bias_shape} "
            f"(positions={positions})"
        )
    if impl == "blocked":
        kernel = device.kernel("gemm_blocked.cu", "gemm_blocked_bias", A.dtype)
    else:
        kernel = device.kernel("gemm_bias.cu", "gemm_bias", A.dtype)
    kernel(grid, block, (A, B, bias, C, *sizes, positions))
    return C


def split_k(M: int, N: int, K: int, batch: int = 1) -> int:
    """How many chunks gemm_blocked cuts K into: 1 unless C's tiles alone make fewer than SPLIT_K_BLOCKS
    blocks; then enough chunks to reach about SPLIT_K_BLOCKS blocks, each at least SPLIT_K_MIN_STEPS long.

    conv1's weight gradient in LeNet-5 at batch 64, 6 x 25 over K = 50176, is one tile: in 121 chunks of 416
    steps (13 tiles of TILE_K = 32) it runs on 121 blocks instead of one. Near K = 2^31, fewer splits: the
    kernel's int must hold K + splits x TILE_K.
    """
    tile = _BLOCKED["BLOCK_TILE"]
    blocks = cdiv(M, tile) * cdiv(N, tile) * batch
    if blocks >= SPLIT_K_BLOCKS:
        return 1
    step = _BLOCKED["TILE_K"]
    splits = max(1, min(SPLIT_K_BLOCKS // blocks, K // SPLIT_K_MIN_STEPS))
    # No more splits than the kernel's int can count: K + splits * TILE_K - 1 <= INT_MAX (see MAX_K).
    splits = max(1, min(splits, (INT_MAX + 1 - K) // step))
    # Chunks are whole TILE_K steps (as the kernel computes them): drop splits that would be left empty.
    chunk = cdiv(K, splits * step) * step
    return cdiv(K, chunk)


def bias_grad(device: Device, dy, positions: int = 1):
    """dbias[f] = Σ over n, p of dy[n, f, p] with the ``bias_grad`` kernel (one block per f, no atomics)."""
    N, F = dy.shape[0], dy.shape[1]
    dbias = device.empty((F,), dy.dtype)
    kernel = device.kernel("reduce.cu", "bias_grad", dy.dtype)
    kernel((F,), (REDUCE_THREADS,), (dy, dbias, N, F, positions))
    return dbias


class Linear(Layer):
    """Fully connected layer y = x · weight + bias, for x of shape (N, D = in_features); see the module
    docstring.

    The weight (key "W", (D, M) = (in_features, out_features)) starts He-normal (std = sqrt(2 / D)), the
    bias (key "b", (M,)) at zero; ``seed`` seeds that initialisation.
    """

    kernel_file = "gemm_blocked.cu"  # through gemm(), which also picks gemm.cu or gemm_bias.cu; and reduce.cu

    def __init__(
        self, in_features: int, out_features: int, device: str | Device = "cpu", dtype=np.float32, seed=None
    ):
        super().__init__(device=device, dtype=dtype)
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"Linear: {name} must be a positive integer, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = np.random.default_rng(seed)
        std = np.sqrt(2.0 / self.in_features)
        self._set_param("W", rng.standard_normal((self.in_features, self.out_features)) * std)
        self._set_param("b", np.zeros(self.out_features))

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 2 or shape[1] != self.in_features:
            self._fail_shape(f"(N, {self.in_features})", shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        self.check_input_shape(tuple(input_shape))
        return (input_shape[0], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"

    def torch_equivalent(self, torch):
        module = torch.nn.Linear(self.in_features, self.out_features, dtype=self._torch_dtype(torch))
        # weight (D, M) here, (M, D) in PyTorch
        return self._to_torch(torch, module, weight=self._host("W").T, bias=self._host("b"))

    # --- cpu: NumPy ----------------------------------------------------------------------------------
    # The batch's rows are split over the threads (over_batch_parts), like the convolutions', when the
    # product is long enough to pay for the handoff (_worth_splitting): dweight is the sum of each part's
    # xᵀ dy.
    def _forward_numpy(self, x, training):
        self._save_for_backward(x=x)
        weight, bias = self.params["W"], self.params["b"]
        y = np.empty((len(x), self.out_features), dtype=x.dtype)  # (N, M)

        def forward_part(rows, _):
            np.matmul(x[rows], weight, out=y[rows])
            y[rows] += bias

        over_batch_parts(forward_part, len(x), split=self._worth_splitting(x))
        return y

    def _worth_splitting(self, x) -> bool:
        """Whether a product N·D·M multiply-adds long pays for splitting the rows over threads."""
        return x.shape[0] * self.in_features * self.out_features >= batch_threads.SPLIT_MIN_MULTIPLY_ADDS

    def _backward_numpy(self, dy):
        x, weight = self._saved().x, self.params["W"]
        dx = np.empty(x.shape, dtype=x.dtype)  # (N, D)

        def backward_part(rows, _):
            np.matmul(dy[rows], weight.T, out=dx[rows])
            return x[rows].T @ dy[rows]  # this part's share of dweight

        parts = over_batch_parts(backward_part, len(x), split=self._worth_splitting(x))
        self.grads["W"] = sum(parts)  # dweight (D, M)
        self.grads["b"] = dy.sum(axis=0)  # dbias (M,)
        return dx

    # --- gpu and sim: kernels/gemm_blocked.cu, kernels/reduce.cu ---------------------------------------
    def _forward_kernels(self, x, training):
        self._save_for_backward(x=x)
        weight, bias = self.params["W"], self.params["b"]
        return gemm(self.device, x, weight, bias=bias)  # y = x weight + bias, (N, M), in one launch

    def _backward_kernels(self, dy):
        x, weight = self._saved().x, self.params["W"]
        self.grads["W"] = gemm(self.device, x, dy, transpose_a=True)  # dweight = xᵀ dy
        self.grads["b"] = bias_grad(self.device, dy)  # dbias
        return gemm(self.device, dy, weight, transpose_b=True)  # dx = dy weightᵀ
