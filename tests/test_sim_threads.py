"""The simulator runs independent blocks on several OS threads (``SCRATCHNET_SIM_THREADS``).

Blocks really overlap; each block's thread order depends only on the seed and the block index, so results
do not depend on the number of OS threads; global atomics stay exact; ``printf`` lines stay whole; and when
several blocks fail, the error reported is the same on every run.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from scratchnet import sim
from scratchnet.errors import KernelLaunchError

pytestmark = pytest.mark.sim

SOURCE = r"""
#include <pthread.h>
#include <time.h>

// Blocks 0 and 1 each raise their flag and wait (up to `seconds`) for the other's: both see it only when
// the two blocks run at the same time. Each block also records the OS thread that ran it.
extern "C" __global__ void handshake(int* flags, int* saw_other, unsigned long long* os_thread, int seconds) {
    if (threadIdx.x != 0) return;
    int me = blockIdx.x, other = 1 - blockIdx.x;
    os_thread[me] = (unsigned long long)pthread_self();
    atomicExch(&flags[me], 1);
    time_t start = time(nullptr);
    while (atomicAdd(&flags[other], 0) == 0 && time(nullptr) - start <= seconds) {
    }
    saw_other[me] = atomicAdd(&flags[other], 0);
}

// Every thread of a block writes its index to one shared variable with no barrier: the last thread the
// scheduler runs wins, so `out[block]` shows the block's thread order.
extern "C" __global__ void last_thread_per_block(int* out) {
    __shared__ int last;
    last = threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = last;
}

// A histogram of `values` into `bins` bins by global atomics, with a grid-stride loop.
extern "C" __global__ void histogram(const int* values, int n, unsigned int* counts, int bins) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        atomicAdd(&counts[values[i] % bins], 1u);
}

extern "C" __global__ void shout(int repeat) {
    printf("block %04d thread %02d says %.*s\n", (int)blockIdx.x, (int)threadIdx.x, repeat,
           "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
}

// Every third block traps.
extern "C" __global__ void some_blocks_trap(float* y) {
    if (blockIdx.x % 3 == 1) __trap();
    y[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}
"""


@pytest.fixture(scope="module")
def module():
    return sim.load_module(SOURCE, filename="test_sim_threads.cu")


def _handshake(module, seconds: int):
    flags, saw_other = np.zeros(2, np.int32), np.zeros(2, np.int32)
    os_thread = np.zeros(2, np.uint64)
    module.get_function("handshake")((2,), (32,), (flags, saw_other, os_thread, np.int32(seconds)))
    return saw_other, os_thread


def test_blocks_run_at_the_same_time_on_two_threads(module, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", "2")
    saw_other, os_thread = _handshake(module, seconds=60)
    assert saw_other.tolist() == [1, 1], "each block should see the other's flag while it waits"
    assert os_thread[0] != os_thread[1], "the two blocks should run on two OS threads"


def test_one_thread_runs_blocks_one_after_the_other(module, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", "1")
    saw_other, os_thread = _handshake(module, seconds=1)
    assert sorted(saw_other.tolist()) == [0, 1], "the first block should give up waiting; the second sees it"
    assert os_thread[0] == os_thread[1]


def _last_threads(module, seed: int) -> np.ndarray:
    sim.set_seed(seed)
    out = np.zeros(64, np.int32)
    module.get_function("last_thread_per_block")((64,), (128,), (out,))
    return out


def test_results_do_not_depend_on_the_number_of_threads(module, monkeypatch):
    runs = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("SCRATCHNET_SIM_THREADS", threads)
        runs[threads] = [_last_threads(module, seed) for seed in (3, 4)]
    np.testing.assert_array_equal(runs["1"][0], runs["2"][0])
    np.testing.assert_array_equal(runs["1"][1], runs["2"][1])
    assert len(set(runs["1"][0].tolist())) > 1, "blocks should have different thread orders"
    assert not np.array_equal(runs["1"][0], runs["1"][1]), "another seed should give other orders"


def test_global_atomics_are_exact_under_concurrency(module, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", "2")
    values = np.random.default_rng(0).integers(0, 1000, 200_000).astype(np.int32)
    for _ in range(3):
        counts = np.zeros(7, np.uint32)
        module.get_function("histogram")((256,), (128,), (values, np.int32(values.size), counts, np.int32(7)))
        np.testing.assert_array_equal(counts, np.bincount(values % 7, minlength=7))


def test_printf_lines_stay_whole(module, monkeypatch, capfd):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", "2")
    module.get_function("shout")((64,), (32,), (np.int32(78),))
    lines = capfd.readouterr().out.splitlines()
    whole = re.compile(r"block \d{4} thread \d{2} says (abcdefghijklmnopqrstuvwxyz){3}")
    assert len(lines) == 64 * 32
    broken = [line for line in lines if not whole.fullmatch(line)]
    assert not broken, broken[:3]
    assert len(set(lines)) == 64 * 32


def test_the_error_of_several_failing_blocks_is_deterministic(module, monkeypatch):
    def message(threads: str) -> str:
        monkeypatch.setenv("SCRATCHNET_SIM_THREADS", threads)
        sim.set_seed(11)
        with pytest.raises(KernelLaunchError, match="__trap") as caught:
            module.get_function("some_blocks_trap")((60,), (64,), (np.zeros(60 * 64, np.float32),))
        return str(caught.value)

    serial = message("1")
    assert all(message("2") == serial for _ in range(5))


@pytest.mark.parametrize("text", ["0", "two", "-1", "1000"])
def test_bad_thread_count_is_a_clear_error(module, monkeypatch, text):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", text)
    with pytest.raises(ValueError, match="SCRATCHNET_SIM_THREADS must be an integer from 1 to 256"):
        _last_threads(module, seed=0)
