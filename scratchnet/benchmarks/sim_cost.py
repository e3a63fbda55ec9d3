"""What the simulator costs: ``python -m scratchnet.bench sim``.

Three figures, each the median of ``--repeats`` timed launches after one untimed launch (which also builds
the module), for each count of OS threads in ``--threads`` (``SCRATCHNET_SIM_THREADS``):

* per thread: a kernel without barriers, one thread per element (``y[i] += 1``), divided by its threads;
* per thread per ``__syncthreads()``: a kernel whose threads meet at 2 barriers per round for 20 rounds, less
  the barrier-free cost, divided by threads times barriers;
* per launch: a launch of one block of 32 threads, which is almost all Python and argument checking.

Wall-clock time: with more OS threads than free cores the figures get worse, not better.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from scratchnet import sim

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


def _median_seconds(launch, repeats: int) -> float:
    launch()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        launch()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scratchnet.bench sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="comma-separated OS thread counts")
    p.add_argument("--blocks", type=int, default=1000, help="blocks of 256 threads per launch")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    try:
        counts = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not counts or min(counts) < 1 or args.blocks < 1 or args.repeats < 1:
        p.error("need --threads >= 1, --blocks >= 1 and --repeats >= 1")
    previous = os.environ.get("SCRATCHNET_SIM_THREADS")
    try:
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
