"""What a run promises: a diverged run never reports success, no run is overwritten, the messages after a
failure or Ctrl-C name a checkpoint that exists. (Attacks on the files themselves: test_attacks.py.)"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from subprocess import PIPE

import numpy as np
import pytest
from PIL import Image
from test_parallel import MPI_TIMEOUT, ROOT, needs_mpi

import scratchnet.train as T
from scratchnet import evaluate, get_device, parallel, plots, predict, run_folder
from scratchnet.checkpoint import BEST, LAST, Checkpoint, load_checkpoint, save_checkpoint
from scratchnet.data.loader import DataLoader
from scratchnet.layers.loss import topk_correct
from scratchnet.models import LeNet5, Sequential
from scratchnet.optim import SGD
from scratchnet.parallel import mpiexec
from scratchnet.train import data_parallel, loop

SMALL = dict(limit_train=70, limit_test=32, epochs=1, progress=False, plots=False)
TINY = [
    "--limit-train",
    "70",
    "--limit-test",
    "64",
    "--batch-size",
    "64",
    "--epochs",
    "1",
    "--no-progress",
    "--no-plots",
]


def train_cli(argv, capsys) -> tuple[int, str, str]:
    status = T.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1. divergence ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", pytest.param("sim", marks=pytest.mark.sim)])
def test_nan_logits_are_never_top_k_correct(device):
    dev = get_device(device)
    logits = np.array([[np.nan, 0.0, 0.0], [0.0, np.nan, 1.0], [0.0, 2.0, 1.0], [np.nan] * 3], np.float32)
    labels = np.array([0, 2, 1, 1])
    counts = topk_correct(dev.array(logits), dev.array(labels), ks=(1, 2, 3, 5), device=device)
    assert counts == {1: 1, 2: 1, 3: 1, 5: 1}  # only the finite row 2 counts


@pytest.mark.parametrize("val_fraction", ["0.1", "0"])
def test_a_single_batch_epoch_that_diverges_exits_1_and_saves_nothing(tmp_path, capsys, val_fraction):
    """63 (or 70) training images in one batch: the only update is the epoch's last; it is checked too."""
    argv = [*TINY, "--lr", "1e30", "--epochs", "1", "--val-fraction", val_fraction, "--out", tmp_path / "run"]
    status, out, err = train_cli(argv, capsys)
    line = one_error_line(err)
    assert status == 1 and "final" not in out
    assert "training diverged" in line and "epoch 1" in line and "No checkpoint was written" in line
    assert not (tmp_path / "run" / LAST).exists() and not (tmp_path / "run" / BEST).exists()


