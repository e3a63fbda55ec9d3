"""The ``gpu`` device's code paths on the strict fake CuPy (``tests/fake_cupy.py``): what it refuses, each
data-parallel rank on its own GPU, NCCL failures, and (slow: whole processes, kernels on the simulator)
``gpucheck``, training, ``--workers``, ``--resume`` and two ranks through the command line."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import fake_cupy
import numpy as np
import pytest
from fake_cupy import CUDARuntimeError, NcclError

from scratchnet import gpucheck, parallel
from scratchnet.device import Device, get_device
from scratchnet.errors import DeviceError, KernelLaunchError
from scratchnet.train import DataParallel, TrainConfig, fit, prepare

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.sim  # the fake runs its kernels on the simulator


@pytest.fixture
def install(monkeypatch):
    """install(fail={...}, devices=n, ...) puts a strict FakeCupy in sys.modules and returns it."""
    return functools.partial(fake_cupy.install, monkeypatch)


# --- what the fake refuses, as CuPy and the GPU do ----------------------------------------------------------
def test_device_arrays_are_not_numpy_arrays_and_do_not_convert_implicitly(install):
    install()
    gpu = Device("gpu")
    x = gpu.array(np.arange(4.0))
    assert not isinstance(x, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError, match="host array"):
        x + np.ones(4)  # noqa: B018
    np.testing.assert_array_equal(gpu.to_host(x * 2 + 1), [1.0, 3.0, 5.0, 7.0])


def test_a_host_array_never_reaches_a_kernel(install):
    install()
    gpu = Device("gpu")
    relu = gpu.kernel("relu.cu", "relu_forward", np.float32)
    with pytest.raises(KernelLaunchError, match="needs a gpu array, got ndarray"):
        relu.launch_1d(2, (np.ones(2, np.float32), gpu.empty((2,), np.float32), 2))
    with pytest.raises(TypeError, match="host array"):  # past the launch helper, CuPy refuses it too
        relu.raw(((1,)), (32,), (np.ones(2, np.float32), gpu.empty((2,), np.float32), np.int64(2)))


def test_arrays_of_another_device_are_refused(install):
    fake = install(devices=2)
    gpu = Device("gpu")
    on_0 = gpu.array(np.ones(2, np.float32))
    fake.cuda.Device(1).use()
    with pytest.raises(ValueError, match=r"resides \(0\) is different from the current device \(1\)"):
        on_0 * 2  # noqa: B018
    out = gpu.empty((2,), np.float32)
    with pytest.raises(DeviceError, match="argument 0 lives on device 0, the kernel runs on device 1"):
        gpu.kernel("relu.cu", "relu_forward", np.float32).launch_1d(2, (on_0, out, 2))
    assert fake.allocations == {0: 1, 1: 1}


# --- data parallelism: each rank on its own GPU -------------------------------------------------------------
class RankOf(parallel.MpiWorld):
    """Rank ``rank`` of ``size`` in one process: its MPI collectives answer as if every rank said the same."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size, self._nccl = rank, size, None
        self._mpi = types.SimpleNamespace(IN_PLACE=None, SUM=None)
        self.comm = types.SimpleNamespace(
            bcast=lambda value, root: value,
            Allreduce=lambda *args, **kwargs: None,
            allgather=lambda value: [value] * size,
        )


def _one_step(world: parallel.World, **config):
    """Prepare a LeNet-5 run on gpu as rank ``world.rank`` and train it for one step (one batch)."""
    settings = dict(device="gpu", limit_train=32, limit_test=16, val_fraction=0.0, epochs=1, batch_size=32)
    settings.update(config, progress=False, plots=False)
    run = prepare(TrainConfig(**settings), lambda line: None, DataParallel(world))
    return fit(run, None, lambda line: None)


