"""The benchmarks: the bench table and its JSON are well formed, the PyTorch twin computes the same model,
and the kernel harness validates every numbered kernel version on the simulator and reports a broken one.

No timing is asserted: the figures depend on the machine. What is checked is that each figure is there,
consistent with the others (images/s = batch / time) and that the harness can say FAIL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import pytest

from scratchnet import bench, kernel_bench
from scratchnet import models as M
from scratchnet.benchmarks import torch_twins
from scratchnet.device import get_device

LENET_LAYERS = [
    "conv1",
    "relu1",
    "pool1",
    "conv2",
    "relu2",
    "pool2",
    "flatten",
    "fc1",
    "relu3",
    "fc2",
    "relu4",
    "fc3",
]

# One row of the printed table: batch, what, impl, ms, img/s, then optionally torch ms, torch img/s, ratio.
ROW = re.compile(
    r"^\s*(?P<batch>\d+)  (?P<what>\S+(?: \S+)?)\s+(?P<impl>fast|naive\*)"
    r"\s+(?P<ms>\d+\.\d+)\s+(?P<rate>[\d,]+)"
    r"(?:\s+(?P<torch_ms>\d+\.\d+)\s+(?P<torch_rate>[\d,]+)\s+(?P<ratio>\d+\.\d+)x)?\s*$"
)


@pytest.fixture(scope="module")
def quick_table(tmp_path_factory):
    """The printed ``--quick`` table (one run shared by the tests that parse it)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--quick"]) == 0
    return out.getvalue()


def _torch_installed() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow  # the whole --quick table (about 10 s)
def test_quick_table_is_well_formed(quick_table):
    lines = quick_table.splitlines()
    assert lines[0].startswith("scratchnet bench: lenet5, float32, device cpu")
    assert any(line.startswith("numpy ") and "BLAS" in line for line in lines)
    rows = [m.groupdict() for m in map(ROW.match, lines) if m]
    fast = {r["what"]: r for r in rows if r["impl"] == "fast"}
    expected = [f"{name} {d}" for name in LENET_LAYERS for d in ("forward", "backward")]
    expected += ["loss forward", "loss backward", "train step"]
    assert list(fast) == expected  # every layer, in model order, then the loss and the training step
    for r in rows:
        assert r["batch"] == "8"
        ms, rate = float(r["ms"]), float(r["rate"].replace(",", ""))
        assert ms > 0
        # img/s is batch / time; ms is printed to 3 decimals, so allow for that rounding.
        assert 8e3 / (ms + 5e-4) - 1 <= rate <= 8e3 / max(ms - 5e-4, 1e-9) + 1
        if _torch_installed():
            assert r["ratio"] is not None, f"row without a PyTorch comparison: {r}"
            torch_ms = float(r["torch_ms"])
            low, high = (torch_ms - 5e-4) / (ms + 5e-4), (torch_ms + 5e-4) / max(ms - 5e-4, 1e-9)
            assert low - 0.005 <= float(r["ratio"]) <= high + 0.005
    # The naive loops are timed for the convolutions and poolings, and a naive training step.
    naive = {r["what"] for r in rows if r["impl"] == "naive*"}
    assert naive == {
        f"{n} {d}" for n in ("conv1", "pool1", "conv2", "pool2") for d in ("forward", "backward")
    } | {"train step"}
    assert "peak NumPy allocations in one training step (tracemalloc): batch 8:" in quick_table


