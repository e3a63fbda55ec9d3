"""Kernel signatures as the compiler compiled them: typedefs, templates with several or non-type
parameters, ``long``, ``unsigned``, struct and ``float4*`` parameters, default arguments,
``__launch_bounds__`` before or after ``void``, and kernel files whose macros (``#define T 16``) would
break a simulator runtime compiled in the same translation unit."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc
from scratchnet.sim import parse_kernels
from tests.nvrtc_headers import cuda_include_options

pytestmark = pytest.mark.sim

SOURCE = r"""
#ifdef __CUDACC_RTC__  // NVRTC has no <stdint.h>
typedef long long int64_t;
#else
#include <stdint.h>
#endif
#define T 16
#define TILE 16
#define N 4
typedef unsigned int uint;
typedef float floatX;
struct Params {
    float scale;
    int offset;
};

/* a comment naming __global__ void fake(int x) is no kernel */
template <class U>
__global__ void scale(const U* __restrict__ x, U* y, U alpha, long n) {
    long i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = alpha * x[i];
}

template <int BM, typename V>
__global__ void __launch_bounds__(256) fill_tile(V* y, int n = 3) {
    if (threadIdx.x < n) y[threadIdx.x] = (V)(BM * TILE);
}

__launch_bounds__((16 * 16), 2) __global__ void bounded(floatX* y, uint n, int64_t k) {
    if (threadIdx.x < n) y[threadIdx.x] = (floatX)k + T;
}

extern "C" __global__ void with_struct(float4* v, Params p) {
    v[threadIdx.x].x = p.scale * threadIdx.x + p.offset;
}

extern "C" {
__global__ void count(unsigned* counter) { atomicAdd(counter, 1); }
}
"""


@pytest.fixture(scope="module")
def signatures():
    return parse_kernels(SOURCE, ["fill_tile<4, float>"])


def _types(signature):
    return [(p.name, p.c_type, p.dtype, p.pointer) for p in signature.params]


def test_kernels_found_and_only_real_ones(signatures):
    assert set(signatures) == {
        "scale<float>",
        "scale<double>",
        "bounded",
        "with_struct",
        "count",
        "fill_tile<4, float>",
    }
    assert signatures["count"].extern_c and signatures["with_struct"].extern_c
    assert not signatures["bounded"].extern_c and not signatures["scale<float>"].extern_c


def test_types_come_from_the_compiler(signatures):
    assert _types(signatures["scale<double>"]) == [
        ("x", "const double*", np.float64, True),
        ("y", "double*", np.float64, True),
        ("alpha", "double", np.float64, False),
        ("n", "long long", np.int64, False),  # long is 64 bits on the host, as on the GPU
    ]
    assert _types(signatures["bounded"]) == [
        ("y", "float*", np.float32, True),
        ("n", "unsigned int", np.uint32, False),
        ("k", "long long", np.int64, False),
    ]
    assert _types(signatures["fill_tile<4, float>"]) == [
        ("y", "float*", np.float32, True),
        ("n", "int", np.int32, False),
    ]
    vector, struct = signatures["with_struct"].params
    assert (vector.c_type, vector.dtype, vector.lanes) == ("float4*", np.float32, 4)
    assert (struct.c_type, struct.dtype, struct.pointer) == ("Params", np.dtype("V8"), False)


def test_kernels_run_with_the_file_macros(signatures):
    module = sim.load_module(SOURCE, ["fill_tile<4, float>", "scale<float>"])
    y = np.zeros(8, np.float32)
    module.get_function("fill_tile<4, float>")((1,), (8,), (y, np.int32(3)))
    np.testing.assert_array_equal(y, [64, 64, 64, 0, 0, 0, 0, 0])
    counter = np.zeros(1, np.uint32)
    module.get_function("count")((3,), (64,), (counter,))
    assert counter[0] == 192
    v = np.zeros((4, 4), np.float32)
    params = np.array((2.0, 5), dtype=[("scale", "f4"), ("offset", "i4")])[()]
    module.get_function("with_struct")((1,), (4,), (v, params))
    np.testing.assert_array_equal(v[:, 0], [5, 7, 9, 11])


def test_pointer_to_pointer_is_refused():
    with pytest.raises(ValueError, match=r"pointer to a pointer"):
        parse_kernels('extern "C" __global__ void k(float** rows) { }')


def test_source_is_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None or not cuda_include_options():
        pytest.skip("NVRTC and the CUDA headers are not installed")
    result = nvrtc.compile_source(
        SOURCE, ["scale<float>", "fill_tile<4, float>"], "sm_80", ["-std=c++17", *cuda_include_options()]
    )
    assert result.log == ""
