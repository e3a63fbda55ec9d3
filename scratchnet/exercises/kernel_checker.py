"""The kernel exercise checker: is *your* CUDA kernel right, and if not, what exactly is wrong with it?

Each file in ``lessons/exercises/kernels/`` is a ``.cu`` file with kernel signatures, the thread mapping
to use and the math in comments, and bodies to write (``// TODO``). Check one with::

    python -m scratchnet.kernel_exercises lessons/exercises/kernels/01_relu.cu [--hint]

Entry points (what ``python -m scratchnet.gradcheck`` calls for a ``.cu`` file):

* ``main(argv: list[str]) -> int`` takes ``[path, "--hint"?]``, prints the report and returns 0 when every
  kernel passes, 1 otherwise, 2 for bad input (one ``error: ...`` line);
* ``check_kernel_file(path, hint=False) -> KernelReport`` (``.passed``, ``str(report)``);
* ``check_source(exercise, source, hint=False) -> KernelReport`` checks a source string (a lesson cell).

What the checker does, for each kernel of the file:

1. **Not done yet**: a kernel whose body is still empty (comments only) is reported as such.
2. **Compile** the file with NVRTC, as CuPy would on a GPU (a compile error shows NVRTC's log), then with
   the simulator's host compiler.
3. **Run** it on the ``sim`` device (and on ``gpu`` when there is one), launched with the grid and block
   the exercise specifies, for several shapes that are *not* multiples of the block size (and one that is),
   each under several simulator seeds (each seed runs the threads of a block in another shuffled order),
   with the simulator's checks on (memcheck, racecheck, initcheck, synccheck: see :mod:`scratchnet.sim`).
   Every output starts filled with a sentinel NaN, so that an element no thread wrote stands out.
4. **Compare** with a NumPy reference and name the mistake: a missing bounds guard (a read or write
   outside an array, with the thread, block and source line), outputs never written (the thread mapping
   misses them), a missing or misplaced ``__syncthreads()`` (a race, naming both threads and their source
   lines; a read of shared memory no thread has written yet; or a result that changes with the thread
   order), a barrier not every thread reaches, a wrong index mapping (the result equals a transposed or
   permuted reference, or each thread's block of registers stored to the wrong places), edge elements
   wrong (right only when the sizes are multiples of the block), or else the worst element, yours against
   the expected value. With ``hint=True`` it also prints the formula and the thread mapping.
5. **Bank conflicts**, for an exercise that requires none: a right kernel runs once more with the
   simulator's access record (:mod:`scratchnet.sim.record`), and a shared-memory access whose warp asks
   one bank for several words is named, with its array, its source line and how many ways it conflicts.

A kernel that never returns hangs the check, as it would hang a GPU.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scratchnet._cuda.limits import cdiv
from scratchnet._cuda.nvrtc import NvrtcError, compile_source
from scratchnet.device import get_device, load_kernels
from scratchnet.errors import DeviceError, KernelLaunchError
from scratchnet.exercises import Report, diagnosis, kernel_evidence
from scratchnet.layers.base import window_output_hw
from scratchnet.sim.checks import (
    InitcheckError,
    KernelCrashError,
    MemcheckError,
    RacecheckError,
    SimCheckError,
    SynccheckError,
)

EXERCISE_DIR = Path(__file__).resolve().parents[2] / "lessons" / "exercises" / "kernels"
SEEDS = (1, 2, 3)  # simulator seeds: three shuffled thread orders per shape
SIM_CHECKS = "all,strict"  # every check; strict: what CUDA leaves undefined (GPUs may run it) fails
# Outputs start as this NaN (a payload no arithmetic produces): "never written" differs from a computed NaN.
SENTINEL_BITS = np.uint32(0x7FC0DEAD)


# --- what an exercise is ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """One set of sizes, e.g. ``{"count": 1000}``; ``regular`` when every size is a multiple of the block."""

    sizes: dict[str, int]
    regular: bool = False

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.sizes.items())


@dataclass(frozen=True)
class KernelTask:
    """One kernel of an exercise file: how the checker launches it and what it must compute.

    ``make_inputs(sizes, rng) -> {name: host array}``; ``reference(inputs, sizes) -> {output name: array}``;
    ``launch(sizes) -> (grid, block)``; ``args`` names every kernel argument in order (an input, an output
    or a size); ``wrong_answers(inputs, sizes) -> [(mistake, {output: array})]`` are the results of known
    mistakes, recognised when the learner's output equals one of them.
    """

    kernel: str
    formula: str  # shown with hint=True
    mapping: str  # shown with hint=True
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    make_inputs: Callable[[dict, np.random.Generator], dict[str, np.ndarray]]
    reference: Callable[[dict, dict], dict[str, np.ndarray]]
    launch: Callable[[dict], tuple[tuple[int, ...], tuple[int, ...]]]
    output_shapes: Callable[[dict], dict[str, tuple[int, ...]]]
    wrong_answers: Callable[[dict, dict], list[tuple[str, dict[str, np.ndarray]]]] = lambda inputs, sizes: []
    edge_mistake: str = "the threads at the edges need a bounds guard"
    # Evidence beyond the output, per output name: ``terms(inputs, sizes) -> {output: (terms, axis name)}``,
    # the contributions an output sums over (output shape + (K,)); ``regions(inputs, sizes) -> {output:
    # {name for the learner: mask}}``, the parts of a probe where one cause shows.
    terms: Callable[[dict, dict], dict[str, tuple[np.ndarray, str]]] = lambda inputs, sizes: {}
    regions: Callable[[dict, dict], dict[str, dict[str, np.ndarray]]] = lambda inputs, sizes: {}
    # An output that is not itself the sum its terms add up to, but made from it (a row minus its mean):
    # ``summed(inputs, sizes, output) -> {output: (the sum each element used, what that sum is)}``.
    summed: Callable[[dict, dict, dict], dict[str, tuple[np.ndarray, str]]] = lambda inputs, sizes, out: {}
    # The flat index of the output element a thread computes (None: it has none), when the mapping is not
    # one thread per element: ``thread_element(sizes, block, thread)``; by default kernel_evidence's. A
    # thread of several elements that needs no guard (all of them inside) gives its first one.
    thread_element: Callable[[dict, tuple, tuple], int | None] | None = None
    # Register blocking: which thread computes each element of the output, in which register of its block
    # (kernel_evidence.ThreadTiles), so that a block stored to the wrong places is named.
    thread_tiles: Callable[[dict], kernel_evidence.ThreadTiles] | None = None
    # Set when the exercise requires conflict-free shared-memory accesses: how to remove a conflict.
    conflict_fix: str | None = None
    # At sizes where some threads own no element and hold the neutral value of a reduction: why a NaN can
    # come from there (``idle_nan(sizes) -> str``), None at sizes where every thread owns one.
    idle_nan: Callable[[dict], str | None] = lambda sizes: None
    # Outputs made by dividing by a normaliser that a group of elements shares (a row's sum): ``factor_groups(
    # sizes) -> {output: {name: (labels, meaning)}}``, the groups, coarsest first, within which yours may be
    # the right value times one factor (kernel_evidence.group_factor_relation).
    factor_groups: Callable[[dict], dict[str, dict[str, tuple]]] = lambda sizes: {}


@dataclass(frozen=True)
class KernelExercise:
    name: str  # the file name without its number: "relu" for 01_relu.cu
    tasks: tuple[KernelTask, ...]
    shapes: tuple[Shape, ...]  # the regular shape (if any) first


@dataclass
class KernelReport(Report):
    """The exercises' report (``<exercise>: passed``, ``wrong`` or ``not done yet``, one line per kernel);
    ``str(report)`` renders it, with the formulas when ``hint`` is true."""

    hint: bool = False

    def __str__(self) -> str:
        return self.render(self.hint)


# --- the exercises ------------------------------------------------------------------------------------------
def _signed_away_from_zero(rng: np.random.Generator, shape) -> np.ndarray:
    """Values with |v| in [0.1, 1] and random signs: no element sits on ReLU's kink."""
    return (rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)).astype(np.float32)


def _launch_1d(total: Callable[[dict], int], threads: int):
    return lambda s: ((cdiv(total(s), threads),), (threads,))


