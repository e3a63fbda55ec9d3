"""Data parallelism: shards, the gradient allreduce, and N ranks training to one process's weights."""

from __future__ import annotations

import copy
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import scratchnet as sn
from scratchnet import parallel, run_folder
from scratchnet.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


class FakeWorld(parallel.World):
    """Rank ``rank`` of ``size``, for shard arithmetic without MPI."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size


@pytest.mark.parametrize("n, size", [(64, 2), (64, 3), (7, 3), (2, 3), (0, 2), (1, 4)])
def test_shards_cover_the_batch_once_in_order(n, size):
    shards = [FakeWorld(r, size).shard(n) for r in range(size)]
    covered = np.concatenate([np.arange(n)[s] for s in shards])
    np.testing.assert_array_equal(covered, np.arange(n))
    lengths = [len(range(n)[s]) for s in shards]
    assert max(lengths) - min(lengths) <= 1  # as even as it gets; some may be empty when n < size


class SummingWorld(parallel.World):
    """Stands in for N ranks in one process: ``allreduce_`` of rank r waits for all N contributions."""

    def __init__(self, size: int):
        self.size, self.flats = size, []

    def allreduce_(self, flat) -> None:
        self.flats.append(flat.copy())


def _small_net(seed=0):
    return sn.models.Sequential(
        [
            ("conv", sn.layers.Conv2D(1, 3, 3, padding=1, dtype=np.float64, seed=seed)),
            ("relu", sn.layers.ReLU(dtype=np.float64)),
            ("flat", sn.layers.Flatten(dtype=np.float64)),
            ("fc", sn.layers.Linear(3 * 6 * 6, 4, dtype=np.float64, seed=seed + 1)),
        ],
        dtype=np.float64,
        input_shape=(1, 6, 6),
    )


@pytest.mark.parametrize("size", [2, 3, 5])
def test_scaled_shard_gradients_sum_to_the_whole_batch_gradient(size):
    rng = np.random.default_rng(0)
    B = 7  # not a multiple of 2, 3 or 5; with 5 ranks two shards hold one example, none is empty
    x, labels = rng.standard_normal((B, 1, 6, 6)), rng.integers(0, 4, B)
    whole = _small_net()
    loss = sn.layers.SoftmaxCrossEntropy(dtype=np.float64)
    loss.forward(whole.forward(x), labels)
    whole.backward(loss.backward())

    world = SummingWorld(size)
    for rank in range(size):
        shard = FakeWorld(rank, size).shard(B)
        replica = _small_net()
        loss.forward(replica.forward(x[shard]), labels[shard])
        replica.backward(loss.backward())
        parallel.GradientAllreduce(replica, world)(len(labels[shard]), B)
    summed = np.sum(world.flats, axis=0)
    expected = np.concatenate([whole.grads[k].reshape(-1) for k in whole.grads])
    np.testing.assert_allclose(summed, expected, rtol=1e-12, atol=1e-14)


class ThreadRanks:
    """``size`` ranks as threads of one process: each rank's ``sum`` waits for every rank's values."""

    def __init__(self, size: int):
        self.size, self.values = size, [None] * size
        self.barrier = threading.Barrier(size, timeout=60)

    def world(self, rank: int) -> parallel.World:
        ranks = self

        class RankWorld(parallel.World):
            size = ranks.size

            def sum(self, values):
                ranks.values[rank] = np.array(values, dtype=np.float64)
                ranks.barrier.wait()
                total = np.sum(ranks.values, axis=0)
                ranks.barrier.wait()  # every rank has read it before the next sum overwrites it
                return total

        world = RankWorld()
        world.rank = rank
        return world

    def run(self, work) -> list:
        """``work(rank)`` on every rank at once; their results in rank order."""
        results = [None] * self.size
        threads = [
            threading.Thread(target=lambda r=r: results.__setitem__(r, work(r))) for r in range(self.size)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results


def _batchnorm_net(seed=0):
    net = sn.models.Sequential(
        [
            ("conv", sn.layers.Conv2D(2, 3, 3, padding=1, dtype=np.float64, seed=seed)),
            ("bn", sn.layers.BatchNorm2D(3, dtype=np.float64)),
            ("relu", sn.layers.ReLU(dtype=np.float64)),
            ("flat", sn.layers.Flatten(dtype=np.float64)),
            ("fc", sn.layers.Linear(3 * 5 * 5, 4, dtype=np.float64, seed=seed + 1)),
            ("bn_fc", sn.layers.BatchNorm1D(4, dtype=np.float64)),
        ],
        dtype=np.float64,
        input_shape=(2, 5, 5),
    )
    net.input_grad = True
    return net


@pytest.mark.parametrize("size, B", [(2, 7), (3, 7), (3, 2)])
def test_synchronised_batchnorm_on_n_ranks_computes_what_one_process_does(size, B):
    """float64, a batch of 7 (shards of 4 + 3, or 3 + 2 + 2) or 2 on 3 ranks (1 + 1 + 0: the empty shard
    joins the sums, as the trainer has it do): the outputs, the running statistics, dL/dx and the parameter
    gradients after the allreduce's weighting (n_r / B) equal those of one process."""
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((B, 2, 5, 5)) * 3 + 1, rng.integers(0, 4, B)

    def train_step(net, x, labels):
        loss = sn.layers.SoftmaxCrossEntropy(dtype=np.float64)
        logits = net.forward(x, training=True)
        if not len(labels):  # an empty shard: no loss, but the BatchNorm sums of the backward
            return logits, net.backward(np.zeros(logits.shape))
        loss.forward(logits, labels)
        return logits, net.backward(loss.backward())

    whole = _batchnorm_net()
    logits, dx = train_step(whole, x, labels)
    ranks = ThreadRanks(size)

    def rank_step(rank):
        shard = FakeWorld(rank, size).shard(B)
        net = _batchnorm_net()
        for name in ("bn", "bn_fc"):
            net.layers[name].sync = ranks.world(rank)
        return shard, net, *train_step(net, x[shard], labels[shard])

    results = ranks.run(rank_step)
    for shard, net, rank_logits, rank_dx in results:
        share = len(range(B)[shard]) / B
        np.testing.assert_allclose(rank_logits, logits[shard], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rank_dx * share, dx[shard], rtol=1e-10, atol=1e-12)  # the shard's share
        for name, value in whole.buffers.items():
            np.testing.assert_allclose(net.buffers[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    for name, value in whole.grads.items():
        summed = sum(len(range(B)[shard]) / B * net.grads[name] for shard, net, _, _ in results)
        np.testing.assert_allclose(summed, value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_synchronised_batchnorm_refuses_the_kernel_devices():
    layer = sn.layers.BatchNorm2D(3, device="sim")
    layer.sync = parallel.World()
    with pytest.raises(ValueError, match="cpu device only"):
        layer.forward(layer.device.array(np.ones((2, 3, 2, 2), np.float32)))


def test_an_empty_shard_contributes_zeros():
    model = _small_net()
    for g in model.grads.values():
        g[...] = np.nan  # whatever a layer left behind
    world = SummingWorld(1)
    parallel.GradientAllreduce(model, world)(0, 8)
    assert not world.flats[0].any()


def test_the_allreduce_writes_the_sum_back_into_every_gradient():
    model = _small_net()
    rng = np.random.default_rng(1)
    grads = {k: rng.standard_normal(g.shape) for k, g in model.grads.items()}
    for k, g in grads.items():
        model.grads[k][...] = g

    class Doubling(parallel.World):
        size = 2

        def allreduce_(self, flat):
            flat *= 2  # as if the other rank held the same gradients

    parallel.GradientAllreduce(model, Doubling())(4, 8)  # scale 1/2, then doubled
    for k, g in grads.items():
        np.testing.assert_allclose(model.grads[k], g, rtol=1e-15)


def test_blas_threads_share_the_cores():
    assert parallel.blas_threads(FakeWorld(0, 2), cores=2) == 1
    assert parallel.blas_threads(FakeWorld(0, 3), cores=2) == 1
    assert parallel.blas_threads(FakeWorld(0, 2), cores=16) == 8


def test_more_processes_than_cores_are_refused_unless_oversubscribed():
    parallel.check_cores(2, oversubscribe=False, cores=2)
    parallel.check_cores(3, oversubscribe=True, cores=2)
    with pytest.raises(
        parallel.ParallelError, match=r"3 processes on this machine, which has 2 cores.*--oversubscribe"
    ):
        parallel.check_cores(3, oversubscribe=False, cores=2)
    with pytest.raises(parallel.ParallelError, match="--oversubscribe"):
        parallel.check_world_cores(FakeWorld(0, 3), oversubscribe=False, cores=2)


def test_the_trainer_refuses_processes_beyond_the_cores_before_starting_mpiexec(monkeypatch, capsys):
    from scratchnet.train import cli

    def launch(*args):
        raise AssertionError("mpiexec started")

    monkeypatch.setattr(parallel, "launch", launch)
    too_many = str((os.cpu_count() or 1) + 1)
    assert cli.main(["--processes", too_many, "--epochs", "1"]) == 2
    assert "--oversubscribe" in capsys.readouterr().err


def test_a_single_process_world_needs_no_mpi(monkeypatch):
    for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(v, raising=False)
    assert not parallel.launched_by_mpi()
    w = parallel.World()
    assert (w.rank, w.size, w.is_root) == (0, 1, True)
    np.testing.assert_array_equal(w.sum([1.0, 2.0]), [1.0, 2.0])


def test_processes_without_mpi4py_say_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpi(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    with pytest.raises(parallel.ParallelError, match=r"scratchnet-cnn\[mpi\]"):
        parallel.mpiexec()
    with pytest.raises(parallel.ParallelError, match=r"mpi4py"):
        parallel.MpiWorld()


def test_model_copies_are_independent():  # the replicas above must not share arrays
    a = _small_net()
    b = copy.deepcopy(a)
    b.params["fc.W"][...] = 0
    assert a.params["fc.W"].any()


# --- dropout: masks follow the example, whatever the shard ----------------------------------------------
@pytest.mark.parametrize("device", ["cpu", pytest.param("sim", marks=pytest.mark.sim)])
def test_dropout_masks_of_shards_are_slices_of_the_whole_batch_mask(device):
    x_host = np.random.default_rng(0).standard_normal((7, 3, 4)) + 5.0  # (N, ...), no zeros
    dev = sn.get_device(device)
    whole = sn.layers.Dropout(0.5, seed=11, device=device, dtype=np.float64)
    expected = dev.to_host(whole.forward(dev.array(x_host)))
    for start, stop in [(0, 3), (3, 5), (5, 7), (7, 7)]:
        part = sn.layers.Dropout(0.5, seed=11, device=device, dtype=np.float64)
        part.shard_from(start)
        y = dev.to_host(part.forward(dev.array(x_host[start:stop])))
        np.testing.assert_array_equal(y, expected[start:stop])


# --- N ranks against one process, through the command line ---------------------------------------------
def _why_no_mpi() -> str | None:
    try:
        parallel.mpiexec()
    except parallel.ParallelError as e:
        return str(e)
    return None


needs_mpi = pytest.mark.skipif(_why_no_mpi() is not None, reason=f"no MPI: {_why_no_mpi()}")
MPI_TIMEOUT = 600  # seconds: a hung collective must fail the test, never hang CI


def _oversubscribe(processes: int) -> list[str]:
    """``--oversubscribe`` where a test starts more ranks than the machine has cores (3 on 2 cores)."""
    return ["--oversubscribe"] if processes > (os.cpu_count() or 1) else []


def _train(tmp_path, name, args, processes=1, env=None, mpiexec_options=()):
    """Run the trainer (under mpiexec for several processes); returns (completed process, final line)."""
    command = [sys.executable, "-m", "scratchnet.train", "--no-progress", "--no-plots", *args]
    command += ["--out", str(tmp_path / name), *_oversubscribe(processes)]
    if processes > 1:
        command = [parallel.mpiexec(), *mpiexec_options, "-n", str(processes), *command]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(command, capture_output=True, text=True, timeout=MPI_TIMEOUT, env=environment)
    final = [line for line in done.stdout.splitlines() if line.startswith("final ")]
    return done, final


def _figures(final_line: str) -> dict:
    """test_accuracy, test_loss and top5 of a 'final ...' line (the run folder and time differ)."""
    fields = dict(item.split("=", 1) for item in final_line.split()[1:])
    return {k: fields[k] for k in ("test_accuracy", "test_loss", "top5")}


def _max_difference(folder_a, folder_b) -> tuple[float, float]:
    a, b = load_checkpoint(folder_a).params, load_checkpoint(folder_b).params
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a), max(float(np.abs(a[k]).max()) for k in a)


COMMON = ["--dtype", "float64", "--limit-train", "512", "--limit-test", "256", "--epochs", "2"]
CASES = {
    # name: (extra flags, process counts); 512 images with --val-fraction 0 and batch 73: the last batch
    # holds 1 image, so with 2 or 3 processes some ranks get an empty shard.
    "lenet5": ([], (2, 3)),
    "augment": (["--augment"], (2,)),
    "uneven-batches": (["--val-fraction", "0", "--batch-size", "73"], (2, 3)),
    "sim": (["--device", "sim", "--limit-train", "96", "--limit-test", "32", "--epochs", "1"], (2,)),
    "dropout": (
        ["--model", "alexnet-cifar", "--image-size", "32", "--limit-train", "96", "--limit-test", "64"]
        + ["--epochs", "1"],
        (2,),
    ),
}


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_n_processes_train_the_weights_of_one(tmp_path, case):
    extra, counts = CASES[case]
    args = COMMON + extra
    one, one_final = _train(tmp_path, "p1", args)
    assert one.returncode == 0, one.stderr
    for n in counts:
        many, many_final = _train(tmp_path, f"p{n}", args, processes=n)
        assert many.returncode == 0, many.stderr
        assert _figures(many_final[-1]) == _figures(one_final[-1])
        assert len(many_final) == 1  # rank 0 alone prints
        difference, largest = _max_difference(tmp_path / "p1", tmp_path / f"p{n}")
        assert difference <= 1e-10 * max(1.0, largest), f"{n} processes: max |w_N - w_1| = {difference}"


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_synchronised_batchnorm_ranks_train_the_weights_of_one_process(tmp_path):
    """--sync-bn on ResNet-20 (BatchNorm in every block), float64, batches of 33, 33 and 1: 3 ranks take
    11 + 11 + 11 and then 1 + 0 + 0 examples, so two ranks join the BatchNorm sums with empty shards."""
    args = ["--model", "resnet20-cifar", "--dtype", "float64", "--limit-train", "67", "--limit-test", "32"]
    args += ["--val-fraction", "0", "--batch-size", "33", "--epochs", "1", "--sync-bn"]
    one, one_final = _train(tmp_path, "p1", args)
    assert one.returncode == 0, one.stderr
    three, three_final = _train(tmp_path, "p3", args, processes=3)
    assert three.returncode == 0, three.stderr
    assert _figures(three_final[-1]) == _figures(one_final[-1])
    difference, largest = _max_difference(tmp_path / "p1", tmp_path / "p3")
    assert difference <= 1e-10 * max(1.0, largest), f"max |w_3 - w_1| = {difference}"
    assert "bn1.running_var" in load_checkpoint(tmp_path / "p3").params  # compared too: the statistics


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_two_ranks_started_through_a_host_file_train_the_weights_of_one(tmp_path):
    """docs/data-parallelism.md's command for several machines (mpiexec -f HOSTS), with one machine in the
    host file: localhost, two ranks (``-launcher fork``: Hydra starts them without ssh)."""
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:2\n")
    args = ["--dtype", "float64", "--limit-train", "256", "--limit-test", "64", "--epochs", "1"]
    one, one_final = _train(tmp_path, "p1", args)
    assert one.returncode == 0, one.stderr
    options = ("-launcher", "fork", "-f", str(hosts))
    two, two_final = _train(tmp_path, "p2", args, processes=2, mpiexec_options=options)
    assert two.returncode == 0, two.stderr
    assert "data parallel: 2 processes" in two.stdout
    assert _figures(two_final[-1]) == _figures(one_final[-1])
    difference, largest = _max_difference(tmp_path / "p1", tmp_path / "p2")
    assert difference <= 1e-10 * max(1.0, largest)


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_processes_flag_starts_mpiexec_and_resumes_with_another_count(tmp_path):
    args = ["--dtype", "float64", "--limit-train", "256", "--limit-test", "64", "--epochs", "1"]
    first, _ = _train(tmp_path, "run", [*args, "--processes", "2"])
    assert first.returncode == 0, first.stderr
    assert "data parallel: 2 processes" in first.stdout
    resumed = subprocess.run(
        [sys.executable, "-m", "scratchnet.train", "--resume", str(tmp_path / "run"), "--epochs", "2"]
        + ["--no-progress", "--no-plots", "--processes", "3", *_oversubscribe(3)],
        capture_output=True,
        text=True,
        timeout=MPI_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "run").meta["epoch"] == 2


def _on_rank_1(tmp_path, *lines: str) -> dict:
    """The environment of ranks whose sitecustomize runs ``lines`` in rank 1 only (to break it there)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    body = "".join(f"    {line}\n" for line in lines)
    (hook / "sitecustomize.py").write_text(f"import os\nif os.environ.get('PMI_RANK') == '1':\n{body}")
    return {"PYTHONPATH": f"{hook}:{ROOT}"}


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_an_error_on_one_rank_stops_every_rank(tmp_path):
    # Rank 1's training breaks: the other rank must not wait for it forever.
    env = _on_rank_1(
        tmp_path,
        "import scratchnet.parallel as p",
        "def broken(*args, **kwargs):",
        "    raise RuntimeError('rank 1 broke')",
        "p.GradientAllreduce.__call__ = broken",
    )
    args = ["--limit-train", "128", "--limit-test", "64", "--epochs", "1"]
    done, final = _train(tmp_path, "run", args, processes=2, env=env)
    assert done.returncode != 0
    assert "rank 1 broke" in done.stderr
    assert not final


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_a_file_error_on_rank_0_is_every_rank_s_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    args = ["--limit-train", "128", "--limit-test", "64", "--epochs", "1"]
    done, _ = _train(tmp_path, "file/run", args, processes=2)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_launcher_that_dies_takes_its_ranks_with_it(tmp_path, signum):
    """kill -9 cannot be caught: mpiexec must learn from the kernel that its launcher is gone."""
    command = [sys.executable, "-m", "scratchnet.train", "--processes", "2", "--limit-train", "2000"]
    command += ["--epochs", "100", "--no-progress", "--no-plots", "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "run" / "metrics.jsonl"
    for _ in range(600):  # until epoch 1 is written
        if metrics.exists() or launcher.poll() is not None:
            break
        time.sleep(0.1)
    assert launcher.poll() is None and metrics.exists()
    launcher.send_signal(signum)
    launcher.wait(timeout=60)
    lock = os.open(tmp_path / "run" / run_folder.LOCK, os.O_RDWR)
    try:
        for _ in range(100):  # rank 0 holds the run folder's lock for as long as it lives
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the ranks still run {signum!r} to their launcher")
    finally:
        os.close(lock)
    epochs = len(metrics.read_text().splitlines())
    time.sleep(1)
    assert len(metrics.read_text().splitlines()) == epochs < 100


class TwoRanksStartedWith(parallel.World):
    """Rank 0 of two, whose allgather returns what the ranks were started with."""

    size = 2

    def __init__(self, *settings: dict):
        self.settings = list(settings)

    def allgather(self, value) -> list:
        assert value == self.settings[0]
        return self.settings


def test_ranks_started_with_different_settings_are_refused_before_any_step():
    alike = TwoRanksStartedWith({"lr": 0.02, "model": None}, {"lr": 0.02, "model": None})
    parallel.check_started_alike(alike, alike.settings[0])
    nan = TwoRanksStartedWith({"lr": float("nan")}, {"lr": float("nan")})  # NaN != NaN, yet alike
    parallel.check_started_alike(nan, nan.settings[0])
    unlike = TwoRanksStartedWith({"lr": 0.02, "model": None}, {"lr": 0.2, "model": None})
    with pytest.raises(parallel.ParallelError, match=r"\(lr: 0.02 on rank 0, 0.2 on rank 1\);") as refused:
        parallel.check_started_alike(unlike, unlike.settings[0])
    assert "model" not in str(refused.value)


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("flag, values", [("--lr", ("0.02", "0.2")), ("--limit-train", ("128", "192"))])
def test_mpiexec_ranks_given_different_flags_exit_2_with_one_error(tmp_path, flag, values):
    rank = [sys.executable, "-m", "scratchnet.train", "--limit-train", "128", "--limit-test", "64"]
    rank += ["--epochs", "1", "--no-progress", "--no-plots", "--out", str(tmp_path / "run")]
    command = [parallel.mpiexec(), "-n", "1", *rank, flag, values[0], ":", "-n", "1", *rank, flag, values[1]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=MPI_TIMEOUT, env=env)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "final" not in done.stdout, done.stderr
    assert len(errors) == 1 and f"{values[0]} on rank 0, {values[1]} on rank 1" in errors[0]
    assert not (tmp_path / "run").exists()


@needs_mpi
@pytest.mark.slow
def test_a_rank_killed_by_a_signal_is_named_with_exit_128_plus_the_signal(tmp_path):
    psutil = pytest.importorskip("psutil")
    command = [sys.executable, "-m", "scratchnet.train", "--processes", "2", "--limit-train", "2000"]
    command += ["--epochs", "100", "--no-progress", "--no-plots", "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rank_1 = None
    for _ in range(600):  # until rank 1 has started training
        if (tmp_path / "run" / "metrics.jsonl").exists():
            ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "-m" in p.cmdline()]
            rank_1 = next((p for p in ranks if p.environ().get("PMI_RANK") == "1"), None)
            break
        time.sleep(0.1)
    assert rank_1 is not None
    rank_1.kill()
    out, err = launcher.communicate(timeout=60)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert launcher.returncode == 128 + 9, err
    assert len(errors) == 1 and f"rank 1 (process {rank_1.pid}) was killed by signal 9 (SIGKILL" in errors[0]
    assert "BAD TERMINATION" not in out and "epoch   1/100" in out


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_an_error_on_rank_1_alone_is_told(tmp_path):
    env = _on_rank_1(
        tmp_path,
        "import scratchnet.data as D",
        "from scratchnet.errors import DatasetError",
        "def missing(*args, **kwargs):",
        "    raise DatasetError('the dataset files of rank 1 are missing')",
        "D.load_dataset = missing",
    )
    args = ["--limit-train", "128", "--limit-test", "64", "--epochs", "1"]
    done, final = _train(tmp_path, "run", args, processes=2, env=env)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and not final
    assert errors == ["error: rank 1: the dataset files of rank 1 are missing"], done.stderr
