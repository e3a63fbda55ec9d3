"""The kernel harness (scratchnet/benchmarks/kernels.py): its report, and the GPU-only timing code driven by
a fake CuPy (no GPU needed)."""

from __future__ import annotations

import fake_cupy
import numpy as np
import pytest

from scratchnet import kernel_bench
from scratchnet.errors import DeviceError


def test_mismatch_report_names_the_first_and_the_worst_wrong_index():
    expected = np.zeros((3, 4))
    out = expected.copy()
    out[1, 2] = 0.5  # first wrong element in C order
    out[2, 0] = -7.0  # the worst
    wrong = np.abs(out - expected) > 1e-6
    text = kernel_bench.describe_mismatches(out, expected, wrong)
    assert text == "2 of 12 wrong; first at (1, 2) = 0.5 (expected 0); worst at (2, 0) = -7 (expected 0)"


def test_mismatch_report_counts_an_unwritten_nan_as_the_worst():
    expected = np.ones(5)
    out = np.array([1.0, 1.5, np.nan, 1.0, 1.0])
    wrong = ~(np.abs(out - expected) <= 1e-6)
    assert "first at (1,)" in (text := kernel_bench.describe_mismatches(out, expected, wrong))
    assert "worst at (2,) = nan" in text


@pytest.mark.sim
def test_report_prints_what_each_version_changed():
    lines = []
    assert kernel_bench.run([kernel_bench.POOL], "sim", np.float32, repeats=1, out=lines.append)
    report = "\n".join(lines)
    for version in kernel_bench.POOL.versions:
        assert f"v{version.number} {version.kernel}" in report and version.about in report
    assert "bank conflicts" in report and f"v1 {kernel_bench.POOL.versions[0].kernel}" in report


@pytest.mark.sim
@pytest.mark.parametrize("dtype, b_loads", [(np.float32, 4), (np.float64, 8)])
def test_bank_conflicts_of_gemm_v5_and_of_v6_which_removes_them(dtype, b_loads):
    """v5: the A tile store puts 8 lanes in one bank, and 16 threads reading 8 B values each 8 apart meet
    4 to a bank (float) or 8 (double: a half warp's 16 doubles). v6 pads and strides them away."""
    gemm, size = kernel_bench.GEMM, kernel_bench.GEMM.tiny_sizes[0]
    v5, v6 = (next(v for v in gemm.versions if v.number == n) for n in (5, 6))
    assert kernel_bench.bank_conflicts(gemm, v5, size, dtype) == {
        "As": {"store": 8, "load": 1},
        "Bs": {"store": 1, "load": b_loads},
    }
    assert kernel_bench.bank_conflicts(gemm, v6, size, dtype) == {
        "As": {"store": 1, "load": 1},
        "Bs": {"store": 1, "load": 1},
    }
    lines = kernel_bench._format_bank_conflicts(gemm, dtype)
    assert lines[0].startswith("bank conflicts") and "v1 gemm_v1_naive" in lines[1]
    assert lines[1].endswith("no shared memory")
    assert lines[5].endswith(f"As store 8-way, load 1-way; Bs store 1-way, load {b_loads}-way")


# --- the GPU-only timing code, driven by a fake cupy --------------------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch):
    """fake_gpu(fail={...}) -> (the fake cupy, a gpu Device on it)."""
    from scratchnet.device import Device

    def install(fail=None):
        return fake_cupy.install(monkeypatch, fail), Device("gpu")

    return install


def test_timer_flushes_l2_and_queues_every_run_behind_a_spin_kernel(fake_gpu):
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    assert timer.flush_buffer.nbytes >= 2 * fake.cuda.Device().attributes["L2CacheSize"]
    timer.flush_l2 = lambda: fake.log.append("flush")
    fake.elapsed_ms = [5.0, 3.0, 9.0]
    times = timer._timed_runs(lambda: fake.log.append("run"), 3)
    assert times == [5.0, 3.0, 9.0]
    assert fake.log == ["launch spin"] + ["flush", "record", "run", "record"] * 3
    assert fake.launches[0] == ("spin", (1, 1, 1), (1, 1, 1))


def test_timer_reports_the_median(fake_gpu):
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    fake.elapsed_ms = [4.0] + [2.0, 8.0, 3.0, 100.0, 1.0]  # the first run sizes the repeats
    assert timer.time_ms(lambda: None, repeats=5) == 3.0


def test_missing_cublas_skips_the_reference_row_only(fake_gpu):
    from fake_cupy import DynamicLibNotFoundError

    fake, gpu = fake_gpu({"matmul": DynamicLibNotFoundError("Failure finding 'libcublas.so.13'")})
    timer = kernel_bench.GpuTimer(gpu)
    size = {"M": 8, "N": 8, "K": 8}
    results = kernel_bench.benchmark_size(gpu, kernel_bench.GEMM, size, np.float32, 3, timer)
    assert len(results) == len(kernel_bench.GEMM.versions) + 1
    assert "skipped" in results[-1].notes[0] and "cuBLAS cannot be loaded" in results[-1].notes[0]
    assert "skipped" in "\n".join(kernel_bench._format_timings(kernel_bench.GEMM, results))


def test_the_copy_ceiling_is_credited_with_its_own_bytes(fake_gpu):
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    size = kernel_bench.POOL.tiny_sizes[0]
    results = kernel_bench.benchmark_size(gpu, kernel_bench.POOL, size, np.float32, 3, timer)
    copy = results[-1]
    x_bytes = 4 * size["N"] * size["C"] * size["H"] * size["W"]
    assert copy.kernel.startswith("copy of x") and copy.bytes == 2 * x_bytes
    assert copy.rate == pytest.approx(2 * x_bytes / 1e-3 / 1e9)  # 1 ms per run from the fake events


def test_kernel_bench_turns_a_device_error_into_exit_2(fake_gpu, capsys):
    from fake_cupy import CUDARuntimeError

    with pytest.raises(DeviceError):
        fake_gpu({"getDeviceCount": CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device")})
    assert kernel_bench.main(["gemm", "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'gpu'") and err.count("error:") == 1