RELU = KernelExercise(
    name="relu",
    tasks=(
        KernelTask(
            kernel="relu_forward",
            formula="y[i] = max(x[i], 0)",
            mapping="thread i = blockIdx.x * blockDim.x + threadIdx.x handles element i, if i < count",
            args=("x", "y", "count"),
            outputs=("y",),
            make_inputs=lambda s, rng: {"x": _signed_away_from_zero(rng, s["count"])},
            reference=lambda a, s: {"y": np.maximum(a["x"], 0)},
            launch=_launch_1d(lambda s: s["count"], 256),
            output_shapes=lambda s: {"y": (s["count"],)},
            wrong_answers=lambda a, s: [
                ("you returned x unchanged; negative inputs become 0", {"y": a["x"]}),
                (
                    "you kept the negative part: y = min(x, 0); ReLU keeps the positive part",
                    {"y": np.minimum(a["x"], 0)},
                ),
            ],
        ),
        KernelTask(
            kernel="relu_backward",
            formula="dx[i] = dy[i] if x[i] > 0 else 0",
            mapping="thread i = blockIdx.x * blockDim.x + threadIdx.x handles element i, if i < count",
            args=("x", "dy", "dx", "count"),
            outputs=("dx",),
            make_inputs=lambda s, rng: {
                "x": _signed_away_from_zero(rng, s["count"]),
                "dy": _signed_away_from_zero(rng, s["count"]),
            },
            reference=lambda a, s: {"dx": np.where(a["x"] > 0, a["dy"], 0).astype(np.float32)},
            launch=_launch_1d(lambda s: s["count"], 256),
            output_shapes=lambda s: {"dx": (s["count"],)},
            wrong_answers=lambda a, s: [
                (
                    "you masked with dy > 0; the mask comes from the forward input: dx = dy if x > 0",
                    {"dx": np.where(a["dy"] > 0, a["dy"], 0)},
                ),
                ("you passed dy through unchanged; zero it where x <= 0", {"dx": a["dy"]}),
                (
                    "you wrote the mask (x > 0) alone; multiply it by dy",
                    {"dx": (a["x"] > 0).astype(np.float32)},
                ),
            ],
        ),
    ),
    shapes=(
        Shape({"count": 1024}, regular=True),
        Shape({"count": 1000}),
        Shape({"count": 77}),
        Shape({"count": 2049}),
    ),
)


# Max-pooling, no padding: x (N, C, H, W) -> y, argmax (N, C, OH, OW).
def _pool_out(s: dict) -> tuple[int, int]:
    return window_output_hw((s["H"], s["W"]), (s["KH"], s["KW"]), s["S"])


def _pool_windows(x: np.ndarray, s: dict) -> np.ndarray:
    """The windows of x as (N, C, OH, OW, KH * KW), kh-major."""
    OH, OW = _pool_out(s)
    windows = np.lib.stride_tricks.sliding_window_view(x, (s["KH"], s["KW"]), axis=(2, 3))
    windows = windows[:, :, :: s["S"], :: s["S"]][:, :, :OH, :OW]  # (N, C, OH, OW, KH, KW)
    return windows.reshape(*windows.shape[:4], -1)


def _pool_forward(x: np.ndarray, s: dict) -> tuple[np.ndarray, np.ndarray]:
    """y and argmax (h * W + w inside the (n, c) plane), both (N, C, OH, OW)."""
    OH, OW = _pool_out(s)
    offset = _pool_windows(x, s).argmax(axis=-1)  # first maximum on ties, as the kernel's strict >
    kh, kw = offset // s["KW"], offset % s["KW"]
    oh, ow = np.arange(OH)[:, None], np.arange(OW)[None, :]
    argmax = ((oh * s["S"] + kh) * s["W"] + ow * s["S"] + kw).astype(np.int32)
    y = np.take_along_axis(x.reshape(*x.shape[:2], -1), argmax.reshape(*x.shape[:2], -1), axis=2)
    return y.reshape(argmax.shape), argmax


def _pool_backward(dy: np.ndarray, argmax: np.ndarray, s: dict, accumulate: bool = True) -> np.ndarray:
    """dx (N, C, H, W): each window's dy added at its argmax (or, accumulate=False, the last one kept)."""
    N, C = dy.shape[:2]
    dx = np.zeros((N * C, s["H"] * s["W"]), dtype=np.float32)
    planes = np.repeat(np.arange(N * C), dy[0, 0].size)
    if accumulate:
        np.add.at(dx, (planes, argmax.ravel()), dy.ravel())
    else:
        dx[planes, argmax.ravel()] = dy.ravel()  # NumPy keeps the last write, like `=` in a loop
    return dx.reshape(N, C, s["H"], s["W"])


