"""The kernel harness: numbered versions of one operation, from naive to optimized, validated and timed.

In the style of llm.c's ``dev/cuda``: ``kernels/dev/gemm.cu`` holds ``gemm_v1_naive`` ...
``gemm_v6_conflict_free``, each with a header comment saying what changed and why it is faster, and this
module runs every version on the same inputs::

    python -m scratchnet.kernel_bench                      # every op, every version
    python -m scratchnet.kernel_bench gemm --device sim    # one op, on the simulator
    python -m scratchnet.bench kernels conv2d              # the same, through the bench command

For each version it

1. **validates** the output against a NumPy reference on small, odd sizes (edge tiles, padding) on
   ``sim`` (the simulator, any machine) or ``gpu``; the output buffer is filled with NaN first, so an
   element that no thread writes fails the check;
2. on a real GPU, **times** it at benchmark sizes (:class:`GpuTimer`: the median of ``--repeats`` runs, each
   after an L2 flush, queued behind a spin kernel so that CUDA events see only GPU time) and reports
   GFLOP/s (GEMM, convolution) or GB/s (pooling), and the percentage of a library reference's rate:
   cuBLAS through ``cupy.matmul`` for GEMM, PyTorch's cuDNN convolution (if PyTorch with CUDA is
   installed; TF32 off) for convolution, and a device-to-device copy of the input (the bandwidth a
   pooling kernel could reach at best, credited with the 2 |x| bytes it moves) for pooling. A missing
   library (no cuBLAS) skips its row with a note; a launch's costs are printed apart: the launch helper's
   argument checks (also on ``sim``: a ``launch helper`` line per op), CuPy's launch on the host and the
   GPU's time per launch;
3. on the simulator, counts the **bank conflicts** of each version's shared-memory accesses at the first
   validation size: the worst conflict per ``__shared__`` array, for its stores and its loads (the access
   record, :meth:`scratchnet.sim.AccessRecord.shared_sites`; 1-way is conflict-free).

Without a GPU it says so and reports the validation, the launch helper's checks, the bank conflicts and the
FLOP and byte counts of the benchmark sizes. Every CuPy call is inside a GPU-only function, through
``scratchnet.cupy_backend``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from scratchnet import cupy_backend as _cupy
from scratchnet._cuda.launch import Kernel
from scratchnet._cuda.limits import MAX_GRID, cdiv
from scratchnet._cuda.sources import cuda_defines
from scratchnet.device import Device, SimDevice, get_device
from scratchnet.errors import DeviceError, cli_errors
from scratchnet.layers.base import window_output_hw


# --- the operations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    """One numbered kernel version: ``launch(kernel, arrays, size)`` runs it on device arrays."""

    number: int
    kernel: str  # template name in the op's .cu file
    launch: Callable
    about: str


@dataclass(frozen=True)
class Library:
    """A library reference for an op: ``run()`` does the op's work (or its bandwidth ceiling)."""

    label: str
    run: Callable
    bytes: int | None = None  # bytes it moves, when not the op's own (a copy moves 2 |x|)


@dataclass(frozen=True)
class Op:
    """An operation with numbered kernel versions, a NumPy reference and its work counts.

    ``make_inputs(size, dtype, rng) -> {name: host array}`` (in kernel argument order), ``reference(inputs,
    size) -> host array``, ``output_shape(size)``, ``flops(size)``, ``bytes(size, itemsize)`` (the minimum
    traffic: every input read once, the output written once). ``metric`` is what the timing reports.
    """

    name: str
    source: str  # file under kernels/
    versions: tuple[Version, ...]
    make_inputs: Callable
    reference: Callable
    output_shape: Callable
    flops: Callable
    bytes: Callable
    metric: str  # "GFLOP/s" or "GB/s"
    reduction_length: Callable  # terms summed per output (0: exact): sets the rounding tolerance
    tiny_sizes: tuple[dict, ...]  # validated on sim and gpu
    bench_sizes: tuple[dict, ...]  # timed on gpu (and validated there too)
    library: Callable | None = None  # gpu only: library(arrays, size) -> Library (None: unavailable)


def _describe(size: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in size.items())


# GEMM: C (M, N) = A (M, K) @ B (K, N).
def _gemm_inputs(size, dtype, rng):
    return {
        "A": rng.standard_normal((size["M"], size["K"])).astype(dtype),
        "B": rng.standard_normal((size["K"], size["N"])).astype(dtype),
    }


def _gemm_launch_rows(kernel, a, size):  # v1: threadIdx.x walks the rows of C
    M, N, K = size["M"], size["N"], size["K"]
    side = cuda_defines("dev/gemm.cu")["V1_BLOCK"]
    kernel((cdiv(M, side), cdiv(N, side)), (side, side), (a["A"], a["B"], a["out"], M, N, K))