def test_a_run_that_diverges_in_epoch_2_names_the_epoch_1_checkpoint(tmp_path, capsys, monkeypatch):
    """lr 1e300 overflows float32 at once; let epoch 1 use a sane rate so that epoch 2 diverges."""
    real_train_epoch = T.train_epoch

    def train_epoch(model, loader, loss_fn, optimizer, *args, epoch, **kwargs):
        optimizer.lr = 0.01 if epoch == 1 else 1e300
        return real_train_epoch(model, loader, loss_fn, optimizer, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", train_epoch)
    argv = [*TINY, "--lr", "1e300", "--epochs", "2", "--schedule", "none", "--out", tmp_path / "run"]
    status, _, err = train_cli(argv, capsys)
    line = one_error_line(err)
    assert status == 1 and "epoch 2" in line and "end of epoch 1" in line
    assert str(tmp_path / "run" / LAST) in line
    for name in (LAST, BEST):
        saved = load_checkpoint(tmp_path / "run" / name)
        assert saved.meta["epoch"] == 1
        assert all(np.isfinite(p).all() for p in saved.params.values())


def test_a_loader_worker_killed_in_epoch_2_names_the_epoch_1_checkpoint(tmp_path, capsys, monkeypatch):
    decode = DataLoader._decode

    def killed_in_epoch_2(self, b, order):
        if self.epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the worker, as the kernel's OOM killer would
        return decode(self, b, order)

    monkeypatch.setattr(DataLoader, "_decode", killed_in_epoch_2)  # (the forked workers inherit it)
    argv = [*TINY, "--epochs", "2", "--workers", "2", "--out", tmp_path / "run"]
    status, _, err = train_cli(argv, capsys)
    line = one_error_line(err)
    assert status == 2 and line.count("worker process died") == 1
    assert "end of epoch 1" in line and f"--resume {tmp_path / 'run' / LAST}" in line


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("damage", ["truncated", "removed"])
def test_an_image_that_goes_bad_after_epoch_1_names_the_epoch_1_checkpoint(
    tmp_path, capsys, monkeypatch, workers, damage
):
    """A real failure of the data in epoch 2: a training image is cut short or deleted after epoch 1."""
    image_folder(tmp_path / "data")
    victim = tmp_path / "data" / "train" / "a" / "0.png"
    save_epoch = loop._save_epoch

    def save_then_damage(run, epoch, improved):
        save_epoch(run, epoch, improved)
        victim.write_bytes(victim.read_bytes()[:40]) if damage == "truncated" else victim.unlink()

    monkeypatch.setattr(loop, "_save_epoch", save_then_damage)
    argv = ["--dataset", "folder", "--data-dir", tmp_path / "data", "--image-size", "28", "--epochs", "2"]
    argv += ["--workers", workers, "--no-progress", "--no-plots", "--out", tmp_path / "run"]
    status, out, err = train_cli(argv, capsys)
    line = one_error_line(err)
    assert status == 2 and "final" not in out
    assert line.count(str(victim)) == 1, line  # the cause once, not the message twice
    assert "end of epoch 1" in line and f"--resume {tmp_path / 'run' / LAST}" in line
    assert load_checkpoint(tmp_path / "run").meta["epoch"] == 1


def test_evaluate_refuses_a_diverged_checkpoint(tmp_path, capsys):
    T.train(
        T.TrainConfig(out=str(tmp_path), limit_train=70, limit_test=32, progress=False, plots=False), log=str
    )
    checkpoint = load_checkpoint(tmp_path)
    checkpoint.params = {k: np.full_like(v, np.nan) for k, v in checkpoint.params.items()}
    save_checkpoint(tmp_path / "nan.npz", checkpoint)
    status = evaluate.main(["--checkpoint", str(tmp_path / "nan.npz")])
    out, err = capsys.readouterr()
    assert status == 2 and "NaN/inf parameters" in one_error_line(err) and "accuracy" not in out


def test_evaluate_never_reports_nan_logits_as_accurate():
    config = T.TrainConfig(**SMALL)
    data = T.load_data(config)
    model = T.build_model(config, data.shape, len(data.classes))
    model.params["fc3.b"][...] = np.nan
    result = evaluate.evaluate(model, data.test, transform=data.eval_transform, confusion=True)
    assert result.accuracy == 0.0 and result.top5 == 0.0 and np.isnan(result.loss)
    assert np.trace(result.confusion) == 0 and result.confusion.sum() == 32


def test_metrics_never_hold_the_bare_nan_token(tmp_path):
    loop._write_metrics(
        tmp_path / "metrics.jsonl", [{"epoch": 1, "val_loss": float("nan"), "lr": float("inf")}]
    )
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"epoch": 1, "val_loss": None, "lr": None}