def _pool_inputs(s: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Distinct values (or, the tie probe, three values only), and for the backward the argmax the forward
    would give."""
    N, C, H, W = s["N"], s["C"], s["H"], s["W"]
    if s.get("ties"):
        x = rng.integers(0, 3, size=(N, C, H, W)).astype(np.float32) / 3
    else:
        x = rng.permutation(N * C * H * W).reshape(N, C, H, W).astype(np.float32) / (N * C * H * W)
    _, argmax = _pool_forward(x, s)
    dy = _signed_away_from_zero(rng, argmax.shape)
    return {"x": x, "dy": dy, "argmax": argmax}


_POOL_SIZES = ("N", "C", "H", "W", "KH", "KW", "S", "OH", "OW")


def _pool_shape(N, C, H, W, KH, KW, S, regular=False, ties=False) -> Shape:
    OH, OW = window_output_hw((H, W), (KH, KW), S)
    return Shape(
        dict(N=N, C=C, H=H, W=W, KH=KH, KW=KW, S=S, OH=OH, OW=OW) | ({"ties": 1} if ties else {}), regular
    )


def _pool_regions(a: dict, s: dict) -> dict[str, dict[str, np.ndarray]]:
    """Where pooling mistakes show: the windows whose maximum is tied, the inputs that windows share."""
    if "x" in a:
        windows = _pool_windows(a["x"], s)
        tied = (windows == windows.max(axis=-1, keepdims=True)).sum(axis=-1) > 1  # (N, C, OH, OW)
        name = (
            "at the windows whose largest value is tied (it occurs twice or more): the library takes the "
            "FIRST maximum of the window, scanning kh then kw, as np.argmax"
        )
        return {"y": {name: tied}, "argmax": {name: tied}}
    shared = np.zeros((s["H"], s["W"]), dtype=int)
    for oh in range(s["OH"]):
        for ow in range(s["OW"]):
            shared[oh * s["S"] : oh * s["S"] + s["KH"], ow * s["S"] : ow * s["S"] + s["KW"]] += 1
    name = (
        "at the inputs that two or more windows share (overlapping windows): every window that contains "
        "(h, w) and has its maximum there adds its dy"
    )
    return {"dx": {name: np.broadcast_to(shared >= 2, (s["N"], s["C"], s["H"], s["W"]))}}


def _pool_forward_wrong(a: dict, s: dict) -> list[tuple[str, dict]]:
    y, argmax = _pool_forward(a["x"], s)
    planes = np.arange(s["N"] * s["C"]).reshape(s["N"], s["C"], 1, 1) * (s["H"] * s["W"])
    return [
        (
            "argmax holds the flat index into the whole of x; it should be h * W + w inside the (n, c) plane",
            {"y": y, "argmax": (argmax + planes).astype(np.int32)},
        ),
    ]


MAXPOOL = KernelExercise(
    name="maxpool",
    tasks=(
        KernelTask(
            kernel="maxpool_forward",
            formula="y[n, c, oh, ow] = max over (kh, kw) of x[n, c, oh*S + kh, ow*S + kw]; "
            "argmax = h * W + w of that maximum",
            mapping="one thread per output element: i over N*C*OH*OW, ow = i % OW, oh = i / OW % OH, "
            "(n, c) plane = i / (OW * OH)",
            args=("x", "y", "argmax", *_POOL_SIZES),
            outputs=("y", "argmax"),
            make_inputs=lambda s, rng: {"x": _pool_inputs(s, rng)["x"]},
            reference=lambda a, s: dict(zip(("y", "argmax"), _pool_forward(a["x"], s), strict=True)),
            launch=_launch_1d(lambda s: s["N"] * s["C"] * s["OH"] * s["OW"], 128),
            output_shapes=lambda s: (
                {"y": (s["N"], s["C"], s["OH"], s["OW"])} | {"argmax": (s["N"], s["C"], s["OH"], s["OW"])}
            ),
            wrong_answers=_pool_forward_wrong,
            regions=_pool_regions,
        ),
        KernelTask(
            kernel="maxpool_backward",
            formula="dx[n, c, h, w] = sum of dy[n, c, oh, ow] over the windows whose argmax is h * W + w",
            mapping="one thread per input element: i over N*C*H*W; it loops over the windows containing "
            "(h, w): oh from (h < KH ? 0 : (h - KH) / S + 1) to min(h / S, OH - 1), ow likewise",
            args=("dy", "argmax", "dx", *_POOL_SIZES),
            outputs=("dx",),
            make_inputs=lambda s, rng: {k: v for k, v in _pool_inputs(s, rng).items() if k != "x"},
            reference=lambda a, s: {"dx": _pool_backward(a["dy"], a["argmax"], s)},
            launch=_launch_1d(lambda s: s["N"] * s["C"] * s["H"] * s["W"], 128),
            output_shapes=lambda s: {"dx": (s["N"], s["C"], s["H"], s["W"])},
            wrong_answers=lambda a, s: [
                (
                    "where windows overlap, an input that is the maximum of several windows must get the "
                    "SUM of their gradients (+=), not one of them (=)",
                    {"dx": _pool_backward(a["dy"], a["argmax"], s, accumulate=False)},
                ),
            ],
            regions=_pool_regions,
        ),
    ),
    shapes=(
        _pool_shape(2, 4, 8, 8, 2, 2, 2, regular=True),  # 128 outputs, 512 inputs: whole blocks
        _pool_shape(2, 3, 9, 11, 3, 3, 2),  # overlapping windows
        _pool_shape(1, 2, 7, 6, 2, 3, 1),
        _pool_shape(2, 2, 9, 7, 3, 3, 2, ties=True),  # the tie probe: three values only
    ),
)


# GEMM: C (M, N) = A (M, K) @ B (K, N), row-major.
def _gemm_inputs(s: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    M, N, K = s["M"], s["N"], s["K"]
    return {
        "A": rng.standard_normal((M, K)).astype(np.float32),
        "B": rng.standard_normal((K, N)).astype(np.float32),
    }


def _gemm_wrong(a: dict, s: dict) -> list[tuple[str, dict]]:
    M, N, K = s["M"], s["N"], s["K"]
    A, B = a["A"].astype(np.float64), a["B"].astype(np.float64)
    return [
        (
            "you stored C transposed: C[col * M + row]; C is row-major, C[row * N + col]",
            {"C": (A @ B).T.reshape(M, N)},
        ),
        (
            "you read A as column-major (A[k * M + row]); A is row-major, A[row * K + k]",
            {"C": A.reshape(K, M).T @ B},
        ),
        (
            "you read B as column-major (B[col * K + k]); B is row-major, B[k * N + col]",
            {"C": A @ B.reshape(N, K).T},
        ),
    ]


def _gemm_task(kernel: str, formula: str, mapping: str, edge_mistake: str) -> KernelTask:
    return KernelTask(
        kernel=kernel,
        formula=formula,
        mapping=mapping,
        args=("A", "B", "C", "M", "N", "K"),
        outputs=("C",),
        make_inputs=_gemm_inputs,
        reference=lambda a, s: {"C": a["A"].astype(np.float64) @ a["B"]},
        launch=lambda s: ((cdiv(s["N"], 16), cdiv(s["M"], 16)), (16, 16)),
        output_shapes=lambda s: {"C": (s["M"], s["N"])},
        wrong_answers=_gemm_wrong,
        edge_mistake=edge_mistake,
        # C[m, n] sums A[m, k] B[k, n] over k: (M, N, K)
        terms=lambda a, s: {"C": (a["A"].astype(np.float64)[:, None, :] * a["B"].T[None, :, :], "k")},
    )


_GEMM_SHAPES = (
    Shape({"M": 32, "N": 48, "K": 16}, regular=True),
    Shape({"M": 37, "N": 29, "K": 23}),
    Shape({"M": 20, "N": 45, "K": 7}),
)

GEMM_NAIVE = KernelExercise(
    name="gemm_naive",
    tasks=(
        _gemm_task(
            "gemm_naive",
            "C[row * N + col] = sum over k < K of A[row * K + k] * B[k * N + col]",
            "col = blockIdx.x * blockDim.x + threadIdx.x, row = blockIdx.y * blockDim.y + threadIdx.y; "
            "threads with row >= M or col >= N do nothing",
            "threads outside C (row >= M or col >= N) must do nothing",
        ),
    ),
    shapes=_GEMM_SHAPES,
)

GEMM_TILED = KernelExercise(
    name="gemm_tiled",
    tasks=(
        _gemm_task(
            "gemm_tiled",
            "for each k0 = 0, TILE, ...: A_tile[ty][tx] = A[row, k0 + tx] (0 outside A), "
            "B_tile[ty][tx] = B[k0 + ty, col] (0 outside B); __syncthreads(); "
            "sum += A_tile[ty][k] * B_tile[k][tx] for k < TILE; __syncthreads(); "
            "finally C[row, col] = sum if row < M and col < N",
            "col = blockIdx.x * TILE + threadIdx.x, row = blockIdx.y * TILE + threadIdx.y; every thread "
            "(also those outside C) loads its tile elements and reaches every barrier",
            "the edge tiles need guards: load 0 where row >= M, col >= N or k0 + tx, k0 + ty >= K, and write "
            "C only where row < M and col < N",
        ),
    ),
    shapes=_GEMM_SHAPES,
)


# Register blocking: a block of BLOCK_SIDE x BLOCK_SIDE threads computes a BLOCK_TILE x BLOCK_TILE tile of
# C, thread (tx, ty) the THREAD_TILE x THREAD_TILE elements at rows ty + BLOCK_SIDE * i, columns
# tx + BLOCK_SIDE * j of it (as kernels/gemm_blocked.cu, at half its sizes).
BLOCK_TILE, THREAD_TILE = 32, 4
BLOCK_SIDE = BLOCK_TILE // THREAD_TILE


def _blocked_product(a: dict, s: dict, transposed: str = "") -> np.ndarray:
    """C as the register-blocked kernel computes it, tile by tile (BLOCK_TILE along K too), with the tiles
    zero-padded past the matrices; ``transposed`` "A" (or "B"): the fragments of that matrix read from its
    tile transposed, tile[r][k] where the kernel stores tile[k][r] (inside the tile: it is square)."""
    T, M, N, K = BLOCK_TILE, s["M"], s["N"], s["K"]
    padded_A = np.zeros((cdiv(M, T) * T, cdiv(K, T) * T))
    padded_B = np.zeros((cdiv(K, T) * T, cdiv(N, T) * T))
    padded_A[:M, :K], padded_B[:K, :N] = a["A"], a["B"]
    tiles_A = padded_A.reshape(cdiv(M, T), T, cdiv(K, T), T)  # [row tile, r, k tile, k]
    tiles_B = padded_B.reshape(cdiv(K, T), T, cdiv(N, T), T)  # [k tile, k, column tile, c]
    if transposed == "A":
        tiles_A = tiles_A.transpose(0, 3, 2, 1)
    if transposed == "B":
        tiles_B = tiles_B.transpose(0, 3, 2, 1)
    C = np.einsum("xrzk,zkyc->xryc", tiles_A, tiles_B).reshape(padded_A.shape[0], padded_B.shape[1])
    return C[:M, :N]


def _blocked_wrong(a: dict, s: dict) -> list[tuple[str, dict]]:
    return [
        (
            "you read A's fragment TRANSPOSED, As[ty + BLOCK_SIDE * i][k]: the tile holds "
            "A[row0 + r, k0 + k] at As[k][r], so a[i] = As[k][ty + BLOCK_SIDE * i]",
            {"C": _blocked_product(a, s, transposed="A")},
        ),
        (
            "you read B's fragment TRANSPOSED, Bs[tx + BLOCK_SIDE * j][k]: the tile holds "
            "B[k0 + k, col0 + c] at Bs[k][c], so b[j] = Bs[k][tx + BLOCK_SIDE * j]",
            {"C": _blocked_product(a, s, transposed="B")},
        ),
        *_gemm_wrong(a, s),
    ]


def _blocked_thread_tiles(s: dict) -> kernel_evidence.ThreadTiles:
    """Per element (row, col) of C: block (col, row) // BLOCK_TILE, thread (col, row) % BLOCK_SIDE within its
    tile, and register (i, j) = (row, col) % BLOCK_TILE // BLOCK_SIDE."""
    row, col = np.meshgrid(np.arange(s["M"]), np.arange(s["N"]), indexing="ij")
    inside = np.stack([col, row], axis=-1) % BLOCK_TILE  # (x, y) inside the block's tile
    return kernel_evidence.ThreadTiles(
        block=np.stack([col, row], axis=-1) // BLOCK_TILE,
        thread=inside % BLOCK_SIDE,
        place=inside[..., ::-1] // BLOCK_SIDE,
    )


def _blocked_thread_element(s: dict, block: tuple, thread: tuple) -> int | None:
    """C[row, col] of a thread's acc[0][0] when its whole block lies inside C (its elements need no guard)."""
    row, col = block[1] * BLOCK_TILE + thread[1], block[0] * BLOCK_TILE + thread[0]
    last_row, last_col = row + BLOCK_SIDE * (THREAD_TILE - 1), col + BLOCK_SIDE * (THREAD_TILE - 1)
    return row * s["N"] + col if last_row < s["M"] and last_col < s["N"] else None


GEMM_REGISTER_BLOCKED = KernelExercise(
    name="gemm_register_blocked",
    tasks=(
        replace(
            _gemm_task(
                "gemm_register_blocked",
                "for each k0 = 0, TILE_K, ...: load_tile the tiles As[k][r] = A[row0 + r, k0 + k], "
                "Bs[k][c] = B[k0 + k, col0 + c]; __syncthreads(); for k < TILE_K: a[i] = As[k][ty + "
                "BLOCK_SIDE * i], b[j] = Bs[k][tx + BLOCK_SIDE * j], acc[i][j] += a[i] * b[j]; "
                "__syncthreads(); finally C[row, col] = acc[i][j] where row < M and col < N",
                "row0 = blockIdx.y * BLOCK_TILE, col0 = blockIdx.x * BLOCK_TILE; thread (tx, ty) owns "
                "acc[i][j] = C[row0 + ty + BLOCK_SIDE * i, col0 + tx + BLOCK_SIDE * j], i, j < THREAD_TILE; "
                "every thread (also those outside C) loads its share of the tiles and reaches every barrier",
                "the edge blocks: the tiles hold 0 outside A and B (load_tile's guard), and a thread stores "
                "only those of its elements with row < M and col < N",
            ),
            launch=lambda s: ((cdiv(s["N"], BLOCK_TILE), cdiv(s["M"], BLOCK_TILE)), (BLOCK_SIDE, BLOCK_SIDE)),
            wrong_answers=_blocked_wrong,
            thread_tiles=_blocked_thread_tiles,
            thread_element=_blocked_thread_element,
            conflict_fix="Pad the tile's rows: with TILE_STRIDE = BLOCK_TILE + 1 values per row, the 32 "
            "words a warp stores down a column of As (As[k][r] for k = 0..31) lie in 32 different banks; "
            "with BLOCK_TILE they are 32 apart, all in one bank",
        ),
    ),
    shapes=(
        Shape({"M": 64, "N": 64, "K": 64}, regular=True),  # 2 x 2 blocks, 2 steps along K
        Shape({"M": 37, "N": 45, "K": 40}),
        Shape({"M": 20, "N": 29, "K": 7}),
    ),
)


# Softmax over the rows of x (N, K): one block per row.
def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_inputs(s: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = rng.standard_normal((s["N"], s["K"])) * 3
    x[0] += 100.0  # large logits: exp(x) overflows a float unless the row max is subtracted first
    # A spike of +100 at one column of each other row: a max that misses that column overflows exp there.
    x[np.arange(1, s["N"]), rng.integers(0, s["K"], s["N"] - 1)] += 100.0
    return {"x": x.astype(np.float32)}


def _softmax_wrong(a: dict, s: dict) -> list[tuple[str, dict]]:
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(a["x"])  # float32, as the kernel computes it
        unshifted = e / e.sum(axis=1, keepdims=True)
    not_divided = np.exp(a["x"] - a["x"].max(axis=1, keepdims=True))
    return [
        ("you did not subtract the row max: exp(100) overflows a float to inf", {"y": unshifted}),
        ("you wrote y = exp(x − m) and did not divide it by the row's sum s", {"y": not_divided}),
    ]


# What the softmax kernels (exercises 5 and 8) take and give: x, y (N, K), and the large-logit inputs.
_SOFTMAX_IO = dict(
    args=("x", "y", "N", "K"),
    outputs=("y",),
    make_inputs=_softmax_inputs,  # +100 in row 0 and at one column of each other row
    reference=lambda a, s: {"y": _softmax(a["x"])},
    output_shapes=lambda s: {"y": (s["N"], s["K"])},
)


SOFTMAX_ROWS = KernelExercise(
    name="softmax_rows",
    tasks=(
        KernelTask(
            kernel="softmax_rows",
            formula="y[n, k] = exp(x[n, k] - m[n]) / s[n], m[n] = max_k x[n, k], "
            "s[n] = sum_k exp(x[n, k] - m[n])",
            mapping="block n = blockIdx.x handles row n; thread t handles columns t, t + THREADS, ...; "
            "partial[t], then a tree: for half = THREADS / 2 down to 1, if (t < half) combine partial[t] and "
            "partial[t + half], __syncthreads() after each step; read partial[0], __syncthreads() before "
            "reusing partial[]",
            **_SOFTMAX_IO,
            launch=lambda s: ((s["N"],), (128,)),
            wrong_answers=_softmax_wrong,
            edge_mistake="threads that own no column (K < THREADS, or the last stride) must still take part "
            "in the reduction with a neutral value (a value of the row for the max, 0 for the sum)",
        ),
    ),
    shapes=(Shape({"N": 3, "K": 256}, regular=True), Shape({"N": 4, "K": 300}), Shape({"N": 5, "K": 50})),
)


# im2col: x (N, C, H, W) -> cols_per_image (N, C * KH * KW, OH * OW).
def _im2col(x: np.ndarray, s: dict, swap_kernel_axes: bool = False) -> np.ndarray:
    N, C, KH, KW, S, P, OH, OW = (s[k] for k in ("N", "C", "KH", "KW", "S", "P", "OH", "OW"))
    padded = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (KH, KW), axis=(2, 3))[:, :, ::S, ::S]
    windows = windows[:, :, :OH, :OW]  # (N, C, OH, OW, KH, KW)
    order = (0, 1, 5, 4, 2, 3) if swap_kernel_axes else (0, 1, 4, 5, 2, 3)
    return np.ascontiguousarray(windows.transpose(order)).reshape(N, C * KH * KW, OH * OW)


def _im2col_shape(N, C, H, W, KH, KW, S, P, regular=False) -> Shape:
    OH, OW = window_output_hw((H, W), (KH, KW), S, P)
    return Shape(dict(N=N, C=C, H=H, W=W, KH=KH, KW=KW, S=S, P=P, OH=OH, OW=OW), regular)


def _im2col_wrong(a: dict, s: dict) -> list[tuple[str, dict]]:
    cols = _im2col(a["x"], s)
    return [
        ("you wrote the (OH * OW, C * KH * KW) transpose of each image's matrix; rows are (c, kh, kw), "
         "columns (oh, ow)", {"cols_per_image": cols.transpose(0, 2, 1).reshape(cols.shape)}),
        ("you swapped kh and kw: row (c, kh, kw) is c * KH * KW + kh * KW + kw",
         {"cols_per_image": _im2col(a["x"], s, swap_kernel_axes=True)}),
    ]  # fmt: skip


def _im2col_regions(a: dict, s: dict) -> dict[str, dict[str, np.ndarray]]:
    """The elements of cols_per_image that come from the padding."""
    inside = np.ones((s["N"], s["C"], s["H"], s["W"]), dtype=np.float32)
    padding = _im2col(inside, s) == 0
    name = "at one of the positions in the padding (h or w outside the image): those give 0, reading no x"
    return {"cols_per_image": {name: padding}}


_IM2COL_SIZES = ("N", "C", "H", "W", "KH", "KW", "S", "P", "OH", "OW")

IM2COL = KernelExercise(
    name="im2col",
    tasks=(
        KernelTask(
            kernel="im2col",
            formula="cols_per_image[n, (c, kh, kw), (oh, ow)] = x[n, c, oh*S - P + kh, ow*S - P + kw], "
            "0 where that position is in the padding",
            mapping="one thread per element of cols_per_image: i flat, ow = i % OW, oh = i / OW % OH, "
            "kw = i / (OW*OH) % KW, kh = i / (OW*OH*KW) % KH, (n, c) plane = i / (OW*OH*KW*KH)",
            args=("x", "cols_per_image", *_IM2COL_SIZES),
            outputs=("cols_per_image",),
            make_inputs=lambda s, rng: {
                "x": rng.standard_normal((s["N"], s["C"], s["H"], s["W"])).astype(np.float32)
            },
            reference=lambda a, s: {"cols_per_image": _im2col(a["x"], s)},
            launch=_launch_1d(lambda s: s["N"] * s["C"] * s["KH"] * s["KW"] * s["OH"] * s["OW"], 256),
            output_shapes=lambda s: {
                "cols_per_image": (s["N"], s["C"] * s["KH"] * s["KW"], s["OH"] * s["OW"])
            },
            wrong_answers=_im2col_wrong,
            regions=_im2col_regions,
            edge_mistake="positions in the padding (h or w outside the image) must give 0, without reading x",
        ),
    ),
    shapes=(
        _im2col_shape(2, 2, 8, 8, 2, 2, 2, 0, regular=True),  # 2*2*4*16 = 256 elements, no padding
        _im2col_shape(2, 3, 7, 9, 3, 3, 1, 1),
        _im2col_shape(1, 2, 10, 6, 3, 2, 2, 1),
    ),
)

# Each row of x (N, K) minus its mean, one warp per row: a warp reduction with shuffles.
WARPS = 4  # warps (rows) per block


def _lane_partials(x: np.ndarray) -> np.ndarray:
    """(N, 32): lane l's own sum, over its columns k = l, l + 32, ... (0 for a lane that owns none)."""
    N, K = x.shape
    padded = np.zeros((N, 32 * cdiv(K, 32)))
    padded[:, :K] = x
    return padded.reshape(N, -1, 32).sum(axis=1)


def _warp_columns(s: dict) -> np.ndarray:
    """(N, K): the lane that owns each column, k % 32."""
    return np.broadcast_to(np.arange(s["K"]) % 32, (s["N"], s["K"]))


_NOT_LANE_0 = (
    "at the columns of lanes 1..31 (k % 32 != 0), the lanes that get the row's sum from lane 0 (after the "
    "down-shuffles only lane 0 holds it; the broadcast v = __shfl_sync(FULL_WARP, v, 0), after the last "
    "shuffle, gives it to every lane)"
)


def _warp_thread_element(s: dict, block: tuple, thread: tuple) -> int | None:
    """The first element of y that a thread writes: row blockIdx.x * WARPS + threadIdx.x / 32, column lane."""
    row, lane = block[0] * WARPS + thread[0] // 32, thread[0] % 32
    return row * s["K"] + lane if row < s["N"] and lane < s["K"] else None


WARP_REDUCE = KernelExercise(
    name="warp_reduce",
    tasks=(
        KernelTask(
            kernel="center_rows",
            formula="y[n, k] = x[n, k] - mean[n], mean[n] = (1 / K) * sum over k of x[n, k]",
            mapping="row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32 (a warp past N "
            "returns); lane l sums its columns l, l + 32, ... < K into v (starting at 0); for offset = 16, "
            "8, 4, 2, 1: v += __shfl_down_sync(FULL_WARP, v, offset); then v = __shfl_sync(FULL_WARP, v, 0); "
            "each lane writes y[n, k] = x[n, k] - v / K for its columns",
            args=("x", "y", "N", "K"),
            outputs=("y",),
            # Rows with a mean far from 0, so that a wrong mean shows in every element.
            make_inputs=lambda s, rng: {
                "x": (rng.standard_normal((s["N"], s["K"])) + rng.uniform(1, 3, (s["N"], 1))).astype(
                    np.float32
                )
            },
            reference=lambda a, s: {"y": a["x"] - a["x"].astype(np.float64).mean(axis=1, keepdims=True)},
            launch=lambda s: ((cdiv(s["N"], WARPS),), (32 * WARPS,)),
            output_shapes=lambda s: {"y": (s["N"], s["K"])},
            edge_mistake="a lane that owns no column (lane >= K) reads nothing: it starts at 0, the neutral "
            "value of a sum, and still takes part in every shuffle",
            # y[n, k] is made from the row's sum, the sum of the 32 lanes' partial sums: (N, K, 32).
            terms=lambda a, s: {
                "y": (np.broadcast_to(_lane_partials(a["x"])[:, None, :], (s["N"], s["K"], 32)), "lane")
            },
            summed=lambda a, s, out: {
                "y": (
                    s["K"] * (a["x"].astype(np.float64) - out["y"]),
                    "the row sum each lane used, K * (x[n, k] - y[n, k])",
                )
            },
            regions=lambda a, s: {"y": {_NOT_LANE_0: _warp_columns(s) != 0}},
            thread_element=_warp_thread_element,
        ),
    ),
    shapes=(
        Shape({"N": 8, "K": 64}, regular=True),
        Shape({"N": 6, "K": 50}),  # the last pass: lanes 18..31 own one column fewer
        Shape({"N": 5, "K": 20}),  # K < 32: lanes 20..31 own no column
        Shape({"N": 3, "K": 100}),
    ),
)


# Softmax over the rows of x (N, K) in one pass, one warp per row: each lane's running (m, s), then a
# butterfly of shuffles.
BUTTERFLY = (16, 8, 4, 2, 1)  # the xor offsets after which every lane of a warp holds the row's (m, s)


def _warp_online_softmax(
    x: np.ndarray, offsets=BUTTERFLY, rescale_columns: bool = True, rescale_lanes: bool = True
) -> np.ndarray:
    """y as one warp per row computes it: lane l merges its columns l, l + 32, ... into (m, s), then merges
    in lane l ^ offset's pair for each offset (a partner past lane 31: the lane's own pair, as a shuffle
    gives it back). The merge: m = max(m_a, m_b), s = s_a·e^(m_a − m) + s_b·e^(m_b − m); rescale_columns
    or rescale_lanes False keeps s_a as it is (the mistake) in the lane's walk or in the butterfly."""
    N, K = x.shape
    x = x.astype(np.float64)
    m, s = np.full((N, 32), -np.inf), np.zeros((N, 32))

    def merge(m, s, m_other, s_other, rescale):
        m_new = np.maximum(m, m_other)
        empty = np.isneginf(m_new)  # two empty parts stay (−∞, 0)
        with np.errstate(invalid="ignore"):
            mine = s * np.exp(m - m_new) if rescale else s
            return m_new, np.where(empty, 0.0, mine + s_other * np.exp(m_other - m_new))

    for start in range(0, K, 32):  # one column per lane at a time, as each lane walks its columns
        columns = x[:, start : start + 32]
        width = columns.shape[1]
        m[:, :width], s[:, :width] = merge(m[:, :width], s[:, :width], columns, 1.0, rescale_columns)
    lanes = np.arange(32)
    for offset in offsets:
        partner = np.where(lanes ^ offset < 32, lanes ^ offset, lanes)
        m, s = merge(m, s, m[:, partner], s[:, partner], rescale_lanes)
    owner = np.arange(K) % 32
    return np.exp(x - m[:, owner]) / s[:, owner]


def _butterfly_mistake(offsets: tuple[int, ...]) -> str:
    """What a butterfly with these xor offsets (not 16, 8, 4, 2, 1) leaves undone."""
    if not offsets:
        return "the lanes never merge their (m, s): each lane's y is normalised over its own columns only"
    if offsets[0] >= 32:  # the same y as a column merged in as (x, 2): both are named
        return (
            "y is half the right value in every element: s counts every term twice. A pair merged with "
            f"itself: a first xor offset of {offsets[0]} (lane l ^ {offsets[0]} is past lane 31, and the "
            "shuffle hands each lane its own (m, s) back; start at 16), or a column merged in as (x, 2), not "
            "(x, 1)"
        )
    if offsets[0] < 16:
        group = 2 * offsets[0]
        return (
            f"your first xor offset is {offsets[0]}, not 16: lanes merge only within groups of {group} "
            f"(l and l ^ 16 never meet), so each group's y is normalised over its own columns only"
        )
    return (
        f"your last xor offset is {offsets[-1]}, not 1: lanes l and l ^ 1 never merge, so each lane's y is "
        "normalised over half of the row's lanes"
    )


def _online_softmax_wrong(a: dict, s: dict) -> list[tuple[str, dict]]:
    starts = (32, 16, 8, 4, 2, 1)
    butterflies = [tuple(o for o in starts if o <= first) for first in (32, 8, 4, 2, 1)]
    butterflies += [(16, 8, 4, 2), ()]
    x = a["x"].astype(np.float64)
    with np.errstate(over="ignore"):
        exp_without_max = np.exp(a["x"]) / np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)
    not_rescaled = {  # where the old s is not rescaled: (as each lane walks its columns, in the butterfly)
        "": (False, False),
        " as a lane walks its columns": (False, True),
        " when two lanes merge their pairs": (True, False),
    }
    return [
        *_softmax_wrong(a, s),
        (
            "you wrote y = exp(x) / s: the last pass subtracts the row's max too, y = exp(x − m) / s "
            "(exp(100) overflows a float to inf)",
            {"y": exp_without_max},
        ),
        *(
            (
                f"when m grows, the s you had is not rescaled{where}: s = s·e^(m_old − m_new) + "
                "e^(x − m_new) for a column, s_a·e^(m_a − m) + s_b·e^(m_b − m) for two lanes; without the "
                "factor, the terms added before the max grew stay relative to an older, smaller max, and s "
                "is too large",
                {"y": _warp_online_softmax(a["x"], rescale_columns=columns, rescale_lanes=lanes)},
            )
            for where, (columns, lanes) in not_rescaled.items()
        ),
        *((_butterfly_mistake(o), {"y": _warp_online_softmax(a["x"], o)}) for o in butterflies),
    ]