def _gemm_launch_cols(block_define: str) -> Callable:  # v2, v3: threadIdx.x walks the columns of C
    def launch(kernel, a, size):
        M, N, K = size["M"], size["N"], size["K"]
        side = cuda_defines("dev/gemm.cu")[block_define]
        kernel((cdiv(N, side), cdiv(M, side)), (side, side), (a["A"], a["B"], a["out"], M, N, K))

    return launch


def _gemm_launch_tiles(version: str) -> Callable:  # v4, v5: one block per BM x BN tile of C
    def launch(kernel, a, size):
        M, N, K = size["M"], size["N"], size["K"]
        defines = cuda_defines("dev/gemm.cu")
        grid = (cdiv(N, defines[f"{version}_BN"]), cdiv(M, defines[f"{version}_BM"]))
        kernel(grid, (defines[f"{version}_THREADS"],), (a["A"], a["B"], a["out"], M, N, K))

    return launch


def _gemm_cublas(a, size):
    # CuPy's float32 matmul stays FP32 unless CUPY_TF32=1 (the environment line of the report says which).
    return Library("cuBLAS (cupy.matmul)", lambda: _cupy.matmul(a["A"], a["B"], out=a["out"]))


GEMM = Op(
    name="gemm",
    source="dev/gemm.cu",
    versions=(
        Version(1, "gemm_v1_naive", _gemm_launch_rows, "one thread per C element, uncoalesced"),
        Version(2, "gemm_v2_coalesced", _gemm_launch_cols("V1_BLOCK"), "one thread per C element, coalesced"),
        Version(3, "gemm_v3_tiled", _gemm_launch_cols("V3_TILE"), "32x32 shared-memory tiles"),
        Version(4, "gemm_v4_blocktile_1d", _gemm_launch_tiles("V4"), "64x64 tiles, 8 outputs per thread"),
        Version(5, "gemm_v5_blocktile_2d", _gemm_launch_tiles("V5"), "128x128 tiles, 8x8 per thread"),
        Version(6, "gemm_v6_conflict_free", _gemm_launch_tiles("V6"), "v5 without shared bank conflicts"),
    ),
    make_inputs=_gemm_inputs,
    reference=lambda inp, size: inp["A"] @ inp["B"],
    output_shape=lambda s: (s["M"], s["N"]),
    flops=lambda s: 2 * s["M"] * s["N"] * s["K"],
    bytes=lambda s, itemsize: itemsize * (s["M"] * s["K"] + s["K"] * s["N"] + s["M"] * s["N"]),
    metric="GFLOP/s",
    reduction_length=lambda s: s["K"],
    # Odd sizes: partial tiles in every direction; the second spans several 128-wide v5 tiles.
    tiny_sizes=({"M": 37, "N": 29, "K": 23}, {"M": 130, "N": 135, "K": 9}),
    bench_sizes=({"M": 1024, "N": 1024, "K": 1024}, {"M": 4096, "N": 4096, "K": 4096}),
    library=_gemm_cublas,
)


def _window_out(size) -> tuple[int, int]:
    """(OH, OW) of a K x K window sliding with stride S over an H x W image padded by P (conv and pool)."""
    return window_output_hw((size["H"], size["W"]), size["K"], size["S"], size["P"])