# --- 2. runs are never overwritten -----------------------------------------------------------------------
def test_a_non_empty_run_folder_is_refused_without_overwrite(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    status, _, err = train_cli([*TINY, "--out", tmp_path / "run"], capsys)
    assert status == 2 and "not empty" in one_error_line(err) and "--overwrite" in err
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    with pytest.raises(T.RunFolderError, match="not empty"):
        T.train(
            T.TrainConfig(out=str(tmp_path / "run"), limit_train=70, progress=False, plots=False), log=str
        )
    status, out, _ = train_cli([*TINY, "--out", tmp_path / "run", "--overwrite"], capsys)
    assert status == 0 and (tmp_path / "run" / LAST).exists()


def test_default_run_names_are_unique_within_one_second(tmp_path):
    names = [T.new_run_dir(tmp_path, "20260101-000000-lenet5-x") for _ in range(3)]
    assert [p.name for p in names] == [
        "20260101-000000-lenet5-x",
        "20260101-000000-lenet5-x-2",
        "20260101-000000-lenet5-x-3",
    ]
    assert all(p.is_dir() for p in names)


@pytest.mark.slow  # two trainer processes
def test_two_runs_started_together_with_one_out_never_mix_their_files(tmp_path):
    """Started at once with different seeds: one run writes the folder, the other is refused."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "scratchnet.train", *TINY, "--seed", seed, "--out", str(tmp_path / "run")],
            env=env,
            stdout=PIPE,
            stderr=PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    finished = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    assert sorted(status for status, _, _ in finished) == [0, 2], finished
    (refused,) = [err for status, _, err in finished if status == 2]
    assert "in use" in refused or "not empty" in refused, refused
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert load_checkpoint(tmp_path / "run").meta["config"]["seed"] == config["seed"]


def hold_lock(run_dir):
    """Lock ``run_dir`` as another running run would (a lock of its own open file: flock conflicts)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / run_folder.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return fd


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_folder_in_use_is_refused_to_a_new_run_and_to_a_resume(tmp_path, capsys, resume):
    status, _, _ = train_cli([*TINY, "--out", tmp_path / "run"], capsys)
    assert status == 0 and not (tmp_path / "run" / run_folder.LOCK).exists()  # released at the end
    before = (tmp_path / "run" / LAST).read_bytes()
    fd = hold_lock(tmp_path / "run")
    try:
        argv = ["--resume", tmp_path / "run", "--epochs", "2"] if resume else [*TINY, "--overwrite"]
        status, out, err = train_cli([*argv, "--out", tmp_path / "run", "--no-progress"], capsys)
    finally:
        os.close(fd)
    line = one_error_line(err)
    assert status == 2 and "in use by another run (process 4242)" in line and "final" not in out
    assert (tmp_path / "run" / LAST).read_bytes() == before


@pytest.mark.parametrize("name", [BEST, "epoch1.npz"])
def test_resuming_from_an_older_checkpoint_of_its_folder_needs_a_new_out(tmp_path, capsys, name):
    run = tmp_path / "run"
    status, _, _ = train_cli([*TINY, "--epochs", "2", "--out", run], capsys)
    assert status == 0
    if name != BEST:
        save_checkpoint(run / name, load_checkpoint(run))
    last, metrics = (run / LAST).read_bytes(), (run / "metrics.jsonl").read_text()
    status, out, err = train_cli(["--resume", run / name, "--epochs", "3", "--no-progress"], capsys)
    assert status == 2 and "--out NEW" in one_error_line(err) and "final" not in out
    assert (run / LAST).read_bytes() == last and (run / "metrics.jsonl").read_text() == metrics
    status, out, _ = train_cli(["--resume", run / name, "--epochs", "3", "--out", tmp_path / "new"], capsys)
    assert status == 0 and load_checkpoint(tmp_path / "new").meta["epoch"] == 3
    assert (run / LAST).read_bytes() == last


def test_an_empty_out_is_refused(capsys):
    status, out, err = train_cli([*TINY, "--out", ""], capsys)
    assert status == 2 and "empty" in one_error_line(err) and "final" not in out


@pytest.mark.parametrize("out", [["--out", "run"], []])  # named, and the default runs/<time>-...
def test_a_run_that_fails_to_start_leaves_no_empty_folder(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "no-data").mkdir()
    argv = [*TINY, "--dataset", "mnist", "--data-dir", "no-data", "--no-download", *out]
    status, _, err = train_cli(argv, capsys)
    assert status == 2 and "error:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-data", "runs"]
    assert not any((tmp_path / "runs").iterdir())