@pytest.fixture
def local_rank(monkeypatch):
    """local_rank(r, n): this process is rank r of n on its machine, as MPICH's mpiexec says."""
    for name in ("MPI_LOCALRANKID", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def set_rank(rank: int, ranks: int) -> None:
        monkeypatch.setenv("MPI_LOCALRANKID", str(rank))
        monkeypatch.setenv("MPI_LOCALNRANKS", str(ranks))

    return set_rank


def test_rank_1_allocates_nothing_on_gpu_0(install, local_rank):
    """The model, its buffers and the flat gradient buffer of rank 1 live on GPU 1 from the first
    allocation; the allreduce is NCCL's on that GPU, with buffers of that GPU."""
    fake = install(devices=2)
    local_rank(1, 2)
    _one_step(RankOf(1, 2))
    assert fake.allocations[0] == 0 and fake.allocations[1] > 0
    assert fake.current_device() == 1


def test_one_gpu_per_rank_through_cuda_visible_devices(install, local_rank, monkeypatch):
    """Slurm (and most clusters) show each rank only its own GPU: its device 0."""
    fake = install(devices=1)
    local_rank(1, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    _one_step(RankOf(1, 2))
    assert fake.allocations[0] > 0


def test_slurm_local_id_picks_the_gpu(install, local_rank, monkeypatch):
    """Rank 3 of 4 on two machines of two GPUs, started by srun: its GPU is its index on its machine."""
    fake = install(devices=2)
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    assert parallel.local_rank_and_size(RankOf(3, 4)) == (1, 2)
    parallel.use_rank_gpu(RankOf(3, 4))
    assert fake.current_device() == 1


def test_two_ranks_on_one_gpu_are_refused_with_the_remedy(install, local_rank):
    install(devices=1)
    local_rank(1, 2)
    with pytest.raises(parallel.ParallelError, match="need 2 GPUs.*it has 1.*CUDA_VISIBLE_DEVICES"):
        parallel.use_rank_gpu(RankOf(1, 2))


def test_no_nccl_says_how_to_install_it_before_any_work(install, local_rank):
    """Without libnccl CuPy's nccl module imports, with ``available = False`` and no functions."""
    fake = install(devices=2, nccl=False, runtime=12080)
    local_rank(0, 2)
    with pytest.raises(DeviceError, match=r"NCCL, which is missing.*pip install nvidia-nccl-cu12"):
        _one_step(RankOf(0, 2))
    assert not fake.allocations


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        (
            {"allReduce": NcclError("NCCL_ERROR_UNHANDLED_CUDA_ERROR: unhandled cuda error")},
            r"rank 0: summing the gradients over the GPUs \(NCCL\): NCCL failed.*NCCL_DEBUG=WARN",
        ),
        (
            {"NcclCommunicator": CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access")},
            r"rank 0: summing the gradients.*outside its arrays",
        ),
    ],
    ids=["nccl-error", "cuda-error"],
)
def test_nccl_and_cuda_errors_of_the_allreduce_are_device_errors_with_a_hint(
    install, local_rank, fail, message
):
    install(fail, devices=2)
    local_rank(0, 2)
    with pytest.raises(DeviceError, match=message):
        _one_step(RankOf(0, 2))


# --- gpucheck -----------------------------------------------------------------------------------------------
def test_the_large_index_check_gives_its_memory_back_to_the_driver(install, monkeypatch):
    """``del`` returns an array's memory to CuPy's pool, not to the driver: a PyTorch reference run later
    in the same process could run out. (A smaller count: the fake's memory is host memory.)"""
    fake = install(capacity=2**20)
    monkeypatch.setattr(gpucheck, "LARGE_COUNT", 40_000)
    (line,) = gpucheck.check_large_index(Device("gpu"))
    assert line.status == "PASS" and "last three [0.0, 2.0, 3.0]" in line.text
    assert fake.pool.total_bytes() == 0


def test_a_training_step_copies_only_the_loss_back_and_grows_no_memory(install):
    """Counted by the fake, not by the device: a float() of a device array in a layer would pass the
    device's own count of copies, not this one."""
    fake = install()
    lenet = gpucheck.nets(get_device("sim"))[0]
    lines = list(gpucheck.check_training_step(Device("gpu"), lenet))
    assert [line.status for line in lines] == ["PASS", "PASS", "INFO", "PASS"], lines
    assert fake.implicit_transfers == 0


@pytest.mark.slow  # LeNet-5 and AlexNet (CIFAR) on the simulator, both dtypes
def test_gpucheck_passes_on_the_fake_gpu(install, monkeypatch):
    """Every check but the harness; the nets the simulator checks (the paper's AlexNet would take many
    minutes there)."""
    install()
    sim_nets = gpucheck.nets(get_device("sim"))
    monkeypatch.setattr(gpucheck, "nets", lambda dev: sim_nets)
    lines: list[str] = []
    assert gpucheck.run_checks(Device("gpu"), harness=False, out=lines.append), "\n".join(lines)
    assert "PASS versions: driver CUDA 13.0, NVRTC 13.0, compute capability 7.5 fit the gpu extra" in lines


# --- whole processes on the fake GPU ------------------------------------------------------------------------
def _fake_gpu_environment(report: Path, **variables: str) -> dict:
    """Processes whose ``import cupy`` is the strict fake, writing their allocations into ``report``."""
    report.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests' / 'fake_gpu'}{os.pathsep}{ROOT}",
        "FAKE_CUPY_REPORT": str(report),
        **variables,
    }


