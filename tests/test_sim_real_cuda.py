"""Constructs of real-world CUDA on the simulator (sim_kernels/real_cuda.cu): the sm_80 warp reductions and
matches, the clocks, memcpy and memset in device code, dynamic shared memory of any type, 16-bit floats,
``__constant__`` memory set from Python, cooperative groups; each against NumPy, and the kernel file compiled
by NVRTC for sm_80 with a clean log (so the test kernels are real CUDA). With all checks on, none of them
is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc
from scratchnet.errors import DeviceError, KernelLaunchError
from tests.nvrtc_headers import cuda_include_options

pytestmark = pytest.mark.sim

REAL_CUDA = Path(__file__).resolve().parent / "sim_kernels" / "real_cuda.cu"
rng = np.random.default_rng(11)


@pytest.fixture(scope="module", params=["", "all"], ids=["unchecked", "all checks"])
def module(request):
    """Every test runs on a plain build and on a checked build, which must find nothing wrong."""
    return sim.load_module(REAL_CUDA.read_text(), filename=REAL_CUDA.name, checks=request.param)


def test_warp_reductions_and_matches(module):
    warps = 3
    x = rng.integers(-1000, 1000, 32 * warps).astype(np.int32)
    keys = rng.integers(0, 4, 32 * warps).astype(np.int32)
    keys[64:] = 7  # the third warp: every key the same
    per_warp, matches = np.zeros(9 * warps, np.int32), np.zeros(32 * warps, np.uint32)
    module.get_function("warp_reductions")((1,), (32 * warps,), (x, keys, per_warp, matches))
    for warp, got in enumerate(per_warp.reshape(warps, 9)):
        lanes, lane_keys = x[32 * warp : 32 * warp + 32], keys[32 * warp : 32 * warp + 32]
        bits = lanes.view(np.uint32)
        expected = [
            lanes.sum(),
            lanes.min(),
            lanes.max(),
            np.bitwise_and.reduce(bits).view(np.int32),
            np.bitwise_or.reduce(bits).view(np.int32),
            np.bitwise_xor.reduce(bits).view(np.int32),
            lanes[:16].sum(),
            int(np.all(lane_keys // 100 == lane_keys[0] // 100)),
            1,
        ]
        np.testing.assert_array_equal(got, expected)
        for lane in range(32):
            same = np.flatnonzero(lane_keys == lane_keys[lane])
            assert matches[32 * warp + lane] == sum(1 << int(s) for s in same)


def test_clocks_advance(module):
    ticks, sink = np.zeros(64, np.int64), np.zeros(32, np.float32)
    module.get_function("timed_loop")((1,), (32,), (ticks, sink))
    assert (ticks[0::2] > 0).all()  # nanoseconds: 2000 sines take longer than one
    assert (ticks[1::2] >= 0).all()


def test_memcpy_and_memset_in_device_code(module):
    x = rng.standard_normal(4 * 64).astype(np.float32)
    y, cleared = np.zeros_like(x), np.ones_like(x)
    module.get_function("packed_double")((2,), (32,), (x, y, cleared))
    np.testing.assert_array_equal(y, 2 * x)
    np.testing.assert_array_equal(cleared, 0)


def test_dynamic_shared_memory_of_any_type(module):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = np.zeros_like(x)
    module.get_function("reverse_float4")((1,), (64,), (x, y), shared_mem=64 * 16)
    np.testing.assert_array_equal(y, x[::-1])
    longs = rng.integers(-(2**62), 2**62, 128)
    reversed_longs = np.zeros_like(longs)
    module.get_function("reverse_long")((1,), (128,), (longs, reversed_longs), shared_mem=128 * 8)
    np.testing.assert_array_equal(reversed_longs, longs[::-1])
    values, best = rng.standard_normal(256).astype(np.float32), np.zeros(1, np.int32)
    module.get_function("argmax")((1,), (256,), (values, best), shared_mem=256 * 8)
    assert best[0] == values.argmax()


def _bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounding to nearest even (NumPy has no bfloat16)."""
    bits = x.view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def test_half_and_bfloat16_storage(module):
    n = 300
    x = rng.standard_normal(n).astype(np.float16)
    wide = rng.standard_normal(n).astype(np.float32)
    wide[:3] = [1 + 2**-8, 1 + 3 * 2**-8, -2.5]  # two ties, rounded to even: 1 and 1 + 2**-6
    y, narrow, widened = np.zeros(n, np.float16), np.zeros(n, np.uint16), np.zeros(n, np.float32)
    pairs, pair_sums = np.zeros(2 * n, np.float16), np.zeros(n, np.float32)
    kernel = module.get_function("sixteen_bit_floats")
    a, b = np.float32(1.5), np.float32(-0.25)
    kernel((2,), (256,), (x, y, wide, narrow, widened, pairs, pair_sums, a, b, np.int32(n)))
    np.testing.assert_array_equal(y, (a * x.astype(np.float32) + b).astype(np.float16))
    np.testing.assert_array_equal(narrow, _bfloat16_bits(wide))
    np.testing.assert_array_equal(widened[:3], [1.0, 1 + 2**-6, -2.5])
    np.testing.assert_allclose(widened, wide, rtol=2**-8)
    np.testing.assert_array_equal(pairs.reshape(n, 2), np.stack([wide, 2 * wide], 1).astype(np.float16))
    np.testing.assert_array_equal(pair_sums, pairs.reshape(n, 2).astype(np.float32).sum(1))