@needs_mpi
@pytest.mark.slow  # MPI processes
def test_default_named_runs_of_two_processes_leave_one_folder_each_or_none(tmp_path):
    (tmp_path / "no-data").mkdir()
    run = [sys.executable, "-m", "scratchnet.train", "--processes", "2", "--limit-train", "128"]
    run += ["--limit-test", "64", "--epochs", "1", "--no-progress", "--no-plots"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=MPI_TIMEOUT)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "runs").iterdir()  # one folder for the two ranks
    assert (folder / LAST).is_file()
    failing = [*run, "--dataset", "mnist", "--data-dir", "no-data", "--no-download"]
    done = subprocess.run(failing, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=MPI_TIMEOUT)
    assert done.returncode == 2 and "MNIST train files not found" in done.stderr
    assert list((tmp_path / "runs").iterdir()) == [folder]  # and none for a run that failed to start


def test_a_run_resumes_from_another_folder_and_its_data_may_move(tmp_path, capsys, monkeypatch):
    image_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "folder", "--data-dir", "data", "--image-size", "28", "--out", "run"]
    status, _, err = train_cli([*argv, "--epochs", "1", "--no-progress", "--no-plots"], capsys)
    assert status == 0, err
    monkeypatch.chdir(tmp_path / "run")  # "data" means nothing here
    status, _, err = train_cli(["--resume", ".", "--epochs", "2", "--no-progress", "--no-plots"], capsys)
    assert status == 0, err
    (tmp_path / "data").rename(tmp_path / "moved")
    again = ["--resume", ".", "--epochs", "3", "--data-dir", tmp_path / "moved", "--no-progress"]
    status, _, err = train_cli(again, capsys)
    assert status == 0, err
    assert load_checkpoint(tmp_path / "run").meta["config"]["data_dir"] == str(tmp_path / "moved")


def test_an_image_folder_with_an_empty_test_split_is_refused_before_training(tmp_path, capsys, monkeypatch):
    image_folder(tmp_path / "data")
    (tmp_path / "data" / "test").rename(tmp_path / "old-test")
    (tmp_path / "data" / "val").mkdir()  # the test split falls back to val/, which is empty

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(T, "train_epoch", no_training)
    argv = ["--dataset", "folder", "--data-dir", tmp_path / "data", "--image-size", "28", "--no-progress"]
    status, _, err = train_cli([*argv, "--out", tmp_path / "run"], capsys)
    assert status == 2 and "holds no images" in one_error_line(err)