def _train(command: list[str], env: dict, processes: int = 1) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "scratchnet.train", "--no-progress", "--no-plots", *command]
    if processes > 1:
        argv = [parallel.mpiexec(), "-n", str(processes), *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)


def _final(done: subprocess.CompletedProcess) -> dict:
    """test_accuracy, test_loss and top5 of the 'final ...' line."""
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("final ")]
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    return {k: fields[k] for k in ("test_accuracy", "test_loss", "top5")}


TINY = ["--limit-train", "64", "--limit-test", "32", "--val-fraction", "0", "--batch-size", "32"]


@pytest.mark.slow  # training processes, kernels on the simulator
def test_training_with_workers_and_resume_on_the_fake_gpu_matches_sim(tmp_path):
    env = _fake_gpu_environment(tmp_path / "report")
    sim = _train([*TINY, "--epochs", "2", "--device", "sim", "--out", str(tmp_path / "sim")], env)
    assert sim.returncode == 0, sim.stderr
    first = _train(
        [*TINY, "--epochs", "1", "--device", "gpu", "--workers", "2"] + ["--out", str(tmp_path / "gpu")], env
    )
    assert first.returncode == 0, first.stderr
    resumed = _train(["--resume", str(tmp_path / "gpu"), "--epochs", "2", "--device", "gpu"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert _final(resumed) == _final(sim)  # the same kernels, on the same host buffers
    assert json.loads((tmp_path / "report" / "0.json").read_text()).keys() == {"0"}


@pytest.mark.slow  # MPI processes, kernels on the simulator
def test_two_ranks_each_with_one_gpu_train_the_weights_of_one(tmp_path):
    """Two ranks on one machine of two GPUs; each rank's allocations are on its own GPU only, and the
    result is one process's."""
    pytest.importorskip("mpi4py")
    env = _fake_gpu_environment(tmp_path / "report", FAKE_CUPY_DEVICES="2")
    args = [*TINY, "--epochs", "1", "--device", "gpu", "--dtype", "float64"]
    one = _train([*args, "--out", str(tmp_path / "one")], env)
    assert one.returncode == 0, one.stderr
    two = _train([*args, "--out", str(tmp_path / "two")], env, processes=2)
    assert two.returncode == 0, two.stderr
    assert _final(two) == _final(one)
    allocations = {r: json.loads((tmp_path / "report" / f"{r}.json").read_text()) for r in (0, 1)}
    assert allocations[0].keys() == {"0"} and allocations[1].keys() == {"1"}, allocations


@pytest.mark.slow  # MPI processes
def test_two_ranks_without_nccl_stop_with_one_error_line(tmp_path):
    pytest.importorskip("mpi4py")
    env = _fake_gpu_environment(tmp_path / "report", FAKE_CUPY_DEVICES="2", FAKE_CUPY_NCCL="0")
    done = _train(
        [*TINY, "--epochs", "1", "--device", "gpu", "--out", str(tmp_path / "run")], env, processes=2
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and "pip install nvidia-nccl-cu13" in errors[0]