_PAIR_OFF = (
    "the exponentials exp(x − m) are right relative to each other, and the (m, s) they are divided by is not "
    "the row's: check the merge rule, the columns each lane merges, the pair a column starts as, (x, 1), and "
    "the butterfly"
)


def _online_softmax_groups(s: dict) -> dict[str, dict[str, tuple]]:
    """The elements that share one (m, s): every element (the same mistake everywhere), a row, the columns
    of one lane in a row."""
    rows = np.broadcast_to(np.arange(s["N"])[:, None], (s["N"], s["K"]))
    return {
        "y": {
            "for every element": (np.zeros((s["N"], s["K"]), int), _PAIR_OFF),
            "per row": (rows, _PAIR_OFF),
            "per lane of each row (the lanes of a row end with different pairs)": (
                rows * 32 + _warp_columns(s),
                _PAIR_OFF,
            ),
        }
    }


def _empty_lanes(s: dict) -> str | None:
    """At K < 32, why merging the empty lanes gives NaN."""
    if s["K"] >= 32:
        return None
    return (
        f"lanes {s['K']}..31 own no column (K={s['K']} < 32) and hold the empty part (m, s) = (−∞, 0). "
        "Merging two empty lanes computes m − m_new = (−∞) − (−∞) = NaN, and the later merges carry that "
        "NaN to every lane of the warp: when the merged m is −∞ (both parts empty), keep (−∞, 0)"
    )


