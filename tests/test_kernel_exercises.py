"""The kernel exercise checker: every solution passes, every stub is "not done yet", and each planted
mistake (a mutant made from a solution) gets its own diagnosis."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scratchnet._cuda import nvrtc
from scratchnet.kernel_exercises import EXERCISE_DIR, EXERCISES, check_kernel_file, check_source, main

pytestmark = [
    pytest.mark.sim,
    pytest.mark.slow,  # the lessons' exercises: each test compiles with NVRTC and the simulator
    pytest.mark.skipif(nvrtc.find_library() is None, reason='NVRTC missing: pip install -e ".[dev]"'),
]

STUBS = sorted(EXERCISE_DIR.glob("*.cu"))
SOLUTIONS = sorted((EXERCISE_DIR / "solutions").glob("*.cu"))


def _solution(name: str) -> str:
    (path,) = [p for p in SOLUTIONS if p.stem.endswith(name)]
    return path.read_text()


def _mutant(name: str, *edits: tuple[str, str]) -> str:
    """The solution of exercise ``name`` with each (old, new) edit made once; each old text must exist."""
    source = _solution(name)
    for old, new in edits:
        assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in the {name} solution"
        source = source.replace(old, new)
    return source


def _without_line(name: str, text: str, which: int) -> str:
    """The solution with the ``which``-th line whose stripped text is ``text`` deleted."""
    lines = _solution(name).splitlines(keepends=True)
    matches = [i for i, line in enumerate(lines) if line.strip().startswith(text)]
    del lines[matches[which]]
    return "".join(lines)


def test_every_exercise_has_a_stub_and_a_solution():
    assert [p.name for p in STUBS] == [p.name for p in SOLUTIONS]
    assert len(STUBS) == len(EXERCISES) == 9


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_passes(path):
    report = check_kernel_file(path)
    assert report.passed, str(report)
    assert str(report).startswith(f"{path.stem[3:]}: passed")
    assert str(report).count("  ok: ") == len(EXERCISES[path.stem[3:]].tasks)


@pytest.mark.parametrize("path", STUBS, ids=lambda p: p.stem)
def test_untouched_stub_is_not_done_yet(path):
    report = check_kernel_file(path)
    assert not report.passed and report.not_done
    assert str(report).startswith(f"{path.stem[3:]}: not done yet")


def test_one_kernel_done_checks_it_and_reports_the_other_not_done():
    stub = (EXERCISE_DIR / "01_relu.cu").read_text()
    forward = _solution("relu").split("extern")[1].split("\n}\n")[0] + "\n}\n"
    start = stub.index('extern "C" __global__ void relu_forward')
    end = stub.index("\n}\n", start) + 3
    report = check_source("relu", stub[:start] + "extern" + forward + stub[end:])
    assert not report.passed and not report.not_done
    assert "ok: relu_forward" in str(report) and "wrong: relu_backward: not done yet" in str(report)


MUTANTS = {
    "relu-missing-guard": (
        "relu",
        lambda: _mutant("relu", ("if (i < count) y[i]", "y[i]")),
        "missing bounds guard",
    ),
    "relu-ignores-blockIdx": (
        "relu",
        lambda: _mutant(
            "relu",
            (
                "i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n    if (i < count) y",
                "i = threadIdx.x;\n    if (i < count) y",
            ),
        ),
        "outputs never written",
    ),
    "relu-mask-from-dy": (
        "relu",
        lambda: _mutant("relu", ("x[i] > 0.0f ? dy[i]", "dy[i] > 0.0f ? dy[i]")),
        "you masked with dy > 0",
    ),
    "maxpool-argmax-global": (
        "maxpool",
        lambda: _mutant("maxpool", ("argmax[i] = best;", "argmax[i] = (int)(x_plane - x) + best;")),
        "flat index into the whole of x",
    ),
    "maxpool-assign-not-sum": (
        "maxpool",
        lambda: _mutant("maxpool", ("sum += dy[o];", "sum = dy[o];")),
        "SUM of their gradients",
    ),
    "maxpool-zero-only-written-where-max": (
        "maxpool",
        lambda: _mutant(
            "maxpool",
            (
                "if (argmax[o] == h * W + w) sum += dy[o];",
                "if (argmax[o] == h * W + w) dx[i] = sum += dy[o];",
            ),
            ("    dx[i] = sum;\n", ""),
        ),
        "outputs never written",
    ),
    "gemm-naive-stores-transposed": (
        "gemm_naive",
        lambda: _mutant("gemm_naive", ("    C[row * N + col] = sum;", "    C[col * M + row] = sum;")),
        "stored C transposed",
    ),
    "gemm-naive-reads-B-column-major": (
        "gemm_naive",
        lambda: _mutant("gemm_naive", ("B[k * N + col];", "B[col * K + k];")),
        "read B as column-major",
    ),
    "gemm-naive-rows-along-x": (
        "gemm_naive",
        lambda: _mutant(
            "gemm_naive",
            (
                "int col = blockIdx.x * blockDim.x + threadIdx.x",
                "int col = blockIdx.y * blockDim.y + threadIdx.y",
            ),
            (
                "int row = blockIdx.y * blockDim.y + threadIdx.y",
                "int row = blockIdx.x * blockDim.x + threadIdx.x",
            ),
        ),
        "outputs never written",
    ),
    "gemm-tiled-no-barrier-after-loads": (
        "gemm_tiled",
        lambda: _without_line("gemm_tiled", "__syncthreads();", 0),
        "__syncthreads() is missing or misplaced",
    ),
    "gemm-tiled-no-barrier-before-next-loads": (
        "gemm_tiled",
        lambda: _without_line("gemm_tiled", "__syncthreads();", 1),
        "__syncthreads() is missing or misplaced",
    ),
    "gemm-tiled-barrier-before-the-loads": (
        "gemm_tiled",
        lambda: _mutant(
            "gemm_tiled",
            ("        A_tile[ty][tx] =", "        __syncthreads();\n        A_tile[ty][tx] ="),
            ("        __syncthreads();  // both tiles are complete before anyone reads them\n", ""),
        ),
        "__syncthreads() is missing or misplaced",
    ),
    "gemm-tiled-barrier-split-across-if-else": (  # two barrier sites: GPUs from sm_70 run it, CUDA leaves
        "gemm_tiled",  # it undefined; the checker's "strict" check refuses it (a warning elsewhere)
        lambda: _mutant(
            "gemm_tiled",
            (
                "        __syncthreads();  // both tiles are complete before anyone reads them\n",
                "        if (ty < TILE / 2) {\n            __syncthreads();\n        } else {\n"
                "            __syncthreads();\n        }\n",
            ),
        ),
        "a __syncthreads() that not every thread of the block reaches",
    ),
    "gemm-tiled-no-zero-padding": (
        "gemm_tiled",
        lambda: _mutant(
            "gemm_tiled",
            ("row < M && k0 + tx < K ? A[row * K + k0 + tx] : 0.0f", "A[row * K + k0 + tx]"),
            ("k0 + ty < K && col < N ? B[(k0 + ty) * N + col] : 0.0f", "B[(k0 + ty) * N + col]"),
        ),
        "missing bounds guard: thread",
    ),
    "softmax-store-skipped": (
        "softmax_rows",
        lambda: _mutant(
            "softmax_rows", ("    partial[t] = row_max;", "    if (t < K) partial[t] = row_max;")
        ),
        "reads memory never written",
    ),
    "gemm-tiled-early-return": (
        "gemm_tiled",
        lambda: _mutant(
            "gemm_tiled",
            ("    float sum = 0.0f;\n", "    if (row >= M || col >= N) return;\n    float sum = 0.0f;\n"),
        ),
        "not every thread of the block reaches",
    ),
    "gemm-tiled-unguarded-store": (
        "gemm_tiled",
        lambda: _mutant(
            "gemm_tiled",
            ("    if (row < M && col < N) C[row * N + col] = sum;", "    C[row * N + col] = sum;"),
        ),
        "missing bounds guard",
    ),
    "softmax-no-barrier-in-tree": (
        "softmax_rows",
        lambda: _mutant(
            "softmax_rows",
            (
                "partial[t] += partial[t + half];\n        __syncthreads();",
                "partial[t] += partial[t + half];",
            ),
        ),
        "__syncthreads() is missing or misplaced",
    ),
    "softmax-max-reused-too-early": (
        "softmax_rows",
        lambda: _mutant(
            "softmax_rows", ("    row_max = partial[0];\n    __syncthreads();", "    row_max = partial[0];")
        ),
        "__syncthreads() is missing or misplaced",
    ),
    "softmax-no-max-subtracted": (
        "softmax_rows",
        lambda: _mutant(
            "softmax_rows",
            ("row_sum += expf(x_row[k] - row_max);", "row_sum += expf(x_row[k]);"),
            ("y_row[k] = expf(x_row[k] - row_max) / row_sum;", "y_row[k] = expf(x_row[k]) / row_sum;"),
        ),
        "did not subtract the row max",
    ),
    "im2col-no-padding-check": (
        "im2col",
        lambda: _mutant(
            "im2col",
            ("    const bool inside = h >= 0 && h < H && w >= 0 && w < W;\n", ""),
            ("inside ? x[(plane * H + h) * W + w] : 0.0f", "x[(plane * H + h) * W + w]"),
        ),
        "positions in the padding",
    ),
    "im2col-kernel-axes-swapped": (
        "im2col",
        lambda: _mutant(
            "im2col",
            (
                "const int kw = (int)(i / ((long long)OW * OH) % KW);",
                "const int kw = (int)(i / ((long long)OW * OH * KH) % KW);",
            ),
            (
                "const int kh = (int)(i / ((long long)OW * OH * KW) % KH);",
                "const int kh = (int)(i / ((long long)OW * OH) % KH);",
            ),
        ),
        "swapped kh and kw",
    ),
    "compile-error": (
        "relu",
        lambda: _mutant("relu", ("y[i] = x[i] > 0.0f ? x[i] : 0.0f;", "y[i] = x[i] > 0.0f ? x[i] : 0.0f")),
        "does not compile for a GPU",
    ),
}

# Learners' mistakes the checker used to misname or miss: each is named by evidence (a second run with the
# output pre-filled, the thread that went out of bounds having an element to compute, the terms of a sum, the
# regions of a probe: shared windows, ties; the source order of an access and its guard).
MUTANTS |= {
    "gemm-accumulates-into-C": (
        "gemm_naive",
        lambda: _mutant(
            "gemm_naive",
            ("float sum = 0.0f;\n", ""),
            ("sum += A", "C[row * N + col] += A"),
            ("    C[row * N + col] = sum;\n", ""),
        ),
        "adds to 'C' without setting it first",
    ),
    "gemm-k-loop-to-N": (
        "gemm_naive",
        lambda: _mutant("gemm_naive", ("k < K;", "k < N;")),
        "which has an output element to compute, read outside it",
    ),
    "tiled-sum-reset-per-tile": (
        "gemm_tiled",
        lambda: _mutant(
            "gemm_tiled", ("        A_tile[ty][tx] =", "        sum = 0.0f;\n        A_tile[ty][tx] =")
        ),
        "yours is the sum over k = 16..22 only",
    ),
    "maxpool-backward-one-window": (
        "maxpool",
        lambda: _mutant(
            "maxpool",
            (
                "const int oh_first = h < KH ? 0 : (h - KH) / S + 1;",
                "const int oh_first = min(h / S, OH - 1);",
            ),
            (
                "const int ow_first = w < KW ? 0 : (w - KW) / S + 1;",
                "const int ow_first = min(w / S, OW - 1);",
            ),
        ),
        "wrong only at the inputs that two or more windows share",
    ),
    "im2col-plane-without-KH": (
        "im2col",
        lambda: _mutant("im2col", ("i / ((long long)OW * OH * KW * KH)", "i / ((long long)OW * OH * KW)")),
        "an index past the end of 'x'",
    ),
    "maxpool-last-maximum-on-ties": (
        "maxpool",
        lambda: _mutant("maxpool", ("if (x_plane[at] > x_plane[best])", "if (x_plane[at] >= x_plane[best])")),
        "wrong only at the windows whose largest value is tied",
    ),
    "relu-reads-before-its-guard": (
        "relu",
        lambda: _mutant(
            "relu",
            (
                "if (i < count) y[i] = x[i] > 0.0f ? x[i] : 0.0f;",
                "const float v = x[i];\n    if (i < count) y[i] = v > 0.0f ? v : 0.0f;",
            ),
        ),
        "touches x[i] BEFORE its bounds guard on i",
    ),
    "gemm-two-threads-one-element": (  # found by the mutant benchmark: told "a __syncthreads() is missing"
        "gemm_naive",
        lambda: _mutant("gemm_naive", ("C[row * N + col] = sum;", "C[row + N + col] = sum;")),
        "the index expression maps two threads to one element",
    ),
}
# Found misdiagnosed in the judged sample of named mutants (docs/benchmarks/checker-sample.txt).
MUTANTS |= {
    "softmax-max-tree-one-step-short": (
        "softmax_rows",
        lambda: _mutant(
            "softmax_rows",
            (  # the first of the two tree loops, the max's
                "half > 0; half /= 2) {\n        if (t < half) partial[t] = fmaxf",
                "half > 1; half /= 2) {\n        if (t < half) partial[t] = fmaxf",
            ),
        ),
        "NaN or infinity",
    ),
    "im2col-padding-added": (
        "im2col",
        lambda: _mutant("im2col", ("const int h = oh * S - P + kh;", "const int h = oh * S + P + kh;")),
        "the index that reads x points elsewhere",
    ),
}

# The warp reduction (exercise 7): the shuffle tree's offsets, its mask, the broadcast, the neutral value. The
# offsets are named by the terms of the row sum the output was made from (which lanes' sums, how often).
MUTANTS |= {
    "warp-first-offset-32": (
        "warp_reduce",
        lambda: _mutant("warp_reduce", ("int offset = 16;", "int offset = 32;")),
        "yours = 2 × the right sum: every term over lane = 0..31 is counted 2 times",
    ),
    "warp-first-offset-8": (
        "warp_reduce",
        lambda: _mutant("warp_reduce", ("int offset = 16;", "int offset = 8;")),
        "yours is the sum over lane = 0..15 only, of lane = 0..31",
    ),
    "warp-mask-leaves-out-lanes": (
        "warp_reduce",
        lambda: _mutant("warp_reduce", ("#define FULL_WARP 0xffffffffu", "#define FULL_WARP 0x0000ffffu")),
        "a wrong warp mask: lane 16 (thread (16,0,0)) calls the warp function at kernel.cu:31 with mask "
        "0x0000ffff, which leaves lane 16 out",
    ),
    "warp-no-broadcast": (
        "warp_reduce",
        lambda: _mutant("warp_reduce", ("    v = __shfl_sync(FULL_WARP, v, 0);", "")),
        "wrong only at the columns of lanes 1..31 (k % 32 != 0), the lanes that get the row's sum from "
        "lane 0",
    ),
    "warp-lanes-past-K-add-garbage": (
        "warp_reduce",
        lambda: _mutant(
            "warp_reduce",
            ("float v = 0.0f;", "float v = x_row[lane];"),
            ("for (int k = lane; k < K; k += 32) v +=", "for (int k = lane + 32; k < K; k += 32) v +="),
        ),
        "read outside 'x' (const float*, 100 elements) at kernel.cu:29; a lane that owns no column "
        "(lane >= K) reads nothing: it starts at 0, the neutral value",
    ),
    "warp-lanes-past-K-skip-the-shuffles": (
        "warp_reduce",
        lambda: _mutant(
            "warp_reduce", ("    float v = 0.0f;", "    if (lane >= K) return;\n    float v = 0.0f;")
        ),
        "its mask 0xffffffff at kernel.cu:32 names lane 20 (thread (20,0,0)), which has returned instead",
    ),
}

# The register-blocked GEMM (exercise 9): the barriers around the tiles, the padding that keeps the tile
# stores conflict-free (a right result, refused on the access record), the fragments read from the tiles,
# and each thread's block of registers stored to the wrong places (named from the thread mapping).
_BARRIER_AFTER_LOADS = "        __syncthreads();  // both tiles are complete before anyone reads them\n"
_BARRIER_BEFORE_OVERWRITE = (
    "        __syncthreads();  // everyone has read the tiles before the next copy overwrites them\n"
)
MUTANTS |= {
    "register-blocked-no-barrier-after-loads": (
        "gemm_register_blocked",
        lambda: _mutant("gemm_register_blocked", (_BARRIER_AFTER_LOADS, "")),
        "read static shared memory at kernel.cu:74 before any thread of the block had written it: a "
        "__syncthreads() is missing or misplaced",
    ),
    "register-blocked-no-barrier-before-overwrite": (
        "gemm_register_blocked",
        lambda: _mutant("gemm_register_blocked", (_BARRIER_BEFORE_OVERWRITE, "")),
        "touch the same element with no __syncthreads() between them. A __syncthreads() is missing",
    ),
    "register-blocked-unpadded-tiles": (
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("#define TILE_STRIDE (BLOCK_TILE + 1) ", "#define TILE_STRIDE BLOCK_TILE       "),
        ),
        "right, but with bank conflicts: the stores of 'As' in gemm_register_blocked at kernel.cu:55 are "
        "32-way bank conflicts (8192 passes of the shared memory for 256 warp accesses",
    ),
    "register-blocked-A-fragment-transposed": (
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("a[i] = As[k][ty + BLOCK_SIDE * i];", "a[i] = As[ty + BLOCK_SIDE * i][k];"),
        ),
        "you read A's fragment TRANSPOSED, As[ty + BLOCK_SIDE * i][k]",
    ),
    "register-blocked-B-fragment-transposed": (
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("b[j] = Bs[k][tx + BLOCK_SIDE * j];", "b[j] = Bs[tx + BLOCK_SIDE * j][k];"),
        ),
        "you read B's fragment TRANSPOSED, Bs[tx + BLOCK_SIDE * j][k]",
    ),
    "register-blocked-block-stored-transposed": (
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked", ("C[row * N + col] = acc[i][j];", "C[row * N + col] = acc[j][i];")
        ),
        "each thread's 4×4 block of 'C' is stored TRANSPOSED: acc[i][j] went to the place of acc[j][i] "
        "(C[0, 8], the place of acc[0][1] of thread (0, 0) of block (0, 0), holds its acc[1][0])",
    ),
    "register-blocked-block-rows-reversed": (
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("C[row * N + col] = acc[i][j];", "C[row * N + col] = acc[THREAD_TILE - 1 - i][j];"),
        ),
        "each thread's 4×4 block of 'C' holds the right sums in the wrong places (C[0, 0], the place of "
        "acc[0][0] of thread (0, 0) of block (0, 0), holds its acc[3][0])",
    ),
    "register-blocked-block-stored-consecutive": (  # rows ty * 4 + i: the mapping of another kernel
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("const int row = row0 + ty + BLOCK_SIDE * i;", "const int row = row0 + ty * THREAD_TILE + i;"),
            ("const int col = col0 + tx + BLOCK_SIDE * j;", "const int col = col0 + tx * THREAD_TILE + j;"),
        ),
        "each block's tile of 'C' holds its values in other threads' places (C[0, 8], the place of "
        "acc[0][1] of thread (0, 0) of block (0, 0), holds acc[0][0] of thread (2, 0))",
    ),
    "register-blocked-unguarded-store": (
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("if (row < M && col < N) C[row * N + col] = acc[i][j];", "C[row * N + col] = acc[i][j];"),
        ),
        "missing bounds guard: thread (2, 4, 0) of block (0, 1, 0) wrote outside an array at kernel.cu:87; "
        "the edge blocks: the tiles hold 0 outside A and B (load_tile's guard), and a thread stores only "
        "those of its elements with row < M and col < N",
    ),
}

# Found misdiagnosed by the mutant generator on exercise 9 (the runs before and after:
# docs/benchmarks/checker-mutants-register-blocked.txt): two were told "a __syncthreads() is missing",
# though racecheck and initcheck had seen no race and no unwritten read; the third "the launch failed".
MUTANTS |= {
    "register-blocked-two-threads-one-tile-element": (  # t collides: two threads copy one tile element
        "gemm_register_blocked",
        lambda: _mutant("gemm_register_blocked", ("t = ty * BLOCK_SIDE + tx;", "t = ty + BLOCK_SIDE + tx;")),
        "two threads store to the same element of static shared memory: thread (5, 7, 0) and thread "
        "(7, 5, 0) of block (1, 0, 0), both at kernel.cu:55",
    ),
    "register-blocked-fragment-element-unset": (  # a[0] is never set: it holds what was there before
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            ("for (int i = 0; i < THREAD_TILE; ++i) a[i] =", "for (int i = 1; i < THREAD_TILE; ++i) a[i] ="),
        ),
        "a variable of the thread (a register: a sum, an element of a local array) is read before it is set",
    ),
    "register-blocked-outer-product-past-the-fragment": (  # a[4] and acc[4][j]: past the local arrays
        "gemm_register_blocked",
        lambda: _mutant(
            "gemm_register_blocked",
            (
                "            for (int i = 0; i < THREAD_TILE; ++i)\n                for",
                "            for (int i = 0; i <= THREAD_TILE; ++i)\n                for",
            ),
        ),
        "crashed with a memory fault that memcheck, which checks every access to the arrays and to shared "
        "memory, did not see: the thread went outside one of its own local arrays",
    ),
}

# A factor that changes with K is a wrong divisor, not a repeated term: told apart across the shapes.
MUTANTS["warp-mean-divides-by-32"] = (
    "warp_reduce",
    lambda: _mutant("warp_reduce", ("const float mean = v / K;", "const float mean = v / 32;")),
    "yours = (K / 32) × the right sum (2 at K=64, 1.5625 at K=50, 0.625 at K=20, 3.125 at K=100): a factor "
    "that follows K is no repeated term. The sum is right and its normaliser is not: you divide by 32, not "
    "by K",
)

# The online softmax (exercise 8): the rescale of the running sum, the butterfly's offsets, the NaN of two
# empty lanes, the mask, the empty lanes' part in the shuffles, the max in the last pass.
MUTANTS |= {
    "online-no-rescale": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("s = s * exp_of(m - m_new) + s_other", "s = s + s_other")),
        "when m grows, the s you had is not rescaled",
    ),
    "online-no-rescale-in-the-walk": (  # the walk over the columns written out, the butterfly by merge()
        "online_softmax",
        lambda: _mutant(
            "online_softmax",
            (
                "for (int k = lane; k < K; k += 32) merge(m, s, x_row[k], 1.0f);",
                "for (int k = lane; k < K; k += 32) {\n        const float m_new = fmaxf(m, x_row[k]);\n"
                "        s = s + exp_of(x_row[k] - m_new);\n        m = m_new;\n    }",
            ),
        ),
        "when m grows, the s you had is not rescaled as a lane walks its columns",
    ),
    "online-first-offset-8": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("int offset = 16;", "int offset = 8;")),
        "your first xor offset is 8, not 16: lanes merge only within groups of 16",
    ),
    "online-first-offset-32": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("int offset = 16;", "int offset = 32;")),
        "a first xor offset of 32 (lane l ^ 32 is past lane 31",
    ),
    "online-last-offset-2": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("offset > 0; offset /= 2", "offset > 1; offset /= 2")),
        "your last xor offset is 2, not 1",
    ),
    "online-no-butterfly": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("int offset = 16;", "int offset = 0;")),
        "the lanes never merge their (m, s)",
    ),
    "online-no-guard-for-empty-lanes": (
        "online_softmax",
        lambda: _without_line("online_softmax", "if (m_new == minus_infinity<float>()) return;", 0),
        "at these sizes only, where lanes 12..31 own no column (K=12 < 32) and hold the empty part (m, s) = "
        "(−∞, 0). Merging two empty lanes computes m − m_new = (−∞) − (−∞) = NaN",
    ),
    "online-mask-leaves-out-lanes": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("#define FULL_WARP 0xffffffffu", "#define FULL_WARP 0x7fffffffu")),
        "a wrong warp mask: lane 31 (thread (31,0,0)) calls the warp function at kernel.cu:51 with mask "
        "0x7fffffff, which leaves lane 31 out",
    ),
    "online-empty-lanes-skip-the-shuffles": (
        "online_softmax",
        lambda: _mutant(
            "online_softmax",
            ("    float m = minus_infinity", "    if (lane >= K) return;\n    float m = minus_infinity"),
        ),
        "names lane 12 (thread (12,0,0)), which has returned instead",
    ),
    "online-exchange-through-shared-memory-one-syncwarp-short": (
        "online_softmax",
        lambda: _mutant(
            "online_softmax",
            (
                "    for (int offset = 16;",
                "    __shared__ float m_lanes[32 * WARPS], s_lanes[32 * WARPS];\n    for (int offset = 16;",
            ),
            (  # one __syncwarp() after the stores; none before the next step's stores overwrite them
                "const float m_other = __shfl_xor_sync(FULL_WARP, m, offset);",
                "m_lanes[threadIdx.x] = m, s_lanes[threadIdx.x] = s;\n        __syncwarp();\n"
                "        const float m_other = m_lanes[threadIdx.x ^ offset];",
            ),
            (
                "const float s_other = __shfl_xor_sync(FULL_WARP, s, offset);",
                "const float s_other = s_lanes[threadIdx.x ^ offset];",
            ),
        ),
        "where only the lanes of one warp share the memory, __syncwarp() is the barrier they need",
    ),
    "online-no-max-subtracted": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("exp_of(x_row[k] - m) / s", "exp_of(x_row[k]) / s")),
        "you wrote y = exp(x) / s: the last pass subtracts the row's max too",
    ),
}

# A softmax that never divides by s (found by reading lesson 10 as a learner; it was told the pair (m, s) is
# off, though the kernel uses none): both softmax exercises share the known wrong answer.
MUTANTS |= {
    "online-not-divided-by-s": (
        "online_softmax",
        lambda: _mutant("online_softmax", ("exp_of(x_row[k] - m) / s", "exp_of(x_row[k] - m)")),
        "you wrote y = exp(x − m) and did not divide it by the row's sum s",
    ),
    "softmax-not-divided-by-s": (
        "softmax_rows",
        lambda: _mutant("softmax_rows", ("expf(x_row[k] - row_max) / row_sum;", "expf(x_row[k] - row_max);")),
        "you wrote y = exp(x − m) and did not divide it by the row's sum s",
    ),
}

WRONG_CAUSES = {  # what each of these was told before, a cause that is not theirs
    "warp-mean-divides-by-32": "counted 2 times",
    "warp-first-offset-32": "wrong values:",
    "warp-first-offset-8": "wrong values:",
    "warp-mask-leaves-out-lanes": "__syncthreads()",
    "warp-lanes-past-K-skip-the-shuffles": "__syncthreads()",
    "softmax-max-tree-one-step-short": "neutral value",
    "im2col-padding-added": "multiples of the block",
    "gemm-accumulates-into-C": "outputs never written",
    "gemm-k-loop-to-N": "missing bounds guard",
    "tiled-sum-reset-per-tile": "edge tiles need guards",
    "maxpool-backward-one-window": "bounds guard",
    "im2col-plane-without-KH": "positions in the padding",
    "gemm-two-threads-one-element": "__syncthreads() is missing",
    "register-blocked-unguarded-store": "Its guard is not the cause",
    "register-blocked-two-threads-one-tile-element": "__syncthreads() is missing",
    "register-blocked-fragment-element-unset": "__syncthreads() is missing",
    "register-blocked-outer-product-past-the-fragment": "the launch failed",
}


@pytest.mark.parametrize("mutant", WRONG_CAUSES, ids=str)
def test_a_misnamed_mistake_is_no_longer_misnamed(mutant):
    exercise, make_source, _ = MUTANTS[mutant]
    assert WRONG_CAUSES[mutant] not in str(check_source(exercise, make_source()))


@pytest.mark.parametrize("mutant", MUTANTS, ids=str)
def test_planted_mistake_is_named(mutant):
    exercise, make_source, diagnosis = MUTANTS[mutant]
    report = check_source(exercise, make_source(), hint=True)
    assert not report.passed, str(report)
    assert diagnosis in str(report), str(report)
    assert "hint: " in str(report) or "does not compile" in str(report)


def test_formula_only_with_hint():
    source = _mutant("relu", ("x[i] > 0.0f ? dy[i]", "dy[i] > 0.0f ? dy[i]"))
    assert "hint:" not in str(check_source("relu", source))
    assert "hint: relu_backward: dx[i] = dy[i] if x[i] > 0 else 0" in str(
        check_source("relu", source, hint=True)
    )


def test_compile_error_shows_the_nvrtc_log():
    report = check_source("relu", MUTANTS["compile-error"][1](), filename="01_relu.cu")
    assert 'error: expected a ";"' in str(report) and "01_relu.cu(" in str(report)


def test_command_line(tmp_path, capsys):
    assert main([str(SOLUTIONS[0])]) == 0
    assert main([str(STUBS[0]), "--hint"]) == 1
    assert "not done yet" in capsys.readouterr().out
    assert main([str(tmp_path / "01_relu.cu")]) == 2
    assert main([str(tmp_path / "99_nothing.cu")]) == 2
    assert "error: no kernel exercise named 'nothing'" in capsys.readouterr().err


def test_module_runs_as_a_script():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchnet.kernel_exercises",
            str(Path("lessons/exercises/kernels/01_relu.cu")),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 1 and "relu: not done yet" in done.stdout, done.stderr


def test_notebook_check_of_a_kernel_source(capsys):
    from scratchnet.exercises import check

    stub = (EXERCISE_DIR / "01_relu.cu").read_text()
    assert not check("relu-kernel", stub)
    assert "relu-kernel: not done yet" in capsys.readouterr().out
    assert check("relu-kernel", _solution("relu"))
    assert "relu-kernel: passed" in capsys.readouterr().out
    assert not check("relu-kernel", _mutant("relu", ("if (i < count) y[i]", "y[i]")), hint=True)
    output = capsys.readouterr().out
    assert (
        "relu-kernel: wrong" in output and "missing bounds guard" in output and "hint: relu_forward" in output
    )
    assert not check("relu-kernel", lambda: None)
    assert "pass the kernel source as a string" in capsys.readouterr().out


def test_a_race_names_both_threads_and_their_source_lines():
    report = str(check_source("gemm_tiled", _without_line("gemm_tiled", "__syncthreads();", 1)))
    assert "a race on static shared memory: thread (" in report and ") and thread (" in report, report
    assert report.count("kernel.cu:") >= 2, report


@pytest.mark.skipif(shutil.which("clang-format") is None, reason="clang-format missing (the dev extra)")
def test_exercise_files_follow_the_kernel_style():
    done = subprocess.run(
        ["clang-format", "--dry-run", "--Werror", *map(str, STUBS + SOLUTIONS)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# Correct but unusual kernels (a grid-stride loop, a transposed shared tile, warp shuffles), file -> exercise.
UNUSUAL = {
    "relu_grid_stride.cu": "relu",
    "gemm_tiled_transposed_tile.cu": "gemm_tiled",
    "softmax_rows_warp_shuffle.cu": "softmax_rows",
}


@pytest.mark.parametrize("file", sorted(UNUSUAL))
def test_an_unusual_correct_kernel_passes(file):
    source = (Path(__file__).parent / "unusual_solutions" / file).read_text()
    report = check_source(UNUSUAL[file], source)
    assert report.passed, str(report)
