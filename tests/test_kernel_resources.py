"""Every kernel fits the block size it is launched with, on every architecture from sm_75 up: its registers
per thread (from ptxas, through NVRTC, no GPU needed) times its threads per block stay within the 64K
registers a block can have."""

from __future__ import annotations

import pytest

from scratchnet._cuda import nvrtc
from scratchnet._cuda.sources import kernel_dir, kernel_source, launch_bounds
from scratchnet.sim import parse_kernels
from tests.nvrtc_headers import ARCH_PARAMS

REGISTERS_PER_BLOCK = 64 * 1024  # sm_75 ... sm_120
FILES = sorted(str(p.relative_to(kernel_dir())) for p in kernel_dir().rglob("*.cu"))

pytestmark = pytest.mark.skipif(nvrtc.find_library() is None, reason='NVRTC missing: pip install -e ".[dev]"')


@pytest.mark.parametrize("arch", ARCH_PARAMS)
@pytest.mark.parametrize("filename", FILES)
def test_registers_times_threads_fit_a_block(filename, arch):
    if int(arch.removeprefix("sm_")) not in nvrtc.supported_archs():
        pytest.skip(f"NVRTC {nvrtc.version()} cannot compile for {arch}")
    source = kernel_source(filename)
    names = [name for name, sig in parse_kernels(source).items() if not sig.extern_c]
    threads = launch_bounds(filename)
    for name, regs in nvrtc.registers(source, names, arch, filename).items():
        block = threads[name.split("<")[0]]
        assert regs * block <= REGISTERS_PER_BLOCK, f"{name} on {arch}: {regs} registers x {block} threads"


def test_the_bounds_come_from_the_source():
    bounds = launch_bounds("dev/gemm.cu")
    assert bounds["gemm_v1_naive"] == 1024 and bounds["gemm_v4_blocktile_1d"] == 512
    assert launch_bounds("relu.cu") == {"relu_forward": 256, "relu_backward": 256}


def test_the_check_can_fail():
    """Without __launch_bounds__, a kernel with many live values takes more registers than 1024 threads
    can have; the register reader sees it."""
    source = """
    template <typename T>
    __global__ void heavy(const T* x, T* y, int n) {
        T acc[48];
        for (int k = 0; k < 48; ++k) acc[k] = x[k * n + threadIdx.x];
        T s = 0;
        for (int k = 0; k < 48; ++k) s += acc[k] * acc[(k * 7) % 48];
        y[threadIdx.x] = s;
    }
    """
    used = nvrtc.registers(source, ["heavy<double>"], "sm_75")["heavy<double>"]
    assert used * 1024 > REGISTERS_PER_BLOCK