ONLINE_SOFTMAX = KernelExercise(
    name="online_softmax",
    tasks=(
        KernelTask(
            kernel="online_softmax",
            formula="y[n, k] = exp(x[n, k] - m[n]) / s[n], m[n] = max_k x[n, k], "
            "s[n] = sum_k exp(x[n, k] - m[n]); merge (m_a, s_a) and (m_b, s_b): m = max(m_a, m_b), "
            "s = s_a * exp(m_a - m) + s_b * exp(m_b - m); a column is (x, 1), the empty part (-inf, 0)",
            mapping="row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32 (a warp past N "
            "returns); lane l merges its columns l, l + 32, ... < K into (m, s), starting from (-inf, 0); "
            "for offset = 16, 8, 4, 2, 1: merge in (__shfl_xor_sync(FULL_WARP, m, offset), the same for s); "
            "each lane writes y[n, k] = exp(x[n, k] - m) / s for its columns",
            **_SOFTMAX_IO,
            launch=lambda s: ((cdiv(s["N"], WARPS),), (32 * WARPS,)),
            wrong_answers=_online_softmax_wrong,
            edge_mistake="a warp whose row is past N returns before it reads (if (row >= N) return), and a "
            "lane reads only its own columns k < K (a lane that owns none, lane >= K, holds the empty part "
            "(-inf, 0) and still takes part in every shuffle)",
            thread_element=_warp_thread_element,
            idle_nan=_empty_lanes,
            factor_groups=_online_softmax_groups,
        ),
    ),
    shapes=(
        Shape({"N": 8, "K": 64}, regular=True),
        Shape({"N": 6, "K": 50}),  # the last pass: lanes 18..31 own one column fewer
        Shape({"N": 5, "K": 12}),  # K < 16: lanes 12..31 own no column, and lanes l, l ^ 16 both none
        Shape({"N": 3, "K": 300}),
    ),
)