# --- a finished run is kept when its pictures fail ------------------------------------------------------
def image_folder(root, class_names=("a", "b")):
    """train/ and test/ with 6 random 28x28 grey PNGs per class."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in class_names:
            (root / split / name).mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_class_folders_named_like_matplotlib_math_are_drawn_as_text(tmp_path, capsys):
    image_folder(tmp_path / "data", ("$x^$", "plain"))
    argv = ["--dataset", "folder", "--data-dir", tmp_path / "data", "--image-size", "28", "--epochs", "1"]
    status, out, err = train_cli([*argv, "--no-progress", "--out", tmp_path / "run"], capsys)
    assert status == 0 and "final test_accuracy" in out and "warning" not in out, err
    assert (tmp_path / "run" / "confusion.png").stat().st_size > 0


def test_a_full_disk_at_the_pictures_keeps_the_result(tmp_path, capsys, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "plot_curves", full)
    status, out, _ = train_cli([*TINY[:-1], "--out", tmp_path / "run"], capsys)  # (TINY without --no-plots)
    assert status == 0 and out.splitlines()[-1].startswith("final test_accuracy=")
    assert "warning: the pictures of" in out and "No space left on device" in out
    assert load_checkpoint(tmp_path / "run").meta["epoch"] == 1


@pytest.mark.parametrize(
    "target, needle", [("missing/c.png", "does not exist"), ("c.xyz", "cannot save a picture as c.xyz")]
)
def test_evaluate_confusion_to_an_unusable_path_is_one_error(tmp_path, capsys, monkeypatch, target, needle):
    T.train(T.TrainConfig(out=str(tmp_path / "run"), **SMALL), log=str)
    monkeypatch.chdir(tmp_path)
    status = evaluate.main(["--checkpoint", "run", "--limit-test", "32", "--confusion", target])
    out, err = capsys.readouterr()
    assert status == 2 and needle in one_error_line(err) and "top-1 accuracy" in out


def test_evaluate_confusion_without_a_suffix_names_the_png_it_wrote(tmp_path, capsys, monkeypatch):
    T.train(T.TrainConfig(out=str(tmp_path / "run"), **SMALL), log=str)
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--checkpoint", "run", "--limit-test", "32", "--confusion", "r1"]) == 0
    assert "confusion matrix saved to r1.png" in capsys.readouterr().out
    assert (tmp_path / "r1.png").is_file() and not (tmp_path / "r1").exists()


# --- which checkpoint file each command reads ----------------------------------------------------------
@pytest.fixture(scope="module")
def run_with_an_older_best(tmp_path_factory):
    """A run folder whose best.npz (epoch 1) is not its last.npz (epoch 2)."""
    run_dir = tmp_path_factory.mktemp("run")
    T.train(T.TrainConfig(out=str(run_dir), **{**SMALL, "epochs": 2}), log=str)
    last = load_checkpoint(run_dir / LAST)
    save_checkpoint(run_dir / BEST, dataclasses.replace(last, meta={**last.meta, "epoch": 1}))
    return run_dir


def test_evaluate_and_predict_name_the_checkpoint_file_of_a_run_folder(
    run_with_an_older_best, tmp_path, capsys
):
    run_dir = run_with_an_older_best
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    for command, argv in ((evaluate, ["--limit-test", "8"]), (predict, [tmp_path / "x.png"])):
        assert command.main([*map(str, argv), "--checkpoint", str(run_dir)]) == 0
        first_line = capsys.readouterr().out.splitlines()[0]
        assert first_line == f"model: {run_dir / LAST} (lenet5 trained on fashion-mnist-mini for 2 epochs)"


def test_pretrained_and_resume_name_the_checkpoint_file_of_a_run_folder(
    run_with_an_older_best, tmp_path, capsys
):
    run_dir = run_with_an_older_best
    status, out, err = train_cli([*TINY, "--pretrained", run_dir, "--out", tmp_path / "new"], capsys)
    assert status == 0 and f"pretrained: every layer from {run_dir / BEST}\n" in out, err
    argv = ["--resume", run_dir, "--epochs", "3", "--no-progress", "--no-plots", "--out", tmp_path / "more"]
    status, out, err = train_cli(argv, capsys)
    assert status == 0 and f"resuming from {run_dir / LAST} after epoch 2" in out, err


@pytest.mark.parametrize(
    "command, option, file",
    [
        (evaluate, "--checkpoint", LAST),
        (predict, "--checkpoint", LAST),
        (T, "--resume", LAST),
        (T, "--pretrained", f"{BEST}, else {LAST}"),
    ],  # fmt: skip
)
def test_the_help_says_which_checkpoint_of_a_run_folder_is_read(capsys, monkeypatch, command, option, file):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps no help (a long option's goes on the next line)
    assert command.main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"{option} "))
    help_of_option = lines[at] if len(lines[at].split()) > 2 else lines[at + 1]
    assert f"run folder (uses its {file})" in help_of_option, help_of_option


# --- 5. what the messages after Ctrl-C say -----------------------------------------------------------------
def test_ctrl_c_after_the_last_epoch_says_training_finished(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_parallel, "evaluate", interrupted)  # the test pass after the epochs
    status, out, _ = train_cli([*TINY, "--val-fraction", "0", "--out", tmp_path / "run"], capsys)
    assert status == 130
    assert (
        "interrupted after training finished (epoch 1)" in out
        and f"checkpoints are in {tmp_path / 'run'}" in out
    )
    assert load_checkpoint(tmp_path / "run").meta["epoch"] == 1


class OtherRankInterrupted(parallel.World):
    """Rank 0 of two, whose sums add rank 1's numbers: the same loss and count, and a Ctrl-C it noted."""

    size = 2

    def sum(self, values):
        other = [*values[:-1], 1] if len(values) == 3 else [1]  # rank 1 was interrupted
        return np.add(values, other, dtype=np.float64)

    def allreduce_(self, flat):
        flat *= 2