def test_constant_memory_is_set_from_python(module):
    coefficients = np.ndarray((4,), np.float32, module.get_global("coefficients"))
    launched = np.ndarray((), np.uint32, module.get_global("launched_threads"))
    launched[...] = 0
    x = rng.standard_normal(100).astype(np.float32)
    for c in ([1, 2, 3, 4], [0.5, -1, 0, 2]):
        coefficients[:] = c
        y = np.zeros_like(x)
        module.get_function("polynomial")((2,), (64,), (x, y, np.int32(x.size)))
        np.testing.assert_allclose(y, np.polyval(np.float32(c[::-1]), x), rtol=1e-5, atol=1e-6)
    assert launched == 2 * 128  # a __device__ variable keeps its value from launch to launch
    with pytest.raises(KernelLaunchError, match=r"no __constant__ or __device__ variable 'coefs'"):
        module.get_global("coefs")


def test_cooperative_groups(module):
    blocks, threads = 2, 64
    labels = rng.integers(-1, 3, blocks * threads).astype(np.int32)
    out = np.zeros((blocks * threads, 10), np.int32)
    module.get_function("group_ranks")((blocks,), (threads,), (labels, out))
    i = np.arange(blocks * threads)
    np.testing.assert_array_equal(out[:, 0], i % threads)
    np.testing.assert_array_equal(out[:, 1], i % 8)
    np.testing.assert_array_equal(out[:, 2], 8)
    np.testing.assert_array_equal(out[:, 8], i)
    np.testing.assert_array_equal(out[:, 9], blocks * threads)
    for warp in range(blocks * threads // 32):
        lanes = np.arange(32 * warp, 32 * warp + 32)
        active = lanes[labels[lanes] >= 0]
        for rank, t in enumerate(active):
            even = labels[active] % 2 == 0
            same_parity = active[even == (labels[t] % 2 == 0)]
            labelled = np.sum(labels[active] == labels[t])
            expected = [rank, active.size, labelled, np.searchsorted(same_parity, t), active[0]]
            np.testing.assert_array_equal(out[t, 3:8], expected)
        np.testing.assert_array_equal(out[lanes[labels[lanes] < 0], 3:8], -1)


def test_grid_sync_is_refused_with_a_reason():
    source = """#include <cooperative_groups.h>
extern "C" __global__ void k(float* y) { cooperative_groups::this_grid().sync(); y[0] = 1.0f; }
"""
    module = sim.load_module(source, filename="grid.cu")
    with pytest.raises(KernelLaunchError, match=r"grid.sync\(\) needs a cooperative launch.*grid.cu:2"):
        module.get_function("k")((2,), (32,), (np.zeros(1, np.float32),))


def test_a_checked_build_of_a_file_including_iostream():
    source = '#include <iostream>\nextern "C" __global__ void k(float* y) { y[threadIdx.x] += 1.0f; }\n'
    y = np.arange(32, dtype=np.float32)
    sim.load_module(source, checks="memcheck").get_function("k")((1,), (32,), (y,))
    np.testing.assert_array_equal(y, np.arange(32) + 1)


def test_a_template_parameter_as_the_dynamic_shared_type_is_refused():
    source = "template <class T>\n__global__ void k(T* y) { extern __shared__ T s[]; y[0] = s[0]; }\n"
    with pytest.raises(DeviceError, match=r"template parameter 'T'.*unsigned char s\[\]"):
        sim.load_module(source, ["k<float>"])


def test_kernels_are_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    options = cuda_include_options()
    if not options:
        pytest.skip("the CUDA headers are not installed (pip install nvidia-cuda-runtime nvidia-cuda-cccl)")
    assert nvrtc.compile_source(REAL_CUDA.read_text(), [], "sm_80", ["-std=c++17", *options]).log == ""
