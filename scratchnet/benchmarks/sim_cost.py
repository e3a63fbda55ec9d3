"""What the simulator costs: ``python -m scratchnet.bench sim``.

Three figures, each the median of ``--repeats`` timed launches after one untimed launch (which also builds
the module), for each count of OS threads in ``--threads`` (``SCRATCHNET_SIM_THREADS``):

* per thread: a kernel without barriers, one thread per element (``y[i] += 1``), divided by its threads;
* per thread per ``__syncthreads()``: a kernel whose threads meet at 2 barriers per round for 20 rounds, less
  the barrier-free cost, divided by threads times barriers;
* per launch: a launch of one block of 32 threads, which is almost all Python and argument checking.

Wall-clock time: with more OS threads than free cores the figures get worse, not better.

``--checks`` measures instead what the checks cost (``checks="all"`` against an unchecked build, both on one
OS thread, the best of ``--repeats`` launches after one untimed launch with the build cached): the tiled GEMM
of ``kernels/gemm.cu`` at 256 x 256 x 256, and a vector add of 2^20 floats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from scratchnet import sim
from scratchnet._cuda import sources

SOURCE = r"""
extern "C" __global__ void add_one(float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += 1.0f;
}

// Each round every thread writes its slot, waits, reads its neighbour's, and waits again.
extern "C" __global__ void rounds_of_barriers(float* y, int rounds) {
    __shared__ float slots[1024];
    float sum = 0.0f;
    for (int r = 0; r < rounds; ++r) {
        slots[threadIdx.x] = (float)r;
        __syncthreads();
        sum += slots[(threadIdx.x + 1) % blockDim.x];
        __syncthreads();
    }
    y[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}
"""
BLOCK = 256
ROUNDS = 20

VECTOR_ADD = r"""
extern "C" __global__ void vector_add(const float* a, const float* b, float* c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}
"""
GEMM_SIZE, TILE = 256, 16  # TILE: kernels/common.cuh's
VECTOR_SIZE = 2**20
# What checks="all" may cost at most, as a multiple of an unchecked launch (docs/simulator.md).
CHECK_COST_TARGETS = {"gemm": 20.0, "vector_add": 40.0}


def _timings(launch, repeats: int) -> list[float]:
    """Seconds of ``repeats`` launches, after one untimed launch (which builds the module, warms caches)."""
    launch()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        launch()
        times.append(time.perf_counter() - start)
    return times


def _median_seconds(launch, repeats: int) -> float:
    return statistics.median(_timings(launch, repeats))


def measure(threads: int, blocks: int, repeats: int) -> dict[str, float]:
    """Nanoseconds per thread and per thread per barrier, microseconds per launch, on ``threads`` OS
    threads."""
    os.environ["SCRATCHNET_SIM_THREADS"] = str(threads)
    module = sim.load_module(SOURCE, [], checks=(), debug=False)
    add_one, barriers = module.get_function("add_one"), module.get_function("rounds_of_barriers")
    n = blocks * BLOCK
    y = np.zeros(n, np.float32)
    plain = _median_seconds(lambda: add_one((blocks,), (BLOCK,), (y, np.int64(n))), repeats)
    with_barriers = _median_seconds(lambda: barriers((blocks,), (BLOCK,), (y, np.int32(ROUNDS))), repeats)
    small = np.zeros(32, np.float32)
    launch = _median_seconds(lambda: add_one((1,), (32,), (small, np.int64(32))), 10 * repeats)
    return {
        "threads": threads,
        "ns_per_thread": plain / n * 1e9,
        "ns_per_thread_per_barrier": max(0.0, with_barriers - plain) / (n * 2 * ROUNDS) * 1e9,
        "us_per_launch": launch * 1e6,
    }


def _check_cost_launches(checks: str):
    """The two launches of the check-cost benchmark in a build with ``checks``: {name: launch}."""
    rng = np.random.default_rng(0)
    gemm = sim.load_module(
        (sources.kernel_dir() / "gemm.cu").read_text(), ["gemm_tiled<float>"], "gemm.cu", checks, False
    ).get_function("gemm_tiled<float>")
    n = GEMM_SIZE
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.zeros((n, n), np.float32)
    add = sim.load_module(VECTOR_ADD, [], "vector_add.cu", checks, False).get_function("vector_add")
    x, y = (rng.standard_normal(VECTOR_SIZE).astype(np.float32) for _ in range(2))
    z = np.zeros(VECTOR_SIZE, np.float32)
    sizes = (np.int32(n), np.int32(n), np.int32(n), np.int32(0), np.int32(0))
    return {
        "gemm": lambda: gemm((n // TILE, n // TILE, 1), (TILE, TILE), (a, b, c, *sizes)),
        "vector_add": lambda: add((VECTOR_SIZE // BLOCK,), (BLOCK,), (x, y, z, np.int32(VECTOR_SIZE))),
    }


def measure_check_cost(repeats: int) -> dict[str, tuple[float, float]]:
    """Seconds per launch unchecked and with ``checks="all"``, on one OS thread: {kernel: (plain, all)}."""
    os.environ["SCRATCHNET_SIM_THREADS"] = "1"
    plain, checked = _check_cost_launches(""), _check_cost_launches("all")
    return {
        name: (min(_timings(plain[name], repeats)), min(_timings(checked[name], repeats))) for name in plain
    }


def print_check_cost(rows: dict[str, tuple[float, float]], repeats: int) -> None:
    labels = {"gemm": f"gemm_tiled<float> {GEMM_SIZE}^3", "vector_add": "vector add of 2^20 floats"}
    print(f'cost of checks="all", 1 OS thread, best of {repeats} launches after one untimed launch')
    print(f"{'kernel':<28}  {'unchecked':>10}  {'all':>10}  {'ratio':>7}  target")
    for name, (plain, checked) in rows.items():
        ratio = checked / plain
        print(
            f"{labels[name]:<28}  {plain * 1e3:>7.1f} ms  {checked * 1e3:>7.1f} ms  {ratio:>6.1f}x  "
            f"<= {CHECK_COST_TARGETS[name]:.0f}x"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scratchnet.bench sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="comma-separated OS thread counts")
    p.add_argument("--blocks", type=int, default=1000, help="blocks of 256 threads per launch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--checks",
        action="store_true",
        help='measure what checks="all" costs against an unchecked build (a tiled GEMM, a vector add)',
    )
    args = p.parse_args(argv)
    try:
        counts = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not counts or min(counts) < 1 or args.blocks < 1 or args.repeats < 1:
        p.error("need --threads >= 1, --blocks >= 1 and --repeats >= 1")
    previous = os.environ.get("SCRATCHNET_SIM_THREADS")
    try:
        if args.checks:
            print_check_cost(measure_check_cost(args.repeats), args.repeats)
            return 0
        rows = [measure(threads, args.blocks, args.repeats) for threads in counts]
    finally:
        if previous is None:
            os.environ.pop("SCRATCHNET_SIM_THREADS", None)
        else:
            os.environ["SCRATCHNET_SIM_THREADS"] = previous
    print(f"simulator overhead, {args.blocks} blocks of {BLOCK} threads, median of {args.repeats} launches")
    print(f"{'OS threads':>10}  {'per thread':>11}  {'per thread per barrier':>22}  {'per launch':>10}")
    for row in rows:
        print(
            f"{row['threads']:>10}  {row['ns_per_thread']:>8.1f} ns  "
            f"{row['ns_per_thread_per_barrier']:>19.1f} ns  {row['us_per_launch']:>7.0f} µs"
        )
    return 0