def test_every_process_stops_at_the_step_where_any_of_them_saw_ctrl_c():
    sharing = data_parallel.DataParallel(OtherRankInterrupted())
    model = LeNet5()
    with pytest.raises(data_parallel.InterruptedTogether):  # this process saw nothing, rank 1 did
        sharing.combine_step(model, 0.5, 3, 4, 8)
    with pytest.raises(data_parallel.InterruptedTogether):
        sharing.stop_if_interrupted()
    with sharing.stopping_together():  # a Ctrl-C here is noted, not raised in the middle of a step
        signal.raise_signal(signal.SIGINT)
        assert sharing.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    alone = data_parallel.DataParallel()
    with alone.stopping_together(), pytest.raises(KeyboardInterrupt):  # one process stops at once
        signal.raise_signal(signal.SIGINT)


class MirroredRank(parallel.World):
    """Rank 0 of two, whose rank 1 computes the same and sees no Ctrl-C: every sum doubles this rank's
    numbers (so a flag only this rank raised stays raised). Records each collective, in order."""

    size = 2

    def __init__(self):
        self.collectives = []

    def sum(self, values):
        self.collectives.append(f"sum of {len(values)}")
        return 2 * np.asarray(values, dtype=np.float64)

    def allreduce_(self, flat):
        self.collectives.append(f"allreduce of {flat.size}")
        flat *= 2

    def on_root(self, action):
        self.collectives.append("on_root")
        return action()


def train_as_rank_0_of_two(run_dir, monkeypatch) -> tuple[MirroredRank, list[str], BaseException | None]:
    """Train 2 epochs of 4 steps in this process as rank 0 of a :class:`MirroredRank` world; returns the
    world, the log and what ended the run, if anything did."""
    world, lines, ended = MirroredRank(), [], None
    with monkeypatch.context() as patch:
        patch.setattr(data_parallel.parallel, "world", lambda: world)
        config = T.TrainConfig(out=str(run_dir), **{**SMALL, "epochs": 2, "batch_size": 16})
        try:
            T.train(config, log=lines.append)
        except KeyboardInterrupt as e:
            ended = e
    return world, lines, ended


def ctrl_c_in_a_simulated_kernel():
    """What the simulator raises on the process where a Ctrl-C stopped one of its launches (alone)."""
    raise KeyboardInterrupt("conv2d_forward was interrupted (Ctrl-C) in block (0, 0, 0)")


# Per epoch: 4 steps (63 training images, batches of 16), then the last batch's loss again, then the
# validation; after epoch 2, the test pass. Each part: the method a Ctrl-C interrupts, at which call.
PARTS = {
    "forward": (Sequential, "forward", 8),  # epoch 2, step 2
    "backward": (Sequential, "backward", 6),  # epoch 2, step 2
    "update": (SGD, "step", 6),  # epoch 2, step 2
    "last update": (SGD, "step", 8),  # epoch 2, step 4: no later step would see it
    "last loss": (Sequential, "forward", 11),  # epoch 2, the last batch's loss after the update
    "validation": (Sequential, "forward", 12),
    "test pass": (Sequential, "forward", 13),
}


