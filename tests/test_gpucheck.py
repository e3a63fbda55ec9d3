"""python -m scratchnet.gpucheck: its checks driven on the simulator, its GPU-only parts on a fake cupy, and
its exit status without a GPU."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import fake_cupy
import numpy as np
import pytest
from fake_cupy import CUDARuntimeError

from scratchnet import gpucheck
from scratchnet.benchmarks import kernels as kernel_bench
from scratchnet.device import Device, get_device


@pytest.fixture
def fake_gpu(monkeypatch):
    return functools.partial(fake_cupy.install, monkeypatch)


def test_without_a_gpu_it_says_so_and_exits_2(fake_gpu, capsys):
    fake_gpu({"getDeviceCount": CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")})
    assert gpucheck.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'gpu'") and "no usable NVIDIA driver or GPU" in err
    assert err.count("\n") == 1


def test_resources_are_compared_with_the_launch_block_size(fake_gpu, monkeypatch):
    fake_gpu()
    gpu = Device("gpu")
    monkeypatch.setattr(gpucheck, "kernel_files", lambda: ["relu.cu", "dev/gemm.cu"])
    lines = list(gpucheck.check_compile_and_resources(gpu))
    assert [str(line) for line in lines if "relu_forward<float>" in line.text] == [
        "PASS resources relu_forward<float>: 32 registers/thread, at most 1024 threads/block, "
        "launched with 256"
    ]
    # A kernel that the compiler limited to fewer threads than its launch uses is a failure.
    gemm_v1 = gpu.kernel("dev/gemm.cu", "gemm_v1_naive", np.float64)
    gemm_v1.raw.raw_kernel.attributes["max_threads_per_block"] = 640
    failed = [line for line in gpucheck.check_compile_and_resources(gpu) if line.status == "FAIL"]
    assert (
        len(failed) == 1
        and "gemm_v1_naive<double>" in failed[0].text
        and "launched with 1024" in failed[0].text
    )


def test_environment_lines_on_a_gpu(fake_gpu):
    fake_gpu()
    lines = [str(line) for line in gpucheck.check_environment(Device("gpu"))]
    assert "INFO gpu: Fake GPU (compute capability 7.5)" in lines and "INFO tf32: off" in lines


@pytest.mark.sim
def test_layer_check_passes_on_sim_and_catches_a_difference(monkeypatch):
    sim = get_device("sim")
    lenet = gpucheck.nets(sim)[0]
    (line,) = gpucheck.check_layers_against_cpu(sim, lenet, np.float64)
    assert line.status == "PASS" and "LeNet-5 on sim vs cpu, float64" in line.text
    # Different weights on the two devices: the check must fail.
    seeds = iter([0, 1])
    wrong = gpucheck.Net(
        "LeNet-5", lambda d, t: gpucheck.LeNet5(device=d, dtype=t, seed=next(seeds)), lenet.image, 2
    )
    (line,) = gpucheck.check_layers_against_cpu(sim, wrong, np.float64)
    assert line.status == "FAIL"


@pytest.mark.sim
def test_training_step_check_on_sim():
    sim = get_device("sim")
    lines = list(gpucheck.check_training_step(sim, gpucheck.nets(sim)[0]))
    assert [line.status for line in lines] == ["PASS", "PASS", "INFO"]
    assert "{'device_to_host': 1}" in lines[1].text


@pytest.mark.sim
def test_count_launches_lists_one_sgd_update_per_parameter(monkeypatch):
    sim = get_device("sim")
    all_nets = gpucheck.nets
    monkeypatch.setattr(gpucheck, "nets", lambda dev: all_nets(dev)[:1])
    out: list[str] = []
    gpucheck.count_launches(sim, out.append)
    header, *rows = out
    counts = {name: int(count) for count, name in (row.split() for row in rows)}
    assert header == f"LeNet-5, one training step (SGD with momentum) on sim: {sum(counts.values())} launches"
    assert counts["sgd_update<float>"] == len(gpucheck.LeNet5().params)  # one fused update per parameter
    # The bias rides in the forward GEMMs' epilogue (3 Linear + 2 Conv2D), whose conv output is stored as
    # NCHW: only the 2 convolutions' backward still transposes dy.
    assert counts["gemm_blocked_bias<float>"] == 5 and counts["swap_axes01<float>"] == 2
    # conv1's and conv2's weight gradients are the two products small enough to split along K.
    assert counts["sum_splits<float>"] == 2
    assert counts["softmax_xent_forward<float>"] == 1


def test_large_index_check_skips_without_memory(fake_gpu):
    fake_gpu(capacity=15 * fake_cupy.GiB)
    (line,) = gpucheck.check_large_index(Device("gpu"))
    assert line.status == "INFO" and "needs 17.2 GB, 16.1 GB free" in line.text


def test_the_harness_runs_briefly_on_a_gpu(fake_gpu, monkeypatch):
    """Every op at its first benchmark size only (here the tiny sizes: the fake GPU's kernels run on the
    simulator, and validate)."""
    fake_gpu()
    tiny = {name: dataclasses.replace(op, bench_sizes=op.tiny_sizes) for name, op in kernel_bench.OPS.items()}
    monkeypatch.setattr(kernel_bench, "OPS", tiny)
    lines = [str(line) for line in gpucheck.check_harness(Device("gpu"))]
    timed = [line for line in lines if line.startswith("INFO   timing ")]
    assert timed == [
        f"INFO   timing {' '.join(f'{k}={v}' for k, v in op.tiny_sizes[0].items())}:" for op in tiny.values()
    ]
    assert lines[-1] == "PASS kernel harness: gemm, conv2d, maxpool on gpu"


GUIDE = Path(__file__).resolve().parent.parent / "docs" / "gpu.md"


def _guide_row(machine: str) -> str:
    (row,) = [line for line in GUIDE.read_text().splitlines() if line.startswith(f"| {machine}")]
    return row


@pytest.mark.parametrize(
    ("machine", "fake", "line"),
    [
        (
            "Google Colab, T4 GPU, CUDA 12 driver",  # with the CUDA 13 NVRTC of `dev` in the environment
            dict(driver=12040, runtime=12040, nvrtc=(13, 0), compute_capability="75"),
            "FAIL versions: driver CUDA 12.4, NVRTC 13.0, compute capability 7.5: This environment's NVRTC",
        ),
        (
            "H100",
            dict(driver=13000, nvrtc=(13, 0), compute_capability="90"),
            "PASS versions: driver CUDA 13.0, NVRTC 13.0, compute capability 9.0 fit the gpu extra",
        ),
        (
            "a GPU older than Turing",  # a V100 with the `gpu` extra
            dict(driver=13000, nvrtc=(13, 0), compute_capability="70"),
            "FAIL versions: driver CUDA 13.0, NVRTC 13.0, compute capability 7.0: This GPU",
        ),
    ],
    ids=["colab-t4", "h100", "v100"],
)
def test_gpucheck_gives_the_guide_s_advice_for_each_machine(fake_gpu, machine, fake, line):
    """The guide's machine table and gpucheck's versions line name the same extra."""
    fake_gpu(**fake)
    (versions,) = [str(x) for x in gpucheck.check_environment(Device("gpu")) if "versions:" in x.text]
    assert versions.startswith(line)
    extra = "gpu" if versions.startswith("PASS") else "gpu12"
    assert f"[{extra}]" in versions or versions.endswith(f"the {extra} extra")
    assert f"| `{extra}`" in _guide_row(machine)


def test_the_guide_s_colab_install_keeps_pytorch_s_cuda_wheels():
    """`.[gpu12]` brings CUDA 12 wheels of its own, which replace the versions PyTorch pins on Colab."""
    row = _guide_row("Google Colab")
    assert 'pip install -e . "cupy-cuda12x>=14.2"' in row and "[ctk]" not in row
    assert "PyTorch" in row