EXERCISES = {
    exercise.name: exercise
    for exercise in (
        RELU,
        MAXPOOL,
        GEMM_NAIVE,
        GEMM_TILED,
        SOFTMAX_ROWS,
        IM2COL,
        WARP_REDUCE,
        ONLINE_SOFTMAX,
        GEMM_REGISTER_BLOCKED,
    )
}


# --- not done yet: a kernel whose body holds nothing but comments -------------------------------------------
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_KERNEL_HEAD = re.compile(r"__global__\s+void\s+(\w+)\s*\([^)]*\)\s*\{")


def kernel_bodies(source: str) -> dict[str, str]:
    """``{kernel name: body}`` for every ``__global__`` function of ``source``, comments removed."""
    text = _COMMENTS.sub("", source)
    bodies = {}
    for match in _KERNEL_HEAD.finditer(text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        bodies[match.group(1)] = text[match.end() : end - 1]
    return bodies


# --- running one kernel -------------------------------------------------------------------------------------
def _devices() -> list:
    """``sim``, and ``gpu`` when this machine has one."""
    devices = [get_device("sim")]
    try:
        devices.append(get_device("gpu"))
    except DeviceError:
        pass  # no GPU (or no CuPy) here: the simulator alone is the reference run
    return devices


def _load(device, source: str, filename: str) -> dict:
    if device.name == "gpu":
        from scratchnet import cupy_backend

        return load_kernels(device, source, cupy_backend.load_module)
    from scratchnet import sim

    return load_kernels(
        device, source, lambda text, names: sim.load_module(text, names, filename=filename, checks=SIM_CHECKS)
    )


def _sentinel_like(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.full(shape, SENTINEL_BITS, dtype=np.uint32).view(dtype)


def _never_written(array: np.ndarray) -> np.ndarray:
    return array.view(np.uint32) == SENTINEL_BITS


def _run(
    device,
    kernel,
    task: KernelTask,
    inputs: dict,
    sizes: dict,
    seed: int | None,
    prefill: float | None = None,
) -> dict[str, np.ndarray]:
    """Launch ``kernel`` once with the task's grid and block; the outputs (filled with the sentinel, or
    ``prefill``, before the launch) as host arrays."""
    dtypes = {p.name: p.dtype for p in kernel.signature.params}
    shapes = task.output_shapes(sizes)

    def initial(name):
        if prefill is None:
            return _sentinel_like(shapes[name], dtypes[name])
        return np.full(shapes[name], prefill, dtype=dtypes[name])

    arrays = {name: device.array(value) for name, value in inputs.items()}
    arrays |= {name: device.array(initial(name)) for name in task.outputs}
    args = tuple(arrays[name] if name in arrays else sizes[name] for name in task.args)
    if seed is not None:
        from scratchnet import sim

        sim.set_seed(seed)
    grid, block = task.launch(sizes)
    kernel(grid, block, args)
    device.synchronize()
    return {name: device.to_host(arrays[name]) for name in task.outputs}


def recorded_launch(
    task: KernelTask, source: str, sizes: dict, filename: str = "kernel.cu"
) -> tuple[object, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Launch ``task``'s kernel from ``source`` once on the simulator with the access record on (see
    :mod:`scratchnet.sim.record`), with the task's inputs (seed 0), grid and block, outputs starting at 0:
    (the module, whose ``last_record`` holds the launch's accesses, the inputs, the outputs)."""
    from scratchnet import sim

    inputs = task.make_inputs(sizes, np.random.default_rng(0))
    module = sim.load_module(source, filename=filename, checks="record")
    outputs = {name: np.zeros(shape, np.float32) for name, shape in task.output_shapes(sizes).items()}
    arrays = inputs | outputs
    args = tuple(arrays[name] if name in arrays else np.int32(sizes[name]) for name in task.args)
    grid, block = task.launch(sizes)
    module.get_function(task.kernel)(grid, block, args)
    return module, inputs, outputs


def _bank_conflict(task: KernelTask, source: str, sizes: dict, filename: str) -> str | None:
    """The worst bank conflict of a launch, when there is one: the shared-memory site (array, source line,
    load or store) whose warp access asks the most words of one bank."""
    module, _, _ = recorded_launch(task, source, sizes, filename)
    sites = module.last_record.shared_sites(module.build.library)
    worst = max(sites, key=lambda site: site.conflict_degree, default=None)
    if worst is None or worst.conflict_degree <= 1:
        return None
    return (
        f"right, but with bank conflicts: the {worst.kind}s of {worst.array or 'shared memory'} at "
        f"{worst.line} are {worst.conflict_degree}-way bank conflicts ({worst.wavefronts} passes of the "
        f"shared memory for {worst.warp_accesses} warp accesses, where a conflict-free access takes one). "
        f"{task.conflict_fix}"
    )


# --- comparing and naming the mistake -----------------------------------------------------------------------
def _close(yours: np.ndarray, expected: np.ndarray) -> bool:
    if yours.shape != expected.shape:
        return False
    if yours.dtype.kind in "iu":
        return bool(np.array_equal(yours, expected))
    finite = np.abs(expected[np.isfinite(expected)])  # an inf of a known mistake must not make atol inf
    scale = max(1.0, float(finite.max(initial=0.0)))
    return bool(np.allclose(yours, expected, rtol=1e-4, atol=1e-5 * scale, equal_nan=True))


def _fmt_index(name: str, index: tuple) -> str:
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


def _launch_diagnosis(error: KernelLaunchError, task: KernelTask, inputs: dict, sizes: dict) -> str:
    """Name the mistake behind a failed launch, from the simulator's checks (memcheck, racecheck, initcheck,
    synccheck: the thread, block and source line of the access) or the launch error's message."""
    where = f"thread {error.thread} of block {error.block}" if isinstance(error, SimCheckError) else ""
    # A thread that has an output element to compute went outside an array: its index is wrong, not its
    # guard; the probe's regions may say which kind of element it computes.
    output = task.outputs[0]
    element = None
    if isinstance(error, MemcheckError) and error.block is not None and task.thread_element is not None:
        element = task.thread_element(sizes, error.block, error.thread)
    elif isinstance(error, MemcheckError) and error.block is not None:
        element = kernel_evidence.thread_element(
            task.output_shapes(sizes)[output], task.launch(sizes)[1], error.block, error.thread
        )
    regions = task.regions(inputs, sizes).get(output, {}) if element is not None else {}
    region = next((name for name, mask in regions.items() if mask.flat[element]), None)
    if isinstance(error, RacecheckError) and "shared" not in str(error.buffer):
        mistake = (
            f"two threads touch the same element of {error.buffer}: thread {error.thread} ({error.access} at "
            f"{error.line}) and thread {error.other_thread} ({error.other_access} at {error.other_line}) of "
            f"block {error.block}. Each output element belongs to one thread: the index expression maps two "
            "threads to one element (a barrier cannot fix this)"
        )
    elif (
        isinstance(error, RacecheckError)
        and error.access == error.other_access == "write"
        and (error.line == error.other_line)
    ):
        mistake = (
            f"two threads store to the same element of {error.buffer}: thread {error.thread} and thread "
            f"{error.other_thread} of block {error.block}, both at {error.line}. Between two barriers one "
            "thread stores each element: the index of that store maps two threads to one element"
        )
    elif isinstance(error, RacecheckError):
        mistake = (
            f"a race on {error.buffer}: thread {error.thread} ({error.access} at {error.line}) and thread "
            f"{error.other_thread} ({error.other_access} at {error.other_line}) of block {error.block} touch "
            "the same element with no __syncthreads() between them. A __syncthreads() is missing or misplaced"
        )
        block_dim = task.launch(sizes)[1]
        warp = kernel_evidence.warp_of(block_dim, error.thread)
        if error.other_thread is not None and warp == kernel_evidence.warp_of(block_dim, error.other_thread):
            mistake += (
                f" (both threads are lanes of warp {warp}: where only the lanes of one warp share the "
                "memory, __syncwarp() is the barrier they need, or a shuffle, __shfl_*_sync, passes the "
                "value with no shared memory)"
            )
    elif isinstance(error, InitcheckError):
        mistake = (
            f"reads memory never written: {where} read {error.buffer} at {error.line} before any thread of "
            "the block had written it: a __syncthreads() is missing or misplaced between the stores and this "
            "read, or some threads skip their store"
        )
    elif region:
        mistake = (
            f"{where} went outside {error.buffer} at {error.line}, computing the '{output}' element {region}"
        )
    elif element is not None:
        mistake = (
            f"an index past the end of {error.buffer or 'a shared array'}: {where}, which has an output "
            "element to compute, "
            f"{'read' if error.access == 'read' else 'wrote'} outside it at {error.line}. Its guard is not "
            "the cause: an index or a loop bound at that line runs too far (check each against the sizes "
            "of that array)"
        )
    elif isinstance(error, MemcheckError) and error.access == "read":
        mistake = (
            f"missing bounds guard: {where} read outside {error.buffer} at {error.line}; {task.edge_mistake}"
        )
    elif isinstance(error, MemcheckError) or "wrote past the end" in str(error):
        one_dimensional = len(task.launch(sizes)[1]) == 1
        mistake = (
            f"missing bounds guard: {where or 'a thread'} wrote outside an array"
            + (f" at {error.line}" if isinstance(error, MemcheckError) else "")
            + (
                " (the last block has more threads than elements left; guard with if (i < count))"
                if one_dimensional
                else f"; {task.edge_mistake}"
            )
        )
    elif isinstance(error, SynccheckError) and kernel_evidence.warp_mask_mistake(str(error)):
        mistake = kernel_evidence.warp_mask_mistake(str(error))
    elif isinstance(error, SynccheckError):
        mistake = (
            "a __syncthreads() that not every thread of the block reaches (a return before it, or a barrier "
            "inside an if): every thread must reach every barrier"
        )
    elif isinstance(error, KernelCrashError) and "memory fault" in str(error):
        # The launch ran with memcheck (SIM_CHECKS), which sees every access to the arrays and to shared
        # memory: a fault it did not see lies in the thread's own memory, its stack.
        mistake = (
            f"{where} crashed with a memory fault that memcheck, which checks every access to the arrays and "
            "to shared memory, did not see: the thread went outside one of its own local arrays (an array "
            "declared in the kernel: an index or a loop bound past its size, such as <= where < belongs), "
            "which overwrites its stack; or its local arrays are too large for it"
        )
    elif "declared const" in str(error):
        mistake = "the kernel wrote to one of its inputs"
    else:
        mistake = "the launch failed"
    return f"{mistake}\n    simulator: {error}"


def _unwritten(task: KernelTask, results: list[dict], sizes: dict) -> str | None:
    for name in task.outputs:
        never = np.logical_or.reduce([_never_written(result[name]) for result in results])
        if never.any():
            grid, block = task.launch(sizes)
            first = np.unravel_index(int(np.argmax(never)), never.shape)
            return (
                f"outputs never written: {int(never.sum())} of {never.size} elements of '{name}' (the first: "
                f"{_fmt_index(name, first)}) were written by no thread of the launch grid {grid}, "
                f"block {block}. Every output element needs a thread that writes it: check the thread "
                "mapping (blockIdx, blockDim, threadIdx) and that the bounds guard is not stricter than the "
                "size"
            )
    return None


def _worst_element(task: KernelTask, yours: dict, expected: dict) -> str:
    for name in task.outputs:
        if _close(yours[name], expected[name]):
            continue
        if yours[name].shape != expected[name].shape:
            return f"'{name}' has shape {yours[name].shape}, expected {expected[name].shape}"
        error = np.abs(yours[name].astype(np.float64) - expected[name])
        error[np.isnan(error)] = np.inf
        worst = np.unravel_index(int(np.argmax(error)), error.shape)
        wrong = int((~np.isclose(yours[name], expected[name], rtol=1e-4, atol=1e-5)).sum())
        return (
            f"wrong values: {wrong} of {error.size} elements of '{name}' differ; the worst, "
            f"{_fmt_index(name, worst)}: yours {yours[name][worst]:.6g}, expected {expected[name][worst]:.6g}"
        )
    return "wrong values"


def _check_shape(
    device, kernel, task: KernelTask, inputs: dict, sizes: dict
) -> tuple[str, bool, dict | None] | None:
    """``None`` when the kernel is right for these sizes, else (the mistake, whether it is only "wrong
    values" with no more specific name, the outputs of the first run when it ran to the end)."""
    expected = task.reference(inputs, sizes)
    seeds = SEEDS if device.name == "sim" else (None,)
    results = []
    for seed in seeds:
        try:
            results.append(_run(device, kernel, task, inputs, sizes, seed))
        except KernelLaunchError as error:
            return _launch_diagnosis(error, task, inputs, sizes), False, None
    unwritten = _unwritten(task, results, sizes)
    if unwritten:
        # Run again with a finite start value: `+=` onto an unset output shows as start + right answer.
        prefilled = _run(device, kernel, task, inputs, sizes, seeds[0], prefill=kernel_evidence.PREFILL)
        for name in task.outputs:
            relation = kernel_evidence.prefilled_relation(prefilled[name], expected[name], name)
            if relation and prefilled[name].dtype.kind == "f":
                return relation, False, results[0]
        return unwritten, False, results[0]
    right = [all(_close(result[n], expected[n]) for n in task.outputs) for result in results]
    changes = any(
        not np.array_equal(results[0][n], result[n], equal_nan=True)
        for result in results[1:]
        for n in task.outputs
    )
    if changes:
        orders = ", ".join(
            f"seed {seed}: {'right' if ok else 'wrong'}" for seed, ok in zip(seeds, right, strict=True)
        )
        # The runs had racecheck and initcheck on (SIM_CHECKS), which name every access to shared memory or
        # an array that another thread makes with no barrier between: what else changes with the order is
        # what no check sees, a thread's own variable read before it is set.
        return (
            f"the result changes with the order in which the threads run ({orders}; each order gives other "
            "numbers), yet no two threads touched one element of shared memory or of an array without a "
            "barrier between them (racecheck) and none read shared memory no thread had written (initcheck): "
            "a variable of the thread (a register: a sum, an element of a local array) is read before it is "
            "set, and holds whatever was there before. Set each one before its first read (a loop that "
            "starts late leaves its first elements unset)",
            False,
            results[0],
        )
    if all(right):
        return None
    for mistake, answer in task.wrong_answers(inputs, sizes):
        if all(_close(results[0][n], answer[n]) for n in answer):
            return f"wrong index mapping or math: {mistake}", False, results[0]
    evidence = _evidence(task, inputs, sizes, results[0], expected)
    if evidence:
        return evidence, False, results[0]
    return _worst_element(task, results[0], expected), True, results[0]


def _evidence(task: KernelTask, inputs: dict, sizes: dict, yours: dict, expected: dict) -> str | None:
    """A relation (the terms of a sum) or a region of the probe that explains every wrong element."""
    terms, regions = task.terms(inputs, sizes), task.regions(inputs, sizes)
    summed = task.summed(inputs, sizes, yours)
    for name in task.outputs:
        if _close(yours[name], expected[name]):
            continue
        found = None
        if name in terms:
            # The sum behind the output (the output itself, or what it was made from): which terms it holds.
            sums, what = summed.get(name, (yours[name], ""))
            found = kernel_evidence.partial_sum_relation(sums.astype(np.float64), *terms[name])
            found = found or kernel_evidence.repeated_terms_relation(sums.astype(np.float64), *terms[name])
            if found and what:
                found = f"{what}: {found}"
        if task.thread_tiles is not None:
            found = found or kernel_evidence.thread_tile_relation(
                yours[name], expected[name], name, task.thread_tiles(sizes)
            )
        groups = task.factor_groups(sizes).get(name, {})
        found = found or kernel_evidence.group_factor_relation(yours[name], expected[name], groups)
        wrong = ~np.isclose(yours[name], expected[name], rtol=1e-4, atol=1e-5, equal_nan=True)
        if not np.all(np.isfinite(yours[name])) and np.all(np.isfinite(expected[name])):
            found = found or diagnosis.nonfinite(yours[name], regions.get(name, {}))
        found = found or diagnosis.localise(wrong, regions.get(name, {})) or diagnosis.edge_slice(wrong, name)
        found = found or diagnosis.wrong_values(yours[name], expected[name], inputs)
        if found:
            return f"'{name}': {found}"
    return None


def _sum_factor(task: KernelTask, inputs: dict, sizes: dict, yours: dict) -> tuple[str, str, float] | None:
    """(output, what its sum is, c) for the first output whose sum is c × the right one, c not 1."""
    summed = task.summed(inputs, sizes, yours)
    for name, (terms, _) in task.terms(inputs, sizes).items():
        sums, what = summed.get(name, (yours[name], ""))
        c = kernel_evidence.sum_factor(sums.astype(np.float64), terms)
        if c is not None and not np.isclose(c, 1.0, rtol=1e-4):
            return name, what, c
    return None


def _normaliser(device, kernel, task: KernelTask, exercise, inputs: dict, sizes: dict, yours: dict):
    """A sum off by a factor that follows a size, seen across every shape of the exercise (the check stops
    at the first wrong one): the division is wrong, not the terms (kernel_evidence.normaliser_relation)."""
    first = _sum_factor(task, inputs, sizes, yours)
    if first is None:
        return None
    name, what, _ = first
    factors = []
    for shape in exercise.shapes:
        shape_inputs = task.make_inputs(shape.sizes, np.random.default_rng(0))
        try:
            run = _run(
                device, kernel, task, shape_inputs, shape.sizes, SEEDS[0] if device.name == "sim" else None
            )
        except KernelLaunchError:
            return None
        found = _sum_factor(task, shape_inputs, shape.sizes, run)
        if found is None or found[0] != name:
            return None
        factors.append((shape.sizes, found[2]))
    relation = kernel_evidence.normaliser_relation(factors)
    return relation and f"'{name}': " + (f"{what}: " if what else "") + relation


def _idle_nan(task: KernelTask, shape: Shape, inputs: dict, yours: dict, passed: list[Shape]) -> str | None:
    """NaN or infinity where the right answer is finite, only at sizes where some threads own no element:
    right at every earlier shape where each thread owns one, so the neutral value is where it comes from."""
    why = task.idle_nan(shape.sizes)
    busy = [str(done) for done in passed if task.idle_nan(done.sizes) is None]
    if why is None or not busy:
        return None
    expected = task.reference(inputs, shape.sizes)
    for name in task.outputs:
        if np.all(np.isfinite(expected[name])) and not np.all(np.isfinite(yours[name])):
            return (
                f"'{name}' holds NaN or infinity ({int((~np.isfinite(yours[name])).sum())} of "
                f"{yours[name].size} elements) at these sizes only, where {why} (right at {'; '.join(busy)}, "
                "where every thread owns an element)"
            )
    return None


def _check_task(
    report: KernelReport, devices: list, kernels: dict, task: KernelTask, exercise, source: str, filename: str
) -> None:
    rng = np.random.default_rng(0)
    regular_passed = False
    passed: list[Shape] = []
    for shape in exercise.shapes:
        inputs = task.make_inputs(shape.sizes, rng)
        for device in devices:
            kernel = kernels[device.name][task.kernel]
            found = _check_shape(device, kernel, task, inputs, shape.sizes)
            if found is None:
                continue
            mistake, unnamed, yours = found
            if yours is not None:
                better = _idle_nan(task, shape, inputs, yours, passed)
                better = better or _normaliser(device, kernel, task, exercise, inputs, shape.sizes, yours)
                mistake, unnamed = (better, False) if better else (mistake, unnamed)
            if unnamed and regular_passed and not shape.regular:
                mistake = (
                    f"right when the sizes are multiples of the block, wrong for {shape}: "
                    f"{task.edge_mistake}\n    {mistake}"
                )
            report.fail(
                f"{task.kernel}, {shape}, on {device.name}: {mistake}",
                hint=f"{task.kernel}: {task.formula}; thread mapping: {task.mapping}",
            )
            return
        regular_passed = regular_passed or shape.regular
        passed.append(shape)
    early = kernel_evidence.access_before_guard(kernel_bodies(source)[task.kernel])
    if task.conflict_fix is not None:
        early = early or _bank_conflict(task, source, exercise.shapes[0].sizes, filename)
    if early:
        report.fail(
            f"{task.kernel}: {early}", hint=f"{task.kernel}: {task.formula}; thread mapping: {task.mapping}"
        )
        return
    runs = f"{len(SEEDS)} thread orders on sim" + (", and on gpu" if len(devices) > 1 else "")
    report.ok(f"{task.kernel} ({len(exercise.shapes)} shapes, {runs})")


# --- the entry points ---------------------------------------------------------------------------------------
def exercise_for(path: str | Path) -> KernelExercise:
    """The exercise a file checks, by its name without the number: ``01_relu.cu`` -> ``relu``."""
    name = re.sub(r"^\d+_", "", Path(path).stem)
    if name not in EXERCISES:
        raise ValueError(f"no kernel exercise named {name!r}; there are: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def check_source(
    exercise: str | KernelExercise, source: str, hint: bool = False, filename: str = "kernel.cu"
) -> KernelReport:
    """Check a kernel source against an exercise (by name, e.g. ``"relu"``)."""
    if isinstance(exercise, str):
        exercise = exercise_for(exercise)
    report = KernelReport(exercise.name, hint=hint)
    bodies = kernel_bodies(source)
    todo = []
    for task in exercise.tasks:
        if task.kernel not in bodies:
            report.fail(f"{task.kernel}: missing; the file has no __global__ function of that name")
        elif not bodies[task.kernel].strip():
            todo.append(task)
            report.fail(f"{task.kernel}: not done yet (its body is still the TODO)")
    if len(todo) == len(exercise.tasks):
        report.not_done = True
        report.lines = [f"  (write the bodies marked // TODO in {filename})"]
        return report
    try:
        compiled = compile_source(source, [], arch="sm_80", filename=filename)
    except NvrtcError as error:
        if "not installed" in str(error):
            raise
        report.fail(f"does not compile for a GPU (NVRTC, sm_80):\n{error}")
        return report
    if compiled.log:
        report.say(f"  NVRTC warnings:\n{compiled.log}")
    from scratchnet.sim import CompileError, SimCompilerWarning

    devices = _devices()
    try:
        with warnings.catch_warnings():  # the host compiler's warnings repeat NVRTC's, shown above
            warnings.simplefilter("ignore", SimCompilerWarning)
            kernels = {device.name: _load(device, source, filename) for device in devices}
    except CompileError as error:
        report.fail(f"NVRTC accepts it, but the simulator's C++ compiler does not:\n{error}")
        return report
    for task in exercise.tasks:
        if task not in todo and task.kernel in bodies:
            _check_task(report, devices, kernels, task, exercise, source, filename)
    return report


def check_kernel_file(path: str | Path, hint: bool = False) -> KernelReport:
    """Check the kernel exercise file ``path`` (its exercise named by the file name)."""
    path = Path(path)
    exercise = exercise_for(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return check_source(exercise, path.read_text(), hint=hint, filename=path.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scratchnet.kernel_exercises",
        description="Check a CUDA kernel exercise (lessons/exercises/kernels/*.cu) on the simulator.",
    )
    parser.add_argument("path", help="the .cu file, e.g. lessons/exercises/kernels/01_relu.cu")
    parser.add_argument("--hint", action="store_true", help="also print the formula and the thread mapping")
    args = parser.parse_args(argv)
    try:
        report = check_kernel_file(args.path, hint=args.hint)
    except (FileNotFoundError, ValueError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