@pytest.mark.parametrize("part", PARTS)
def test_a_ctrl_c_that_stops_a_simulated_kernel_of_one_process_stops_all_of_them_together(
    tmp_path, monkeypatch, part
):
    """The simulator stops a launch on the process where Ctrl-C landed and raises KeyboardInterrupt there
    alone: that process must still join the collective where the others wait, which tells them all."""
    whole, _, ended = train_as_rank_0_of_two(tmp_path / "whole", monkeypatch)
    assert ended is None
    owner, name, call = PARTS[part]
    real, calls = getattr(owner, name), []

    def interrupted_at_call(self, *args, **kwargs):
        calls.append(name)
        if len(calls) == call:
            ctrl_c_in_a_simulated_kernel()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted_at_call)
    world, lines, ended = train_as_rank_0_of_two(tmp_path / "run", monkeypatch)
    assert isinstance(ended, data_parallel.InterruptedTogether), ended  # every process stops, not this alone
    assert world.collectives == whole.collectives[: len(world.collectives)]  # the others wait in the last
    assert world.collectives[-1].startswith("sum")  # ... which tells them all (its flag)
    said = [line for line in lines if line.startswith("\ninterrupted")]
    saved = load_checkpoint(tmp_path / "run")
    expected = load_checkpoint(tmp_path / "whole")
    if part == "test pass":
        assert len(said) == 1 and "after training finished (epoch 2)" in said[0], lines
        assert all(np.array_equal(saved.params[k], v) for k, v in expected.params.items())
    else:
        assert len(said) == 1 and f"--resume {tmp_path / 'run' / LAST}" in said[0], lines
        assert saved.meta["epoch"] == 1  # the interrupted epoch 2 never reaches a checkpoint
        kept = [{k: v for k, v in r.items() if k != "images_per_second"} for r in saved.meta["history"]]
        assert kept == [{k: v for k, v in expected.meta["history"][0].items() if k != "images_per_second"}]