# Convolution forward: y (N, F, OH, OW) = conv(x (N, C, H, W), weight (F, C, K, K)) + bias, stride S,
# padding P. The harness uses square kernels: KH = KW = K.
def _conv_inputs(size, dtype, rng):
    N, C, H, W, F, K = (size[key] for key in ("N", "C", "H", "W", "F", "K"))
    return {
        "x": rng.standard_normal((N, C, H, W)).astype(dtype),
        "weight": (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(dtype),
        "bias": rng.standard_normal(F).astype(dtype),
    }


def _conv_reference(inputs, size):
    """im2col as a strided view, then one einsum:
    y[n, f, oh, ow] = bias[f] + sum_{c, kh, kw} weight[f, c, kh, kw] * x_pad[n, c, oh*S + kh, ow*S + kw]."""
    x, weight, bias = inputs["x"], inputs["weight"], inputs["bias"]
    P, S, K = size["P"], size["S"], size["K"]
    OH, OW = _window_out(size)
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    windows = np.lib.stride_tricks.sliding_window_view(
        x_pad, (K, K), axis=(2, 3)
    )  # (N, C, H+2P-K+1, ., K, K)
    windows = windows[:, :, : (OH - 1) * S + 1 : S, : (OW - 1) * S + 1 : S]  # (N, C, OH, OW, K, K)
    return np.einsum("nchwij,fcij->nfhw", windows, weight, optimize=True) + bias[None, :, None, None]


def _conv_args(a, size):
    OH, OW = _window_out(size)
    N, C, H, W, F, K = (size[key] for key in ("N", "C", "H", "W", "F", "K"))
    return (a["x"], a["weight"], a["bias"], a["out"], N, C, H, W, F, K, K, size["S"], size["P"], OH, OW)


def _conv_launch_direct(kernel, a, size):  # v1: one thread per output element
    OH, OW = _window_out(size)
    kernel.launch_1d(size["N"] * size["F"] * OH * OW, _conv_args(a, size), block=256)


def _conv_launch_smem(kernel, a, size):  # v2: V2_TILE x V2_TILE output pixels x V2_FB channels per block
    OH, OW = _window_out(size)
    K, S = size["K"], size["S"]
    defines = cuda_defines("dev/conv2d_forward.cu")
    tile, channels = defines["V2_TILE"], defines["V2_FB"]
    patch = ((tile - 1) * S + K) ** 2
    shared = (patch + channels * K * K) * a["out"].itemsize
    grid = (cdiv(OW, tile), cdiv(OH, tile), size["N"] * cdiv(size["F"], channels))
    kernel(grid, (tile, tile), _conv_args(a, size), shared_mem=shared)


def _conv_launch_implicit_gemm(kernel, a, size):  # v3: V3_BM filters x V3_BN pixels per block
    OH, OW = _window_out(size)
    defines = cuda_defines("dev/conv2d_forward.cu")
    grid = (cdiv(size["N"] * OH * OW, defines["V3_BN"]), cdiv(size["F"], defines["V3_BM"]))
    kernel(grid, (defines["V3_THREADS"],), _conv_args(a, size))


def _conv_cudnn(a, size):
    """PyTorch's cuDNN convolution on the same device buffers (shared through DLPack), when available."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    x, weight, bias = (torch.from_dlpack(a[key]) for key in ("x", "weight", "bias"))
    out = torch.from_dlpack(a["out"])
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # compare FP32 with FP32, not with TF32 tensor cores
    torch.backends.cudnn.allow_tf32 = False

    def run():
        out.copy_(torch.nn.functional.conv2d(x, weight, bias, stride=size["S"], padding=size["P"]))

    return Library("cuDNN (torch conv2d)", run)


CONV = Op(
    name="conv2d",
    source="dev/conv2d_forward.cu",
    versions=(
        Version(1, "conv2d_forward_v1_direct", _conv_launch_direct, "direct, one thread per output"),
        Version(2, "conv2d_forward_v2_smem", _conv_launch_smem, "direct, input tile + filters in shared mem"),
        Version(
            3, "conv2d_forward_v3_implicit_gemm", _conv_launch_implicit_gemm, "implicit GEMM, 64x64 tiles"
        ),
    ),
    make_inputs=_conv_inputs,
    reference=_conv_reference,
    output_shape=lambda s: (s["N"], s["F"], *_window_out(s)),
    flops=lambda s: 2 * s["N"] * s["F"] * int(np.prod(_window_out(s))) * s["C"] * s["K"] ** 2,
    bytes=lambda s, itemsize: (
        itemsize
        * (
            s["N"] * s["C"] * s["H"] * s["W"]
            + s["F"] * s["C"] * s["K"] ** 2
            + s["F"]
            + s["N"] * s["F"] * int(np.prod(_window_out(s)))
        )
    ),
    metric="GFLOP/s",
    reduction_length=lambda s: s["C"] * s["K"] ** 2,
    tiny_sizes=(
        {"N": 2, "C": 3, "H": 9, "W": 7, "F": 5, "K": 3, "S": 1, "P": 1},
        {"N": 2, "C": 2, "H": 11, "W": 11, "F": 9, "K": 3, "S": 2, "P": 0},
        {"N": 1, "C": 2, "H": 20, "W": 18, "F": 3, "K": 5, "S": 1, "P": 2},  # more than one 16x16 tile
    ),
    bench_sizes=(
        {"N": 128, "C": 6, "H": 14, "W": 14, "F": 16, "K": 5, "S": 1, "P": 0},  # LeNet-5 conv2
        {"N": 128, "C": 64, "H": 27, "W": 27, "F": 192, "K": 5, "S": 1, "P": 2},  # torchvision AlexNet conv2
        {"N": 128, "C": 256, "H": 13, "W": 13, "F": 384, "K": 3, "S": 1, "P": 1},  # AlexNet conv3
    ),
    library=_conv_cudnn,
)


# Max-pool forward: y (N, C, OH, OW) = max over K x K windows of x (N, C, H, W), stride S, padding P.
def _pool_inputs(size, dtype, rng):
    # A permutation: all values distinct, so there are no ties to break.
    n = size["N"] * size["C"] * size["H"] * size["W"]
    return {"x": rng.permutation(n).reshape(size["N"], size["C"], size["H"], size["W"]).astype(dtype)}


def _pool_reference(inputs, size):
    K, S, P = size["K"], size["S"], size["P"]
    OH, OW = _window_out(size)
    x_pad = np.pad(inputs["x"], ((0, 0), (0, 0), (P, P), (P, P)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(x_pad, (K, K), axis=(2, 3))  # (N, C, ., ., K, K)
    return windows[:, :, : (OH - 1) * S + 1 : S, : (OW - 1) * S + 1 : S].max(axis=(4, 5))


def _pool_args(a, size):
    OH, OW = _window_out(size)
    N, C, H, W, K = (size[key] for key in ("N", "C", "H", "W", "K"))  # square window: KH = KW = K
    return (a["x"], a["out"], N, C, H, W, K, K, size["S"], size["P"], OH, OW)


def _pool_launch_flat(kernel, a, size):  # v1, v2: one thread per output element
    kernel.launch_1d(int(np.prod(_window_out(size))) * size["N"] * size["C"], _pool_args(a, size), block=256)


def _pool_launch_planes(kernel, a, size):  # v3: blockIdx.y picks the (n, c) plane
    planes = size["N"] * size["C"]
    grid = (cdiv(int(np.prod(_window_out(size))), 256), min(planes, MAX_GRID[1]))
    kernel(grid, (256,), _pool_args(a, size))


def _pool_copy(a, size):
    """The bandwidth ceiling: a device-to-device copy of x. It reads and writes |x| bytes each, so it is
    credited with its own 2 |x| bytes (pooling moves |x| + |y|): the % column compares bandwidths."""
    cp = _cupy.cupy()
    scratch = cp.empty_like(a["x"])
    return Library("copy of x (bandwidth ceiling)", lambda: cp.copyto(scratch, a["x"]), 2 * a["x"].nbytes)


POOL = Op(
    name="maxpool",
    source="dev/maxpool_forward.cu",
    versions=(
        Version(1, "maxpool_forward_v1_naive", _pool_launch_flat, "one thread per output, channel fastest"),
        Version(2, "maxpool_forward_v2_coalesced", _pool_launch_flat, "one thread per output, ow fastest"),
        Version(3, "maxpool_forward_v3_planes", _pool_launch_planes, "one plane per block row, 32-bit math"),
    ),
    make_inputs=_pool_inputs,
    reference=_pool_reference,
    output_shape=lambda s: (s["N"], s["C"], *_window_out(s)),
    flops=lambda s: s["N"] * s["C"] * int(np.prod(_window_out(s))) * (s["K"] ** 2 - 1),  # comparisons
    bytes=lambda s, itemsize: itemsize * s["N"] * s["C"] * (s["H"] * s["W"] + int(np.prod(_window_out(s)))),
    metric="GB/s",
    reduction_length=lambda s: 0,  # a max rounds nothing: the output must equal the reference exactly
    tiny_sizes=(
        {"N": 2, "C": 3, "H": 8, "W": 6, "K": 2, "S": 2, "P": 0},
        {"N": 2, "C": 3, "H": 7, "W": 9, "K": 3, "S": 2, "P": 1},
    ),
    bench_sizes=(
        {"N": 128, "C": 6, "H": 28, "W": 28, "K": 2, "S": 2, "P": 0},  # LeNet-5 pool1
        {"N": 128, "C": 64, "H": 55, "W": 55, "K": 3, "S": 2, "P": 0},  # torchvision AlexNet pool1
    ),
    library=_pool_copy,
)

OPS = {op.name: op for op in (GEMM, CONV, POOL)}


# --- validation and timing ----------------------------------------------------------------------------
@dataclass
class Result:
    op: str
    version: int | str  # a version number, or the library reference's label
    kernel: str
    size: dict
    ok: bool | None = None  # None: not validated (the library reference)
    max_error: float | None = None
    ms: float | None = None
    rate: float | None = None  # in the op's metric
    percent_of_library: float | None = None
    flops: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


def tolerance(dtype, reduction_length: int) -> float:
    """Allowed max |out - ref| / max(1, max|ref|). Rounding error grows about as the square root of the
    number of terms summed; the factor 32 leaves room for unlucky sums, far below any real bug. Zero
    terms (a max, a copy) means no rounding: the result must be exact."""
    return 32 * float(np.finfo(dtype).eps) * reduction_length**0.5


def _device_arrays(dev: Device, inputs: dict, out_shape, dtype) -> dict:
    arrays = {k: dev.array(v) for k, v in inputs.items()}
    arrays["out"] = dev.array(np.full(out_shape, np.nan, dtype=dtype))  # unwritten elements stay NaN
    return arrays


def validate(
    dev: Device,
    op: Op,
    version: Version,
    size: dict,
    dtype=np.float32,
    seed: int = 0,
    reference: Callable | None = None,
) -> Result:
    """Run one version on ``dev`` and compare with ``reference`` (default: the op's NumPy reference).

    A wrong value, a NaN (an output no thread wrote) or a wrong shape is a failure; so is a launch error.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    inputs = op.make_inputs(size, dtype, rng)
    result = Result(op.name, version.number, version.kernel, size)
    # The reference computes in float64, so its own rounding does not count against the kernel.
    expected = (reference or op.reference)({k: v.astype(np.float64) for k, v in inputs.items()}, size)
    try:
        kernel = dev.kernel(op.source, version.kernel, dtype)
        arrays = _device_arrays(dev, inputs, op.output_shape(size), dtype)
        version.launch(kernel, arrays, size)
        dev.synchronize()
        out = dev.to_host(arrays["out"])
    except Exception as e:  # a launch or compile error is a failed validation, reported with its message
        result.ok = False
        result.notes.append(f"{type(e).__name__}: {e}")
        return result
    if out.shape != expected.shape:
        result.ok = False
        result.notes.append(f"output shape {out.shape}, expected {expected.shape}")
        return result
    error = np.abs(out.astype(np.float64) - expected)
    result.max_error = float(np.nanmax(error)) if not np.isnan(error).all() else float("nan")
    scale = max(1.0, float(np.max(np.abs(expected))))
    unwritten = int(np.isnan(out).sum())
    if unwritten:
        result.notes.append(f"{unwritten} of {out.size} outputs not written (still NaN)")
    wrong = ~(error <= tolerance(dtype, op.reduction_length(size)) * scale)  # NaN counts as wrong
    result.ok = not wrong.any()
    if not result.ok:
        result.notes.append(describe_mismatches(out, expected, wrong))
    return result


@functools.cache
def _recording_device() -> SimDevice:
    return SimDevice(checks="record")  # keeps each launch's access record (scratchnet.sim.record)


def bank_conflicts(op: Op, version: Version, size: dict, dtype=np.float32) -> dict[str, dict[str, int]]:
    """The worst bank conflict of each ``__shared__`` array of one run of ``version`` on the simulator, per
    kind of access: ``{"As": {"store": 8, "load": 1}, ...}`` (1: conflict-free; {} without shared memory).
    Counted on the access record (AccessRecord.shared_sites, which says how); the output is not checked."""
    dev = _recording_device()
    kernel = dev.kernel(op.source, version.kernel, dtype)
    inputs = op.make_inputs(size, np.dtype(dtype), np.random.default_rng(0))
    version.launch(kernel, _device_arrays(dev, inputs, op.output_shape(size), dtype), size)
    module = kernel.raw.module
    worst: dict[str, dict[str, int]] = {}
    for site in module.last_record.shared_sites(module.build.library):
        array = site.array.split("'")[1] if site.array else site.line  # "'As' in gemm_v5<float>" -> "As"
        kinds = worst.setdefault(array, {})
        kinds[site.kind] = max(kinds.get(site.kind, 0), site.conflict_degree)
    return worst


def describe_mismatches(out: np.ndarray, expected: np.ndarray, wrong: np.ndarray) -> str:
    """Where the output is wrong: how many elements, the first (in C order) and the worst, as indices.

    The first wrong index often shows the pattern of a bug (an edge tile, a second block row); the worst
    shows its size. A NaN (an element no thread wrote) is the worst of all."""
    error = np.abs(out.astype(np.float64) - expected)
    first = np.unravel_index(int(np.argmax(wrong)), wrong.shape)
    worst = np.unravel_index(int(np.argmax(np.where(np.isnan(error), np.inf, error))), wrong.shape)

    def at(index) -> str:
        return f"{tuple(int(i) for i in index)} = {out[index]:.6g} (expected {expected[index]:.6g})"

    return f"{int(wrong.sum())} of {out.size} wrong; first at {at(first)}; worst at {at(worst)}"


class GpuTimer:
    """Honest GPU timing of one short piece of work, as llm.c's ``dev/cuda/common.h`` does it.

    * Cold caches: before every timed run the L2 cache is flushed by writing a buffer twice its size
      (``L2CacheSize`` of the device), so no run reads its inputs from the previous run's L2.
    * No host in the measurement: a ``spin`` kernel (``kernels/dev/timing.cu``) is queued first and keeps
      the GPU busy while the host enqueues every (flush, start event, run, stop event) behind it; each pair
      of events then brackets only the GPU's work, not the host's launch gaps. The spin lasts
      ENQUEUE_MARGIN times the host time one such enqueue was measured to take (:meth:`spin_ns`), and an
      event recorded right after it says whether it was still running when the host had enqueued the last
      run. If not, a run may have waited for the host: the runs are timed again behind a spin twice as
      long, and after RETRIES attempts ``covered`` is False and the report says so.
    * The launch costs are measured apart (:meth:`launch_costs_us`): the launch helper's Python checks,
      CuPy's own launch on the host, and the GPU's time per launch of an empty kernel.
    """

    MIN_ENQUEUE_NS = 100_000  # the least spin per timed run
    ENQUEUE_MARGIN = 3  # spin 3x the host time measured for enqueuing one timed run
    RETRIES = 3

    def __init__(self, dev: Device):
        cp = _cupy.cupy()
        self.cp = cp
        with _cupy.gpu_errors("setting up the kernel timer"):
            self.l2_bytes = int(cp.cuda.Device().attributes["L2CacheSize"])
            self.flush_buffer = cp.empty(max(2 * self.l2_bytes, 1 << 20), dtype=np.uint8)
        self.spin = dev.kernel("dev/timing.cu", "spin")
        self.empty_kernel = dev.kernel("dev/timing.cu", "empty_kernel")
        self.enqueue_ns = 0  # host time to enqueue one timed run, measured by time_ms
        self.spin_per_run_ns = self.MIN_ENQUEUE_NS
        self.covered = True  # whether the last timed runs were all queued behind the spin

    def flush_l2(self) -> None:
        self.flush_buffer.fill(0)  # a kernel writing 2x L2 bytes: evicts whatever the last run left

    def set_enqueue_ns(self, enqueue_ns: int) -> None:
        """The host takes ``enqueue_ns`` to enqueue one timed run: spin ENQUEUE_MARGIN times that per run,
        and at least MIN_ENQUEUE_NS."""
        self.enqueue_ns = enqueue_ns
        self.spin_per_run_ns = max(self.MIN_ENQUEUE_NS, self.ENQUEUE_MARGIN * enqueue_ns)

    def spin_ns(self, count: int) -> int:
        """How long the spin keeps the GPU busy in front of ``count`` timed runs."""
        return count * self.spin_per_run_ns

    def time_ms(self, run: Callable, repeats: int, budget_ms: float = 2000.0) -> float:
        """Median GPU milliseconds of ``run()`` over ``repeats`` cold-cache runs (fewer, at least 3, for a
        slow kernel such as a naive GEMM at 4096^3, to stay within about ``budget_ms``)."""
        run()  # warm-up: compilation, cuDNN algorithm search
        self.set_enqueue_ns(self._enqueue_ns(run))
        first = self._timed_runs(run, 1)[0]
        repeats = max(3, min(repeats, int(budget_ms / max(first, 1e-3))))
        return statistics.median(self._timed_runs(run, repeats))

    def _enqueue(self, run: Callable, start, stop) -> None:
        self.flush_l2()
        start.record()
        run()
        stop.record()

    def _enqueue_ns(self, run: Callable, samples: int = 3) -> int:
        """Host nanoseconds to enqueue one timed run (flush, event, run, event): the most of ``samples``."""
        times = []
        for _ in range(samples):
            start, stop = self.cp.cuda.Event(), self.cp.cuda.Event()
            begin = time.perf_counter_ns()
            self._enqueue(run, start, stop)
            times.append(time.perf_counter_ns() - begin)
            with _cupy.gpu_errors("timing a kernel"):
                stop.synchronize()
        return max(times)

    def _timed_runs(self, run: Callable, count: int) -> list[float]:
        for _ in range(self.RETRIES):
            events = [(self.cp.cuda.Event(), self.cp.cuda.Event()) for _ in range(count)]
            self.spin((1,), (1,), (self.spin_ns(count),))
            spin_end = self.cp.cuda.Event()
            spin_end.record()
            for start, stop in events:
                self._enqueue(run, start, stop)
            self.covered = not spin_end.done  # the GPU still spun when the host had enqueued every run
            with _cupy.gpu_errors("timing a kernel"):
                events[-1][1].synchronize()
                times = [self.cp.cuda.get_elapsed_time(start, stop) for start, stop in events]
            if self.covered:
                break
            self.spin_per_run_ns *= 2  # the host was slower than measured
        return times

    def launch_costs_us(self, launches: int = 200) -> dict[str, float]:
        """Microseconds per launch of an empty kernel: ``checks``, the launch helper's Python (its checks and
        conversions, with the launch itself left out: :func:`helper_checks_us`); ``cupy``, CuPy's launch on
        the host, without the helper; ``gpu``, the GPU's time per launch, ``launches`` of them queued back
        to back between two events."""
        raw = self.empty_kernel.raw
        raw((1,), (1,), ())
        self.cp.cuda.Device().synchronize()
        begin = time.perf_counter()
        for _ in range(launches):
            raw((1,), (1,), ())
        host = (time.perf_counter() - begin) / launches * 1e6
        self.cp.cuda.Device().synchronize()

        def back_to_back():
            for _ in range(launches):
                raw((1,), (1,), ())

        return {
            "checks": helper_checks_us(lambda kernel: kernel((1,), (1,), ()), self.empty_kernel),
            "cupy": host,
            "gpu": self.time_ms(back_to_back, repeats=5) * 1e3 / launches,
        }


def helper_checks_us(launch: Callable, kernel: Kernel, calls: int = 100) -> float:
    """Microseconds of the launch helper's own Python per launch (:class:`~scratchnet._cuda.launch.Kernel`:
    its checks and conversions of the arguments), for the launch that ``launch(kernel)`` makes: that
    launch's arguments are caught once, then passed in batches of ``calls`` to a copy of ``kernel`` whose
    launch does nothing and counts nowhere, so no device and no CuPy time is in the figure."""
    caught = []

    class Catch(Kernel):
        def __call__(self, grid, block, args, shared_mem: int = 0) -> None:
            caught.append((grid, block, args, shared_mem))

    uncounted = SimpleNamespace(name=kernel.device.name, is_array=kernel.device.is_array, launches=Counter())
    launch(Catch(uncounted, None, kernel.signature))
    silent = Kernel(uncounted, lambda *args, **kwargs: None, kernel.signature)
    grid, block, args, shared_mem = caught[0]
    batches = []  # the fastest of 5 batches, as timeit advises: slower ones waited for other processes
    for _ in range(5):
        begin = time.perf_counter()
        for _ in range(calls):
            silent(grid, block, args, shared_mem=shared_mem)
        batches.append((time.perf_counter() - begin) / calls * 1e6)
    return min(batches)


def benchmark_size(dev: Device, op: Op, size: dict, dtype, repeats: int, timer: GpuTimer) -> list[Result]:
    """On the GPU: validate and time every version at one size, then the library reference."""
    dtype = np.dtype(dtype)
    flops, nbytes = op.flops(size), op.bytes(size, dtype.itemsize)
    results = []

    # The inputs validate() draws (seed 0), and their float64 reference once per size (seconds at 4096^3).
    inputs = op.make_inputs(size, dtype, np.random.default_rng(0))
    expected = op.reference({k: v.astype(np.float64) for k, v in inputs.items()}, size)

    def fresh_arrays() -> dict:
        return _device_arrays(dev, inputs, op.output_shape(size), dtype)

    for version in op.versions:
        result = validate(dev, op, version, size, dtype, seed=0, reference=lambda _inputs, _size: expected)
        if result.ok:
            kernel = dev.kernel(op.source, version.kernel, dtype)
            arrays = fresh_arrays()
            result.ms = timer.time_ms(lambda k=kernel, a=arrays, v=version: v.launch(k, a, size), repeats)
            if not timer.covered:
                result.notes.append("may include host time: the spin ended before every run was enqueued")
        result.flops, result.bytes = flops, nbytes
        results.append(result)
    if op.library is not None:
        try:
            library = op.library(fresh_arrays(), size)
            if library is not None:
                reference = Result(op.name, library.label, library.label, size, flops=flops)
                reference.bytes = nbytes if library.bytes is None else library.bytes
                reference.ms = timer.time_ms(library.run, repeats)
                results.append(reference)
        except DeviceError as e:  # e.g. cuBLAS missing: the versions' timings still stand
            note = Result(op.name, "library", "library reference", size)
            note.notes.append(f"skipped: {e}")
            results.append(note)
    for r in results:
        if r.ms:
            r.rate = (r.flops if op.metric == "GFLOP/s" else r.bytes) / (r.ms * 1e-3) / 1e9
    library_rate = results[-1].rate if results and isinstance(results[-1].version, str) else None
    for r in results:
        if r.rate and library_rate:
            r.percent_of_library = 100 * r.rate / library_rate  # of the library's GFLOP/s or GB/s
    return results


# --- the command line ---------------------------------------------------------------------------------
def pick_device(name: str | None) -> tuple[Device, str]:
    """``name``, or by default the GPU when there is one and else the simulator; plus a note saying why."""
    if name is not None:
        return get_device(name), ""
    try:
        return get_device("gpu"), ""
    except DeviceError as e:
        note = (
            f"No CUDA GPU: {e}\n"
            "Validating every version on the simulator (sim) at small sizes; timings need a GPU."
        )
        return get_device("sim"), note


def _format_validation(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        err = "" if r.max_error is None else f"max |err| {r.max_error:.2e}"
        notes = "; ".join(r.notes)
        lines.append(f"  v{r.version} {r.kernel:34s} {_describe(r.size):42s} {status} {err} {notes}".rstrip())
    return lines


def _format_counts(op: Op, dtype) -> list[str]:
    lines = []
    for size in op.bench_sizes:
        flops, nbytes = op.flops(size), op.bytes(size, np.dtype(dtype).itemsize)
        what = "comparisons" if op.metric == "GB/s" else "FLOP"
        lines.append(
            f"  {_describe(size):48s} {flops / 1e9:10.3f} G{what:12s} {nbytes / 1e6:10.2f} MB moved at least"
        )
    return lines


def _format_helper_checks(dev: Device, op: Op, dtype) -> str:
    version, size = op.versions[-1], op.tiny_sizes[0]
    kernel = dev.kernel(op.source, version.kernel, dtype)
    inputs = op.make_inputs(size, np.dtype(dtype), np.random.default_rng(0))
    arrays = _device_arrays(dev, inputs, op.output_shape(size), dtype)
    us = helper_checks_us(lambda k: version.launch(k, arrays, size), kernel)
    return (
        f"launch helper: {us:.1f} us of argument checks per launch of v{version.number} {version.kernel} "
        "(host Python, timed with the launch itself left out)"
    )


def _format_bank_conflicts(op: Op, dtype) -> list[str]:
    size = op.tiny_sizes[0]
    lines = [f"bank conflicts (shared memory, worst n-way per array; 1-way is none) at {_describe(size)}:"]
    for version in op.versions:
        arrays = bank_conflicts(op, version, size, dtype)
        text = "; ".join(
            f"{array} "
            + ", ".join(f"{kind} {kinds[kind]}-way" for kind in ("store", "load", "atomic") if kind in kinds)
            for array, kinds in arrays.items()
        )
        lines.append(f"  v{version.number} {version.kernel:34s} {text or 'no shared memory'}")
    return lines


def _format_timings(op: Op, results: list[Result]) -> list[str]:
    lines = [f"  {'version':40s} {'valid':5s} {'ms':>9s} {op.metric:>9s} {'% of lib':>8s}"]
    for r in results:
        name = f"v{r.version} {r.kernel}" if isinstance(r.version, int) else r.kernel
        valid = "-" if r.ok is None else ("ok" if r.ok else "FAIL")
        ms = "" if r.ms is None else f"{r.ms:9.3f}"
        rate = "" if r.rate is None else f"{r.rate:9.1f}"
        pct = "" if r.percent_of_library is None else f"{r.percent_of_library:7.1f}%"
        notes = "; ".join(r.notes)
        lines.append(f"  {name:40s} {valid:5s} {ms:>9s} {rate:>9s} {pct:>8s} {notes}".rstrip())
    return lines


def run(ops: list[Op], device: str | None, dtype, repeats: int, out=print) -> bool:
    """Validate (and on a GPU, time) every version of ``ops``; print the report; return True if all valid."""
    dev, note = pick_device(device)
    if note:
        out(note)
    all_ok = True
    timer = None
    if dev.name == "gpu":
        timer = GpuTimer(dev)
        costs = timer.launch_costs_us()
        out(
            f"timing: median of up to {repeats} runs per kernel, each after an L2 flush "
            f"({2 * timer.l2_bytes / 2**20:.0f} MiB written), queued behind a spin kernel so the CUDA events "
            "measure only the GPU\n"
            f"launch of an empty kernel: {costs['checks']:.1f} us of the launch helper's checks and "
            f"{costs['cupy']:.1f} us of CuPy's launch on the host; {costs['gpu']:.2f} us of GPU time each, "
            "queued back to back"
        )
    for op in ops:
        out(f"\n== {op.name}: kernels/{op.source}, {np.dtype(dtype)}, device {dev.name} ==")
        out("versions (what changed):")
        out("\n".join(f"  v{v.number} {v.kernel:34s} {v.about}" for v in op.versions))
        out("validation against NumPy:")
        results = [validate(dev, op, v, size, dtype) for size in op.tiny_sizes for v in op.versions]
        all_ok &= all(r.ok for r in results)
        out("\n".join(_format_validation(results)))
        out(_format_helper_checks(dev, op, dtype))
        if dev.name != "gpu":
            out("\n".join(_format_bank_conflicts(op, dtype)))
            out(f"benchmark sizes (timed on a GPU only; work per call, {np.dtype(dtype)}):")
            out("\n".join(_format_counts(op, dtype)))
            continue
        for size in op.bench_sizes:
            out(f"timing {_describe(size)}:")
            results = benchmark_size(dev, op, size, dtype, repeats, timer)
            all_ok &= all(r.ok is not False for r in results)
            out("\n".join(_format_timings(op, results)))
    return all_ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scratchnet.kernel_bench",
        description="Validate (and on a GPU, time) the numbered kernel versions in kernels/dev/.",
    )
    p.add_argument("ops", nargs="*", metavar="OP", help=f"ops to run: {', '.join(OPS)} (default: all)")
    p.add_argument(
        "--device", choices=("sim", "gpu"), help="default: gpu when available, else sim (validation only)"
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=20, help="timed launches per kernel (GPU)")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.ops if name not in OPS]
    if unknown:
        parser.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    ops = [OPS[name] for name in args.ops] or list(OPS.values())
    ok = run(ops, args.device, args.dtype, args.repeats)
    if not ok:
        print("\nFAIL: at least one kernel version does not match the reference", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
