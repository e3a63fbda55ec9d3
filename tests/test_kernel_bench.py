"""The kernel harness (scratchnet/benchmarks/kernels.py): its report, and the GPU-only timing code driven by
a fake CuPy (no GPU needed)."""

from __future__ import annotations

import time

import fake_cupy
import numpy as np
import pytest

from scratchnet import kernel_bench
from scratchnet.device import get_device
from scratchnet.errors import DeviceError, KernelLaunchError


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
    assert "launch helper: " in report and " us of argument checks per launch of v3 " in report


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


@pytest.mark.sim
def test_helper_checks_are_timed_without_the_launch():
    """The launch helper's own cost: its checks run (a wrong argument is refused), the kernel does not (the
    output stays NaN) and no launch is counted."""
    dev = get_device("sim")
    op, version = kernel_bench.GEMM, kernel_bench.GEMM.versions[-1]
    size = op.tiny_sizes[0]
    kernel = dev.kernel(op.source, version.kernel, np.float32)
    inputs = op.make_inputs(size, np.dtype(np.float32), np.random.default_rng(0))
    arrays = kernel_bench._device_arrays(dev, inputs, op.output_shape(size), np.float32)
    launches = dict(dev.launches)
    assert kernel_bench.helper_checks_us(lambda k: version.launch(k, arrays, size), kernel, calls=5) > 0
    assert np.isnan(arrays["out"]).all() and dict(dev.launches) == launches
    arrays["A"] = arrays["A"].astype(np.float64)
    with pytest.raises(KernelLaunchError, match="argument 'A' .* needs dtype float32"):
        kernel_bench.helper_checks_us(lambda k: version.launch(k, arrays, size), kernel, calls=5)


# --- the GPU-only timing code, driven by a fake cupy --------------------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch):
    """fake_gpu(fail={...}) -> (the fake cupy, a gpu Device on it)."""
    from scratchnet.device import Device

    def install(fail=None):
        return fake_cupy.install(monkeypatch, fail), Device("gpu")

    return install


def spin_lengths(timer) -> list[int]:
    """The nanoseconds each spin of ``timer`` is launched with, from now on."""
    lengths, spin = [], timer.spin
    timer.spin = lambda grid, block, args: (lengths.append(args[0]), spin(grid, block, args))
    return lengths


def test_timer_flushes_l2_and_queues_every_run_behind_a_spin_kernel(fake_gpu):
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    assert timer.flush_buffer.nbytes >= 2 * fake.cuda.Device().attributes["L2CacheSize"]
    timer.flush_l2 = lambda: fake.log.append("flush")
    fake.elapsed_ms = [5.0, 3.0, 9.0]
    times = timer._timed_runs(lambda: fake.log.append("run"), 3)
    assert times == [5.0, 3.0, 9.0] and timer.covered
    # the spin, the event that tells whether it outlasted the enqueueing, then each run between its events
    assert fake.log == ["launch spin", "record"] + ["flush", "record", "run", "record"] * 3
    assert fake.launches[0] == ("spin", (1, 1, 1), (1, 1, 1))


def test_the_spin_lasts_three_times_the_hosts_enqueue_time_per_run(fake_gpu):
    _, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    timer.set_enqueue_ns(50_000)
    assert timer.spin_ns(10) == 10 * 150_000
    timer.set_enqueue_ns(10_000)  # a fast host: the floor of 100 us per run
    assert timer.spin_ns(10) == 10 * timer.MIN_ENQUEUE_NS


def test_time_ms_measures_the_hosts_enqueue_time_first(fake_gpu):
    """A run that takes the host 3 ms to enqueue (Python checks on a slow host) gets 9 ms of spin each."""
    _, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    lengths = spin_lengths(timer)
    timer.time_ms(lambda: time.sleep(0.003), repeats=4)
    assert timer.enqueue_ns >= 3_000_000
    assert lengths == [timer.spin_ns(1), timer.spin_ns(4)] and lengths[0] >= 9_000_000


def test_runs_are_timed_again_behind_a_longer_spin_when_the_spin_ended_first(fake_gpu):
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    lengths = spin_lengths(timer)
    timer.set_enqueue_ns(50_000)
    fake.events_done = [True]  # the first spin was over before the host had enqueued the last run
    fake.elapsed_ms = [9.0, 9.0, 9.0, 1.0, 2.0, 3.0]
    assert timer._timed_runs(lambda: None, 3) == [1.0, 2.0, 3.0] and timer.covered
    assert lengths == [3 * 150_000, 3 * 300_000]


def test_a_run_never_covered_by_the_spin_says_so(fake_gpu, monkeypatch):
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    lengths = spin_lengths(timer)
    fake.events_done = [True] * 1000  # every spin over too soon, however long
    timer.time_ms(lambda: None, repeats=3)
    assert not timer.covered and len(lengths) == 2 * timer.RETRIES

    # The fake's kernels compute nothing: let every version pass validation, to reach the timing.
    def passed(dev, op, version, size, *args, **kwargs):
        return kernel_bench.Result(op.name, version.number, version.kernel, size, ok=True)

    monkeypatch.setattr(kernel_bench, "validate", passed)
    size = kernel_bench.POOL.tiny_sizes[0]
    results = kernel_bench.benchmark_size(gpu, kernel_bench.POOL, size, np.float32, 3, timer)
    versions = [r for r in results if isinstance(r.version, int)]
    assert len(versions) == 3 and all("may include host time" in " ".join(r.notes) for r in versions)


def test_launch_costs_are_reported_apart(fake_gpu):
    """The helper's checks, CuPy's launch on the host and the GPU's time per launch: 1 ms per timed run
    (the fake's events) over 10 launches is 100 us each; no launch is counted as the helper's."""
    fake, gpu = fake_gpu()
    timer = kernel_bench.GpuTimer(gpu)
    costs = timer.launch_costs_us(launches=10)
    assert costs["gpu"] == pytest.approx(100.0)
    assert costs["checks"] > 0 and costs["cupy"] > 0
    assert gpu.launches["empty_kernel"] == 0
    assert sum(name == "empty_kernel" for name, *_ in fake.launches) > 10


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
