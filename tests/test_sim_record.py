"""The access record (``checks="record"``, record.py): exact counts of a kernel's loads, stores, atomics and
barriers, and the bank conflicts of its shared-memory accesses, against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet import sim
from scratchnet.sim.checks import parse_checks

pytestmark = pytest.mark.sim

SOURCE = """
// Each thread stores x[i] into shared memory at t * stride, waits, reads it back into y[i] and counts itself.
// s holds 64 threads at a stride of up to 33.
extern "C" __global__ void strided(const float* x, float* y, int* count, int stride) {
    __shared__ float s[64 * 33];
    unsigned int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t * stride] = x[i];
    __syncthreads();
    y[i] = s[t * stride];
    atomicAdd(count, 1);
}

// The same with doubles, 8 bytes each: the two halves of a warp take a pass of the shared memory each.
extern "C" __global__ void strided_double(const double* x, double* y, int stride) {
    __shared__ double d[64 * 33];
    unsigned int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    d[t * stride] = x[i];
    __syncthreads();
    y[i] = d[t * stride];
}

// Dynamic shared memory (the launch's shared_mem bytes): one array for the whole file, of no kernel.
extern "C" __global__ void dynamic(float* y) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = dyn[threadIdx.x];
}
"""


@pytest.fixture(scope="module")
def module():
    return sim.load_module(SOURCE, filename="strided.cu", checks="record")


def _launch(module, stride: int):
    x, y, count = np.arange(128, dtype=np.float32), np.zeros(128, np.float32), np.zeros(1, np.int32)
    module.get_function("strided")((2,), (64,), (x, y, count, np.int32(stride)))
    np.testing.assert_array_equal(y, x)
    return module.last_record


def test_counts_of_one_launch(module):
    record = _launch(module, 1)
    assert record.counts() == {
        "global_loads": 128,
        "global_stores": 128,
        "shared_loads": 128,
        "shared_stores": 128,
        "atomics": 128,
        "barriers": 2,  # one per block
    }
    assert sorted(set(record.events["thread"])) == list(range(64))
    assert "'count'" in record.buffers[record.events["buffer"][record.events["kind"] == 2][0]]


@pytest.mark.parametrize("stride, extra_per_warp_access", [(1, 0), (2, 1), (32, 31), (33, 0)])
def test_bank_conflicts(module, stride, extra_per_warp_access):
    record = _launch(module, stride)
    accesses = record.warp_accesses()
    assert len(accesses) == 8  # 2 blocks x 2 warps x (one store, one load)
    assert all(len(lanes) == 32 for lanes in accesses.values())
    assert record.bank_conflicts() == 8 * extra_per_warp_access


@pytest.mark.parametrize("stride, degree", [(1, 1), (2, 2), (32, 32), (33, 1)])
def test_shared_sites_name_the_line_and_array_of_each_access(module, stride, degree):
    sites = _launch(module, stride).shared_sites(module.build.library)
    assert [(site.line, site.array, site.kind) for site in sites] == [
        ("strided.cu:7", "'s' in strided", "store"),
        ("strided.cu:9", "'s' in strided", "load"),
    ]
    for site in sites:
        assert site.warp_accesses == 4  # 2 blocks x 2 warps
        assert site.conflict_degree == degree and site.wavefronts == 4 * degree


# A warp's double access is two passes (one per half warp), conflict-free at stride 1; at stride 2 a half
# warp's 16 doubles span 128 words, 2 per bank; at stride 16 all 16 lie in two banks (16-way).
@pytest.mark.parametrize("stride, degree", [(1, 1), (2, 2), (16, 16), (33, 1)])
def test_a_double_access_takes_two_passes_and_is_no_conflict(module, stride, degree):
    x, y = np.arange(128, dtype=np.float64), np.zeros(128)
    module.get_function("strided_double")((2,), (64,), (x, y, np.int32(stride)))
    np.testing.assert_array_equal(y, x)
    sites = module.last_record.shared_sites(module.build.library)
    assert [(site.array, site.kind) for site in sites] == [
        ("'d' in strided_double", k) for k in ("store", "load")
    ]
    for site in sites:
        assert site.conflict_degree == degree and site.wavefronts == 4 * 2 * degree


def test_an_extern_shared_array_is_named_without_a_kernel(module):
    y = np.zeros(32, np.float32)
    module.get_function("dynamic")((1,), (32,), (y,), shared_mem=128)
    np.testing.assert_array_equal(y, np.arange(32))
    sites = module.last_record.shared_sites(module.build.library)
    assert [(site.array, site.kind, site.conflict_degree) for site in sites] == [
        ("'dyn'", "store", 1),
        ("'dyn'", "load", 1),
    ]


def test_shared_sites_without_the_library_fall_back_to_code_addresses(module):
    sites = _launch(module, 1).shared_sites()
    assert [site.array for site in sites] == [None, None]
    assert all(site.line.startswith("pc 0x") for site in sites)


def test_the_record_is_opt_in():
    assert "record" not in parse_checks("all")
    assert parse_checks("all,record") == parse_checks("all") | {"record"}
    assert sim.load_module(SOURCE, checks="").last_record is None
