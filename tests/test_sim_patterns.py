"""Common CUDA patterns on the simulator: warp shuffles and votes, cooperative groups, shared atomics, a
scan, a bitonic sort, a float4 GEMM, the atomic overloads and intrinsics; each against NumPy, and each
kernel file also compiled by NVRTC for sm_80 with a clean log (so the test kernels are real CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc
from scratchnet.errors import KernelLaunchError
from tests.nvrtc_headers import cuda_include_options

pytestmark = pytest.mark.sim

PATTERNS = Path(__file__).resolve().parent / "sim_kernels" / "patterns.cu"
rng = np.random.default_rng(7)


@pytest.fixture(scope="module")
def module():
    return sim.load_module(PATTERNS.read_text(), ["gemm_float4<8>"], filename=PATTERNS.name)


def test_warp_shuffle_sum(module):
    x = rng.standard_normal(1000).astype(np.float32)
    total = np.zeros(1, np.float32)
    module.get_function("warp_shuffle_sum")((4,), (256,), (x, total, np.int32(x.size)))
    np.testing.assert_allclose(total[0], x.sum(), rtol=1e-4)


def test_cooperative_groups_tile_reduce(module):
    x = rng.standard_normal(512).astype(np.float32)
    sums, maxima, minima = (np.zeros(64, np.float32) for _ in range(3))
    module.get_function("tile_reduce")((4,), (128,), (x, sums, maxima, minima))
    tiles = x.reshape(64, 8)
    np.testing.assert_allclose(sums, tiles.sum(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(maxima, tiles.max(axis=1))
    np.testing.assert_array_equal(minima, tiles.min(axis=1))


def test_warp_votes_and_partial_mask_shuffle(module):
    x = rng.standard_normal(128).astype(np.float32)
    x[64:96] = np.abs(x[64:96]) + 1  # one warp all positive
    positive, any_all = np.zeros(4, np.int32), np.zeros(8, np.int32)
    half_sums = np.zeros(4, np.float32)
    module.get_function("warp_votes")((1,), (128,), (x, positive, any_all, half_sums))
    warps = x.reshape(4, 32)
    np.testing.assert_array_equal(positive, (warps > 0).sum(axis=1))
    np.testing.assert_array_equal(
        any_all.reshape(4, 2), np.stack([(warps > 0).any(1), (warps > 0).all(1)], 1)
    )
    np.testing.assert_allclose(half_sums, warps[:, :16].sum(axis=1), rtol=1e-5, atol=1e-6)


def test_histogram_with_shared_atomics(module):
    values = rng.integers(0, 256, 5000).astype(np.uint8)
    bins = np.zeros(256, np.uint32)
    module.get_function("histogram")((3,), (128,), (values, bins, np.int32(values.size)))
    np.testing.assert_array_equal(bins, np.bincount(values, minlength=256))


def test_block_scan(module):
    x = rng.integers(-50, 50, 3 * 256).astype(np.int32)
    y = np.zeros_like(x)
    module.get_function("block_scan")((3,), (256,), (x, y))
    np.testing.assert_array_equal(y, np.cumsum(x.reshape(3, 256), axis=1).ravel())


def test_bitonic_sort(module):
    x = rng.standard_normal(2 * 512).astype(np.float32)
    expected = np.sort(x.reshape(2, 512), axis=1).ravel()
    module.get_function("bitonic_sort")((2,), (256,), (x,), shared_mem=512 * 4)
    np.testing.assert_array_equal(x, expected)


def test_float4_gemm(module):
    M, K, N = 12, 20, 16
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    y = np.zeros((M, N), np.float32)
    gemm = module.get_function("gemm_float4<8>")
    assert [p.c_type for p in gemm.params[:3]] == ["const float*", "const float4*", "float4*"]
    gemm((1, 2), (4, 8), (a, b, y, np.int32(M), np.int32(N), np.int32(K)))
    np.testing.assert_allclose(y, a @ b, rtol=1e-5, atol=1e-5)


def test_integer_atomics_and_bit_intrinsics(module):
    n = 100
    x = rng.integers(-1000, 1000, n).astype(np.int32)
    counters = np.zeros(4, np.uint32)
    extremes = np.array([np.iinfo(np.int32).min, np.iinfo(np.int32).max], np.int32)
    big, bits = np.zeros(1, np.uint64), np.zeros(7, np.uint32)
    module.get_function("integer_atomics")((1,), (128,), (counters, extremes, big, x, bits, np.int32(n)))
    np.testing.assert_array_equal(counters, [n, n % 10, 0xFFFFFFFF, 2 * n])
    np.testing.assert_array_equal(extremes, [x.max(), x.min()])
    assert big[0] == int((x.astype(np.int64) ** 2).sum())
    np.testing.assert_array_equal(bits, [0x80000000, 31, 4, 2, 0x3F800000, 1, 128])


def test_fast_math(module):
    x = rng.uniform(-2, 2, 300).astype(np.float32)
    y = np.zeros_like(x)
    module.get_function("fast_math")((2,), (256,), (x, y, np.int32(x.size)))
    expected = np.exp(x) + np.sin(x) * np.cos(x) + x / 2 + np.log1p(x * x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


TRAPS = r"""
// assert needs no #include in CUDA device code compiled by NVRTC
extern "C" __global__ void checked(const int* x) {
    assert(x[threadIdx.x] >= 0);
}
extern "C" __global__ void trapping(const int* x) {
    if (x[threadIdx.x] < 0) __trap();
}
"""


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("checked", r"assertion `x\[threadIdx.x\] >= 0` failed at traps.cu:4"),
        ("trapping", r"__trap\(\).*traps.cu:7"),
    ],
)
def test_assert_and_trap_are_errors_naming_the_thread(kernel, message):
    module = sim.load_module(TRAPS, [], filename="traps.cu")
    x = np.zeros(64, np.int32)
    x[37] = -1
    with pytest.raises(KernelLaunchError, match=rf"{message} in block \(0,0,0\), thread \(37,0,0\)"):
        module.get_function(kernel)((1,), (64,), (x,))
    x[37] = 1
    module.get_function(kernel)((1,), (64,), (x,))  # the process and the module are still alive


@pytest.mark.parametrize("source", [PATTERNS.read_text(), TRAPS], ids=["patterns", "traps"])
def test_kernels_are_real_cuda_for_nvrtc(source):
    if nvrtc.find_library() is None:
        pytest.skip('NVRTC is not installed (pip install -e ".[dev]")')
    options = cuda_include_options()
    if not options:
        pytest.skip('the CUDA headers are not installed (pip install -e ".[dev]")')
    result = nvrtc.compile_source(
        source, ["gemm_float4<8>"] if "gemm" in source else [], "sm_80", ["-std=c++17", *options]
    )
    assert result.log == ""


CALLS_THAT_END_THE_PROCESS = r"""
#include <csignal>
#include <cstdlib>
#include <unistd.h>
extern "C" __global__ void calls(int* result, int which, const char* marker) {
    if (threadIdx.x != 3) return;
    switch (which) {
        case 0: abort();
        case 1: std::exit(3);
        case 2: _exit(4);
        case 3: result[0] = raise(SIGTERM); break;
        case 4: result[0] = kill(getpid(), SIGKILL); break;
        case 5: result[0] = std::system(marker); break;
    }
}
"""


@pytest.mark.parametrize(
    "which, call", list(enumerate(["abort", "exit", "_exit", "raise", "kill", "system"]))
)
def test_a_kernel_cannot_end_signal_or_command_the_process(tmp_path, which, call):
    module = sim.load_module(CALLS_THAT_END_THE_PROCESS, [], filename="calls.cu")
    marker = np.frombuffer(f"touch {tmp_path / 'ran'}".encode() + b"\0", np.int8)
    arguments = (np.zeros(1, np.int32), np.int32(which), marker)
    message = rf"{call}\(\) was called in block \(0,0,0\), thread \(3,0,0\): a simulated kernel may not end"
    with pytest.raises(KernelLaunchError, match=message):
        module.get_function("calls")((1,), (8,), arguments)
    assert not (tmp_path / "ran").exists()
    module.get_function("calls")((1,), (8,), (np.zeros(1, np.int32), np.int32(99), marker))  # still alive


SPIN_THEN_CTRL_C = """
import os, signal, sys, threading
import numpy as np
from scratchnet import sim
spin = sim.load_module(
    'extern "C" __global__ void spin(int* x) { volatile int forever = 1; while (forever) x[0] += 1; }', []
).get_function("spin")
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    spin((int(sys.argv[1]),), (32,), (np.zeros(1, np.int32),))
except KeyboardInterrupt as e:
    print("KeyboardInterrupt:", e)
"""


@pytest.mark.parametrize("blocks", [1, 64])  # the caller's thread alone, and the pool's threads too
def test_ctrl_c_stops_a_kernel_that_loops_forever(blocks):
    command = [sys.executable, "-c", SPIN_THEN_CTRL_C, str(blocks)]
    env = {**os.environ, "PYTHONPATH": str(Path(sim.__file__).parents[2])}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt: spin was interrupted (Ctrl-C) in block" in done.stdout