def test_a_ctrl_c_noted_during_the_test_pass_stops_every_process_after_it(tmp_path, monkeypatch):
    """Outside a kernel a Ctrl-C is only noted: the test pass ends, then all processes stop together."""
    whole, _, _ = train_as_rank_0_of_two(tmp_path / "whole", monkeypatch)
    real, calls = Sequential.forward, []

    def ctrl_c_at_the_test_pass(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == PARTS["test pass"][2]:
            signal.raise_signal(signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Sequential, "forward", ctrl_c_at_the_test_pass)
    world, lines, ended = train_as_rank_0_of_two(tmp_path / "run", monkeypatch)
    assert isinstance(ended, data_parallel.InterruptedTogether), ended
    assert (
        world.collectives == whole.collectives and whole.collectives[-1] == "sum of 1"
    )  # the last: the stop
    assert any("interrupted after training finished (epoch 2)" in line for line in lines), lines


SLOW_RANK_1 = """
import os, time
if os.environ.get("PMI_RANK") == "1":  # rank 0 spends its steps waiting in the allreduce
    import scratchnet.parallel as p
    allreduce = p.GradientAllreduce.__call__
    def slow(self, *args):
        time.sleep(0.2)
        return allreduce(self, *args)
    p.GradientAllreduce.__call__ = slow
"""


@needs_mpi
@pytest.mark.slow  # MPI processes
@pytest.mark.parametrize("delay", [0.0, 0.7, 1.9])  # seconds after epoch 1: in a step, the validation, ...
@pytest.mark.parametrize("launcher", ["--processes", "mpiexec"])
def test_ctrl_c_of_two_processes_while_rank_0_waits_says_how_to_resume(tmp_path, launcher, delay):
    """Ctrl-C in a terminal signals the whole process group: the launcher, mpiexec and both ranks."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_RANK_1)
    command = [sys.executable, "-m", "scratchnet.train", "--limit-train", "640", "--batch-size", "64"]
    command += ["--epochs", "20", "--no-progress", "--no-plots", "--out", str(tmp_path / "run")]
    if launcher == "--processes":
        command = [*command, "--processes", "2"]
    else:
        command = [mpiexec(), "-n", "2", *command]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'hook'}:{ROOT}"}
    job = subprocess.Popen(command, env=env, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True)
    for _ in range(600):  # until epoch 1 is saved
        if (tmp_path / "run" / "metrics.jsonl").exists() or job.poll() is not None:
            break
        time.sleep(0.1)
    time.sleep(delay)
    os.killpg(job.pid, signal.SIGINT)
    out, err = job.communicate(timeout=MPI_TIMEOUT)
    said = [line for line in out.splitlines() if line.startswith("interrupted during epoch")]
    assert job.returncode == 130 and len(said) == 1, out + err
    resume = said[0].split("--resume ")[1]
    assert load_checkpoint(resume).meta["epoch"] >= 1
    assert "Abort" not in err and "Traceback" not in err and "final" not in out


CTRL_C_IN_A_KERNEL_OF_RANK_1 = """
import os, pathlib
if os.environ.get("PMI_RANK") == "1":  # after epoch 1, the simulator stops a launch of rank 1 alone
    from scratchnet.sim import launcher
    launch, saved = launcher.SimKernel.__call__, pathlib.Path(os.environ["RUN_DIR"], "metrics.jsonl")
    def interrupted(self, *args, **kwargs):
        if saved.exists() and not os.environ.get("INTERRUPTED"):
            os.environ["INTERRUPTED"] = "1"
            raise KeyboardInterrupt(f"{self.name} was interrupted (Ctrl-C) in block (0, 0, 0)")
        return launch(self, *args, **kwargs)
    launcher.SimKernel.__call__ = interrupted
"""


@needs_mpi
@pytest.mark.sim
@pytest.mark.slow  # MPI processes on the simulator
def test_ctrl_c_in_a_simulated_kernel_of_rank_1_stops_both_and_says_how_to_resume(tmp_path):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(CTRL_C_IN_A_KERNEL_OF_RANK_1)
    command = [sys.executable, "-m", "scratchnet.train", "--device", "sim", "--limit-train", "48"]
    command += ["--limit-test", "16", "--batch-size", "16", "--epochs", "3", "--no-progress", "--no-plots"]
    command += ["--out", str(tmp_path / "run"), "--processes", "2"]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'hook'}:{ROOT}", "RUN_DIR": str(tmp_path / "run")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=MPI_TIMEOUT)
    said = [line for line in done.stdout.splitlines() if line.startswith("interrupted during epoch 2")]
    assert done.returncode == 130 and len(said) == 1, done.stdout + done.stderr
    assert f"--resume {tmp_path / 'run' / LAST}" in said[0]
    assert load_checkpoint(tmp_path / "run").meta["epoch"] == 1
    assert "Abort" not in done.stderr and "Traceback" not in done.stderr and "final" not in done.stdout


# --- 9. hyper-parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", float("inf")),
        ("momentum", float("nan")),
        ("momentum", 5.0),
        ("weight_decay", float("nan")),
        ("gamma", -1.0),
        ("gamma", float("nan")),
        ("min_lr", -1.0),
        ("min_lr", float("nan")),
        ("early_stopping", 0),
        ("seed", -1),
        ("seed", 2**32),
        ("step_size", 0),
        ("image_size", 0),
        ("limit_train", 0),
    ],
)
def test_train_config_refuses_nonsense(field, value):
    with pytest.raises(T.ConfigError, match=field):
        T.TrainConfig(**{field: value})


def test_checkpoint_round_trip_still_works_after_the_checks(tmp_path):
    checkpoint = Checkpoint(params={"w": np.ones(2)}, meta={"epoch": 1})
    assert load_checkpoint(save_checkpoint(tmp_path / "c.npz", checkpoint)).meta == {"epoch": 1}
