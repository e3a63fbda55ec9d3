"""CUDA's launch limits and launch arithmetic (scratchnet/_cuda/limits.py) and the launch helper."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from scratchnet._cuda.launch import Kernel
from scratchnet._cuda.limits import MAX_GRID, MAX_SHARED_BYTES, cdiv, check_launch, dim3
from scratchnet._cuda.signature import parse_kernels
from scratchnet.errors import KernelLaunchError


@pytest.mark.parametrize(("a", "b", "blocks"), [(0, 256, 0), (1, 256, 1), (256, 256, 1), (257, 256, 2)])
def test_cdiv_is_the_number_of_blocks_that_cover_a(a, b, blocks):
    assert cdiv(a, b) == blocks
    assert cdiv(a, b) * b >= a > (cdiv(a, b) - 1) * b or a == 0


def test_dim3_pads_with_ones_and_names_what_is_wrong():
    assert dim3(7, "grid") == (7, 1, 1)
    assert dim3((2, 3), "grid") == (2, 3, 1)
    assert dim3([np.int64(2), 3, 4], "block") == (2, 3, 4)
    with pytest.raises(KernelLaunchError, match=r"k: grid must be 1 to 3 integers, got \(1, 2, 3, 4\)"):
        dim3((1, 2, 3, 4), "k: grid")
    with pytest.raises(KernelLaunchError, match="block must be 1 to 3 integers, got 2.5"):
        dim3(2.5, "block")
    with pytest.raises(KernelLaunchError, match=r"grid sizes must be >= 1, got \(0, 1, 1\)"):
        dim3(0, "grid")


@pytest.mark.parametrize(
    ("grid", "block", "shared", "message"),
    [
        ((1, 1, 1), (32, 33, 1), 0, r"block \(32, 33, 1\) has 1056 threads, more than 1024"),
        ((1, 1, 1), (1, 1, 65), 0, "block.z = 65 exceeds CUDA's limit 64"),
        ((2**31, 1, 1), (1, 1, 1), 0, "grid.x = 2147483648 exceeds CUDA's limit 2147483647"),
        ((1, 65536, 1), (1, 1, 1), 0, "grid.y = 65536 exceeds CUDA's limit 65535"),
        ((1, 1, 65536), (1, 1, 1), 0, "grid.z = 65536 exceeds"),
        ((1, 1, 1), (1, 1, 1), MAX_SHARED_BYTES + 1, "49153 bytes of shared memory"),
    ],
)
def test_check_launch_names_the_broken_limit(grid, block, shared, message):
    with pytest.raises(KernelLaunchError, match=message):
        check_launch("k", grid, block, shared)


def test_check_launch_accepts_the_limits_themselves():
    check_launch("k", MAX_GRID, (1024, 1, 1), MAX_SHARED_BYTES)
    check_launch("k", (1, 1, 1), (1, 16, 64), 0)


class _FakeDevice:
    name = "gpu"
    launches = Counter()

    @staticmethod
    def is_array(x):
        return isinstance(x, np.ndarray)


def test_launch_helper_refuses_a_grid_past_cudas_limit_before_the_driver_sees_it():
    launches = []
    sig = parse_kernels('extern "C" __global__ void fill(float* y, long long n) { }')["fill"]
    kernel = Kernel(_FakeDevice(), lambda *a, **k: launches.append(a), sig)
    y = np.empty(1, np.float32)
    with pytest.raises(KernelLaunchError, match="fill: grid.y = 70000 exceeds CUDA's limit 65535"):
        kernel((1, 70000), (32,), (y, 1))
    with pytest.raises(KernelLaunchError, match="fill: shared_mem must be >= 0"):
        kernel((1,), (32,), (y, 1), shared_mem=-1)
    # one thread per element: (2^31 - 1) * 1024 elements still fit in grid.x, one more block does not
    with pytest.raises(KernelLaunchError, match="grid.x = 2147483648 exceeds"):
        kernel.launch_1d(2**31 * 1024, (y, 1), block=1024)
    kernel.launch_1d(1000, (y, 1), block=256)
    assert launches == [((4, 1, 1), (256, 1, 1), (y, np.int64(1)))]