def test_quick_table_reports_openblas_environment(monkeypatch, capsys):
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "123456")
    assert bench.main(["--quick", "--no-naive", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^environment: .*OPENBLAS_L2_SIZE=123456", out, re.M)
    assert "torch: skipped (--no-torch)" in out


@pytest.mark.slow  # the whole --quick table again (about 10 s)
def test_quick_json_is_valid(capsys):
    assert bench.main(["--quick", "--no-naive", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "lenet5" and report["device"] == "cpu" and report["repeats"] == 1
    assert report["environment"]["numpy"]["version"] == np.__version__
    rows = report["rows"]
    assert {r["what"] for r in rows} >= {"conv1 forward", "fc3 backward", "loss forward", "train step"}
    for r in rows:
        assert r["batch"] == 8 and r["impl"] == "fast" and r["runs"] == 1
        assert r["seconds"] > 0
        assert r["images_per_second"] == pytest.approx(8 / r["seconds"])
        if r["torch_seconds"] is not None:
            assert r["speed_vs_torch"] == pytest.approx(r["torch_seconds"] / r["seconds"])
    assert report["step_peak_numpy_bytes"]["8"] > 0
    assert report["peak_rss_bytes"] > 0


@pytest.mark.sim
def test_quick_json_on_sim(capsys):
    """The same bench through the CUDA kernels, simulated: every layer row is there, no naive rows."""
    assert bench.main(["--quick", "--device", "sim", "--no-torch", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "sim"
    whats = [r["what"] for r in report["rows"]]
    assert whats[:2] == ["conv1 forward", "conv1 backward"] and whats[-1] == "train step"
    assert all(
        r["impl"] == "fast" and r["seconds"] > 0 and r["torch_seconds"] is None for r in report["rows"]
    )


def test_bad_batch_sizes_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--batch-sizes", "64,x"])
    assert "comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize("name", bench.BENCH_MODELS)
def test_torch_twin_computes_the_same_model(name):
    """The PyTorch model the bench times has scratchnet's layers and weights: same logits."""
    torch = pytest.importorskip("torch")
    model = M.build(name, seed=0)
    b = bench.Bench(model, batch=3, torch=torch, torch_device="cpu")
    assert b.torch_max_difference() < 1e-4
    # A twin with one weight changed must differ: the comparison is not vacuous.
    net = torch_twins.torch_model(model, torch)
    with torch.no_grad():
        next(net.parameters())[0] += 0.5
    assert b.torch_max_difference(net) > 1e-3


def test_time_to_accuracy_stops_at_the_target(capsys):
    """On the bundled mini Fashion-MNIST: stops at the first epoch whose test accuracy reaches the target."""
    code = bench.main(
        [
            "time-to-accuracy",
            "--dataset",
            "fashion-mnist-mini",
            "--target",
            "0.6",
            "--max-epochs",
            "3",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["reached"]
    accuracies = [e["test_accuracy"] for e in result["epochs"]]
    assert accuracies[-1] >= 0.6 and all(a < 0.6 for a in accuracies[:-1])
    assert 0 < result["train_seconds"] <= result["wall_seconds"]


# --- the kernel harness -------------------------------------------------------------------------------
VERSIONS = [
    pytest.param(
        op, version, size, id=f"{op.name}-v{version.number}-{kernel_bench._describe(size).replace(' ', ',')}"
    )
    for op in kernel_bench.OPS.values()
    for version in op.versions
    for size in op.tiny_sizes
]


@pytest.mark.sim
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("op", "version", "size"), VERSIONS)
def test_every_kernel_version_validates_on_sim(op, version, size, dtype):
    result = kernel_bench.validate(get_device("sim"), op, version, size, dtype)
    assert result.ok, result.notes


def _broken(op, version, launch) -> kernel_bench.Op:
    return dataclasses.replace(op, versions=(dataclasses.replace(version, launch=launch),))


def _half_grid_launch(kernel, arrays, size):
    """GEMM v2 with half the blocks along N: half of C is never written."""
    M_, N, K = size["M"], size["N"], size["K"]
    kernel(
        (kernel_bench.cdiv(N, 32) // 2, kernel_bench.cdiv(M_, 32)),
        (32, 32),
        (arrays["A"], arrays["B"], arrays["out"], M_, N, K),
    )


def _swapped_launch(kernel, arrays, size):
    """GEMM v3 with A and B exchanged in the call: computes B @ A (square, so every access is in bounds)."""
    M_, N, K = size["M"], size["N"], size["K"]
    kernel(
        (kernel_bench.cdiv(N, 32), kernel_bench.cdiv(M_, 32)),
        (32, 32),
        (arrays["B"], arrays["A"], arrays["out"], M_, N, K),
    )


@pytest.mark.sim
@pytest.mark.parametrize(
    ("version_index", "launch", "size", "note"),
    [
        (1, _half_grid_launch, {"M": 37, "N": 70, "K": 23}, "not written"),
        (2, _swapped_launch, {"M": 37, "N": 37, "K": 37}, ""),
    ],
    ids=["unwritten-outputs", "wrong-values"],
)
def test_harness_reports_a_broken_kernel(version_index, launch, size, note):
    op = _broken(kernel_bench.GEMM, kernel_bench.GEMM.versions[version_index], launch)
    op = dataclasses.replace(op, tiny_sizes=(size,))
    result = kernel_bench.validate(get_device("sim"), op, op.versions[0], size)
    assert result.ok is False
    assert note in "; ".join(result.notes)
    # The report says FAIL, and the run as a whole fails.
    lines = []
    assert kernel_bench.run([op], "sim", np.float32, repeats=1, out=lines.append) is False
    assert "FAIL" in "\n".join(lines)


@pytest.mark.sim
def test_harness_fails_against_a_wrong_reference():
    """The comparison itself can fail: the right kernel against a reference that is off by a little."""
    op, version, size = kernel_bench.POOL, kernel_bench.POOL.versions[1], kernel_bench.POOL.tiny_sizes[0]
    good = kernel_bench.validate(get_device("sim"), op, version, size)
    bad = kernel_bench.validate(
        get_device("sim"), op, version, size, reference=lambda inputs, s: op.reference(inputs, s) + 1e-3
    )
    assert good.ok and not bad.ok


@pytest.mark.sim
def test_kernels_subcommand_without_gpu_says_so(capsys):
    if kernel_bench.pick_device(None)[0].name == "gpu":
        pytest.skip("a GPU is present: the harness times kernels instead")
    assert bench.main(["kernels", "maxpool"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No CUDA GPU:")
    assert "timings need a GPU" in out
    assert re.search(r"N=128 C=64 H=55 W=55 K=3 S=2 P=0 .* MB moved at least", out)
    assert out.count(" ok ") == len(kernel_bench.POOL.versions) * len(kernel_bench.POOL.tiny_sizes)


def test_kernel_harness_refuses_unknown_ops(capsys):
    with pytest.raises(SystemExit):
        kernel_bench.main(["fft"])
    assert "unknown op(s) fft" in capsys.readouterr().err


@pytest.mark.sim
def test_sim_overhead_bench_prints_a_row_per_thread_count(capsys, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", "3")
    assert bench.main(["sim", "--blocks", "4", "--repeats", "1", "--threads", "2,1"]) == 0
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+) ns\s+([\d.]+) ns\s+(\d+) µs$", capsys.readouterr().out, re.M)
    assert [int(row[0]) for row in rows] == [1, 2]
    assert all(float(row[1]) > 0 and int(row[3]) > 0 for row in rows)
    assert os.environ["SCRATCHNET_SIM_THREADS"] == "3"  # restored after the measurements


@pytest.mark.parametrize("args", [["--threads", "two"], ["--threads", "0"], ["--blocks", "0"]])
def test_sim_overhead_bench_refuses_bad_arguments(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["sim", *args])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_parallel_measure_gives_its_processes_the_blas_threads_asked_for():
    """Lesson 17 compares 1 and 2 processes at the same BLAS threads per process: the setting must reach
    the measuring process (without it, a lone process takes every core)."""
    from scratchnet.benchmarks import parallel as parallel_bench

    figures = parallel_bench.measure("scratchnet", 1, batch=8, steps=1, warmup=0, blas_threads=1)
    assert figures["images_per_second"] > 0
    assert figures["blas_threads"] == figures["blas_threads_seen"] == 1


# --- the models table: every model next to PyTorch, its GEMM ceiling and its peak memory -------------
def test_gemm_shapes_are_the_products_of_one_lenet_training_step():
    """Counted by hand: conv1 sees 8·28·28 = 6272 output pixels and, as the first layer, computes no dx;
    conv2 sees 8·10·10 = 800; each Linear has three products."""
    from scratchnet.benchmarks import parallel as parallel_bench

    model = M.build("lenet5", seed=0)
    conv1 = [(6, 25, 6272), (6, 6272, 25)]
    conv2 = [(16, 150, 800), (16, 800, 150), (150, 16, 800)]
    linear = [p for D, M_ in ((400, 120), (120, 84), (84, 10)) for p in ((8, D, M_), (D, 8, M_), (8, M_, D))]
    expected = [(1, shape) for shape in conv1 + conv2 + linear]
    assert parallel_bench.gemm_shapes(model, 8) == expected


def test_groups_split_the_gemms():
    from scratchnet.benchmarks import parallel as parallel_bench
    from scratchnet.layers import Conv2D
    from scratchnet.models import Sequential

    model = Sequential([("conv", Conv2D(4, 6, 3, groups=2))], input_shape=(4, 5, 5), input_grad=True)
    # Cg·KH·KW = 2·9 = 18 rows, N·OH·OW = 2·3·3 = 18 columns, Fg = 3, two groups
    assert parallel_bench.gemm_shapes(model, 2) == [(2, (3, 18, 18)), (2, (3, 18, 18)), (2, (18, 3, 18))]


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's clear_refs")
def test_peak_rss_growth_sees_an_allocation_made_and_freed_after_the_reset():
    from scratchnet.benchmarks import parallel as parallel_bench

    start = parallel_bench.reset_peak_rss()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    del block  # freed: only the high-water mark remembers it
    assert parallel_bench.peak_rss_growth_bytes(start) >= 60 * 2**20
    start = parallel_bench.reset_peak_rss()  # the reset forgets it
    assert parallel_bench.peak_rss_growth_bytes(start) < 60 * 2**20


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's clear_refs")
def test_peak_rss_growth_counts_what_the_warm_up_step_allocated():
    """Memory a first step takes and later steps reuse (momentum buffers, an allocator's cache) is part of
    what training needs: the growth is measured from before the warm-up."""
    from scratchnet.benchmarks import parallel as parallel_bench

    kept = []

    def step():
        if not kept:  # the first call only, as SGD creates its velocity buffers
            kept.append(np.ones(64 * 2**20 // 8))  # 64 MiB, touched, kept

    _, growth = parallel_bench._timed_steps(step, steps=2, warmup=1)
    assert growth >= 60 * 2**20


def test_parallel_tables_warn_about_the_load():
    from scratchnet.benchmarks import parallel as parallel_bench

    busy, idle = (4.0 * os.cpu_count(), 1.0, 1.0), (0.0, 0.0, 0.0)
    assert "WARNING: load average" in parallel_bench.format_table([], "cmd", busy)
    assert "WARNING" not in parallel_bench.format_table([], "cmd", idle)
    assert "load average 0.00 0.00 0.00" in parallel_bench.format_table([], "cmd", idle)


def test_bad_model_runs_are_refused(capsys):
    for runs in ("lenet5", "lenet6:64", "lenet5:0", "lenet5:x"):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(["models", "--runs", runs])
        assert exit_info.value.code == 2 and "MODEL:BATCH" in capsys.readouterr().err


@pytest.mark.slow  # four fresh processes, PyTorch imported in one
@pytest.mark.skipif(not _torch_installed(), reason="PyTorch is the comparison")
def test_models_table_times_both_libraries_and_the_ceiling_in_their_own_processes():
    from scratchnet.benchmarks import parallel as parallel_bench

    rows = parallel_bench.run_models_table([("lenet5", 4)], rounds=1, steps=2, warmup=1, blas_threads=1)
    (row,) = rows
    assert (row["model"], row["batch"], row["blas_threads"], row["torch_threads"]) == ("lenet5", 4, 1, 1)
    assert row["vs_torch"] == pytest.approx(row["torch_step_seconds"] / row["step_seconds"])
    assert row["vs_gemm_ceiling"] == pytest.approx(row["step_seconds"] / row["gemm_seconds"])
    for key in ("peak_rss_growth_bytes", "torch_peak_rss_growth_bytes"):
        assert row[key] is None or row[key] >= 0
    table = parallel_bench.format_models_table(rows, "cmd", (0.0, 0.0, 0.0)).splitlines()
    assert table[-1].split()[:2] == ["lenet5", "4"] and table[-1].split()[4] == f"{row['vs_torch']:.2f}x"
