"""Bad input on every command line: exit status 2, exactly one ``error: ...`` line, never a traceback.

Every case calls the module's ``main(argv)`` in this process (the same code as ``python -m ...`` without
the start-up time). The flag tables list each flag's invalid values; the file cases build broken inputs
(damaged checkpoints, odd image files, unusable run folders).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchnet import _paths, evaluate, predict, pretrained, train
from scratchnet.checkpoint import LAST
from scratchnet.train import preparation

TINY = ["--limit-train", "70", "--limit-test", "32", "--batch-size", "32", "--no-progress", "--no-plots"]


def call(module, argv, capsys) -> tuple[int, str]:
    """``module.main(argv)``: (exit status, stderr), after checking the one-error-line contract."""
    status = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, err


def assert_bad_input(status: int, err: str, *needles: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in error_lines[0], (needle, error_lines[0])


# --- train: every flag's invalid values ------------------------------------------------------------------
TRAIN_BAD_FLAGS = [
    (["--lr", "inf"], "lr must be a finite number > 0"),
    (["--lr", "nan"], "lr must be"),
    (["--lr", "0"], "lr must be"),
    (["--lr", "-0.1"], "lr must be"),
    (["--lr", "abc"], "--lr"),
    (["--momentum", "-0.5"], "momentum must be in [0, 1)"),
    (["--momentum", "nan"], "momentum"),
    (["--momentum", "1"], "momentum"),
    (["--momentum", "5"], "momentum"),
    (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0"),
    (["--weight-decay", "nan"], "weight_decay"),
    (["--weight-decay", "inf"], "weight_decay"),
    (["--schedule", "step", "--step-size", "0"], "step_size must be an integer >= 1"),
    (["--schedule", "step", "--step-size", "1", "--gamma", "-1"], "gamma must be in (0, 1]"),
    (["--gamma", "nan"], "gamma"),
    (["--gamma", "0"], "gamma"),
    (["--gamma", "1.5"], "gamma"),
    (["--min-lr", "-0.001"], "min_lr"),
    (["--min-lr", "nan"], "min_lr"),
    (["--min-lr", "1"], "min_lr"),  # above --lr
    (["--seed", "-1"], "seed must be an integer in [0, 2^32)"),
    (["--seed", str(2**32)], "seed"),
    (["--epochs", "0"], "epochs"),
    (["--epochs", "x"], "--epochs"),
    (["--batch-size", "0"], "batch_size"),
    (["--limit-train", "0"], "limit_train"),
    (["--limit-test", "0"], "limit_test"),
    (["--image-size", "0"], "image_size"),
    (["--early-stopping", "0"], "early_stopping"),
    (["--val-fraction", "1"], "val_fraction"),
    (["--val-fraction", "nan"], "val_fraction"),
    (["--model", "resnet50"], "invalid choice"),
    (["--dataset", "imagenet"], "invalid choice"),
    (["--device", "tpu"], "invalid choice"),
    (["--dtype", "float16"], "invalid choice"),
    (["--schedule", "linear"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--limit-train", "1"], "empty train or validation part"),  # too small to split
    (["--dataset", "folder"], "--data-dir"),
    (["--classes", "0-99999999999999"], "99999999999999 is not in 0..9"),  # refused before listing the range
    (["--model", "resnet20-cifar", "--image-size", "1000000"], "image_size must be at most 1024"),
]


@pytest.mark.parametrize(
    "argv, needle", TRAIN_BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_train_refuses_bad_flag_values(argv, needle, tmp_path, capsys):
    status, err = call(train, [*TINY, "--out", tmp_path / "run", *argv], capsys)
    assert_bad_input(status, err, needle)
    assert not (tmp_path / "run" / LAST).exists()


def test_a_long_class_range_gives_a_short_error_line(tmp_path, capsys):
    status, err = call(train, [*TINY, "--out", tmp_path / "run", "--classes", "0-9999999"], capsys)
    assert_bad_input(status, err, "9999999 is not in 0..9")
    assert len(err) < 200


def test_running_out_of_memory_is_one_error_line(tmp_path, capsys, monkeypatch):
    def too_large(config):
        raise MemoryError("Unable to allocate 3.64 TiB for an array with shape (1000000, 1000000)")

    monkeypatch.setattr(preparation, "load_data", too_large)
    status, err = call(train, [*TINY, "--out", tmp_path / "run"], capsys)
    assert_bad_input(status, err, "not enough memory: Unable to allocate 3.64 TiB")


def test_resume_of_a_missing_checkpoint(tmp_path, capsys):
    status, err = call(train, ["--resume", tmp_path / "missing.npz", "--no-progress"], capsys)
    assert_bad_input(status, err, "no checkpoint at")


def test_a_folder_dataset_of_another_size_suggests_image_size_or_a_model(tmp_path, capsys):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(
                    tmp_path / "images" / split / name / f"{i}.png"
                )
    argv = ["--dataset", "folder", "--data-dir", tmp_path / "images", "--out", tmp_path / "run", *TINY]
    status, err = call(train, argv, capsys)
    assert_bad_input(status, err, "--image-size", "choose another model")


# --- train: run folders ------------------------------------------------------------------------------------
def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    status, err = call(train, ["--out", tmp_path / "file", *TINY], capsys)
    assert_bad_input(status, err, "is a file")
    status, err = call(train, ["--out", tmp_path / "file" / "run", *TINY], capsys)
    assert_bad_input(status, err, "is a file")


def refuse_writes(monkeypatch, folder: Path) -> None:
    """Make ``folder`` read-only; as root (which ignores permissions) refuse its writes by patching."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real_touch = Path.touch

        def touch(self, *args, **kwargs):
            if self.parent == folder:
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_touch(self, *args, **kwargs)

        monkeypatch.setattr(Path, "touch", touch)


def test_read_only_out_and_resume_of_a_read_only_run_folder(tmp_path, capsys, monkeypatch, small_run):
    folder = tmp_path / "ro"
    folder.mkdir()
    refuse_writes(monkeypatch, folder)
    status, err = call(train, ["--out", folder, *TINY], capsys)
    assert_bad_input(status, err, "cannot write into run folder", "--out")
    monkeypatch.undo()
    folder.chmod(0o755)

    run_copy = tmp_path / "copy"
    run_copy.mkdir()
    (run_copy / LAST).write_bytes((small_run / LAST).read_bytes())
    refuse_writes(monkeypatch, run_copy)
    status, err = call(train, ["--resume", run_copy, "--epochs", "3", "--no-progress", "--no-plots"], capsys)
    assert_bad_input(status, err, "cannot write into run folder", "writable --out")
    run_copy.chmod(0o755)


def test_a_full_disk_is_named(tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_paths.os, "fsync", full)
    status, err = call(train, ["--out", tmp_path / "run", *TINY], capsys)
    assert_bad_input(status, err, "the disk is full")


# --- damaged checkpoints -----------------------------------------------------------------------------------
def rewrite(src: Path, dst: Path, change) -> Path:
    """Copy the checkpoint ``src`` to ``dst`` with ``change(arrays, skeleton)`` applied to its entries."""
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    skeleton = json.loads(str(arrays.pop("skeleton.json")))
    text = change(arrays, skeleton)
    arrays["skeleton.json"] = np.array(text if isinstance(text, str) else json.dumps(skeleton))
    np.savez(dst, **arrays)
    return dst


def drop_key(key):
    def change(arrays, skeleton):
        del skeleton["meta"][key]

    return change


def wrong_shape(arrays, skeleton):
    arrays["params/conv1.W"] = np.zeros((2, 2))


def missing_array(arrays, skeleton):
    del arrays["params/conv1.W"]


def nan_weights(arrays, skeleton):
    arrays["params/conv1.W"] = np.full_like(arrays["params/conv1.W"], np.nan)


def set_in(part: str, key: str, value):
    def change(arrays, skeleton):
        skeleton[part][key] = value

    return change


def set_meta(key, value):
    def change(arrays, skeleton):
        skeleton["meta"][key] = value

    return change


def array_named_by_a_list(arrays, skeleton):
    skeleton["params"]["conv1.W"] = {"__array__": [1]}


def bytes_changed(change):
    def damage(src: Path, dst: Path) -> Path:
        dst.write_bytes(change(bytearray(src.read_bytes())))
        return dst

    return damage


def broken_npy_header(raw: bytearray) -> bytes:  # NumPy's header parser: a tokenize error
    at = raw.index(b"(120, 84), }")  # (a large entry: its header is parsed before the CRC is checked)
    raw[at + 11] = 0xCC
    return bytes(raw)


def unknown_compression(raw: bytearray) -> bytes:  # zipfile: NotImplementedError, not BadZipFile
    at = raw.rindex(b"PK\x01\x02") + 10  # the compression method of the last central directory entry
    raw[at : at + 2] = (0xB800).to_bytes(2, "little")
    return bytes(raw)


def compressed_and_flipped(src: Path, dst: Path) -> Path:  # a deflated entry that no longer inflates
    with np.load(src) as npz:
        np.savez_compressed(dst, **{k: npz[k] for k in npz.files})
    raw = bytearray(dst.read_bytes())
    at = raw.index(b"params/conv1.W.npy") + 50
    raw[at : at + 8] = b"\xff" * 8
    dst.write_bytes(bytes(raw))
    return dst


DAMAGED = {
    "npy header": bytes_changed(broken_npy_header),
    "zip compression method": bytes_changed(unknown_compression),
    "deflate data": compressed_and_flipped,
    "json 100,000 deep": lambda src, dst: rewrite(src, dst, lambda a, s: "[" * 100_000),
    "num_classes 1e12": lambda src, dst: rewrite(
        src, dst, set_in("meta", "model_config", {"name": "lenet5", "num_classes": 10**12})
    ),
    "classes a string": lambda src, dst: rewrite(src, dst, set_meta("classes", "abc")),
    "input_shape short": lambda src, dst: rewrite(src, dst, set_meta("input_shape", [1, 28])),
    "config a list": lambda src, dst: rewrite(src, dst, set_meta("config", [])),
    "history a number": lambda src, dst: rewrite(src, dst, set_meta("history", 5)),
    "best a list": lambda src, dst: rewrite(src, dst, set_meta("best", [])),
    "dropout counts": lambda src, dst: rewrite(src, dst, set_meta("dropout_rng_calls", {"drop": "x"})),
    "array named by a list": lambda src, dst: rewrite(src, dst, array_named_by_a_list),
    "empty": lambda src, dst: dst.write_bytes(b"") and dst,
    "random": lambda src, dst: dst.write_bytes(np.random.default_rng(0).bytes(4096)) and dst,
    "truncated": lambda src, dst: dst.write_bytes(src.read_bytes()[:1000]) and dst,
    "bad json": lambda src, dst: rewrite(src, dst, lambda a, s: "{not json"),
    "no meta keys": lambda src, dst: rewrite(src, dst, drop_key("model_config")),
    "no history": lambda src, dst: rewrite(src, dst, drop_key("history")),
    "wrong shape": lambda src, dst: rewrite(src, dst, wrong_shape),
    "missing array": lambda src, dst: rewrite(src, dst, missing_array),
    "nan weights": lambda src, dst: rewrite(src, dst, nan_weights),
}


RESUME_ONLY = ("no history", "history a number", "best a list", "dropout counts")  # what evaluate never reads
EVALUATE_ONLY = ("classes a string", "input_shape short")  # what a resumed run never reads


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "run"
    assert train.main(["--out", str(out), "--epochs", "1", *TINY]) == 0
    return out


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_damaged_checkpoints_are_refused_by_every_command(damage, small_run, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    bad = folder / LAST
    DAMAGED[damage](small_run / LAST, bad)
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    if damage not in RESUME_ONLY:
        status, err = call(evaluate, ["--checkpoint", bad], capsys)
        assert_bad_input(status, err, str(bad))
        status, err = call(predict, [image, "--checkpoint", bad], capsys)
        assert_bad_input(status, err, str(bad))
    if damage in EVALUATE_ONLY:
        return
    status, err = call(train, ["--resume", folder, "--epochs", "2", "--no-progress", "--no-plots"], capsys)
    assert_bad_input(status, err)
    assert "pickled" not in err


def nan_velocity(arrays, skeleton):
    arrays["optimizer/velocity.conv1.W"] = np.full_like(arrays["optimizer/velocity.conv1.W"], np.nan)


# What only a resumed run reads (its SGD and schedule state), and what only evaluate and predict read.
BAD_OPTIMIZER_STATE = {
    "momentum 1.5": (set_in("optimizer", "momentum", 1.5), "momentum must be in [0, 1)"),
    "weight decay -3": (set_in("optimizer", "weight_decay", -3.0), "weight_decay must be"),
    "lr nan": (set_in("optimizer", "lr", float("nan")), "lr must be"),
    "nan velocity": (nan_velocity, "velocity.conv1.W holds NaN/inf"),
    "base_lr nan": (set_in("scheduler", "base_lr", float("nan")), "base_lr must be"),
    "epoch -1": (set_in("scheduler", "epoch", -1), "epoch must be an integer >= 0"),
}
BAD_NORMALIZATION = {
    "nan mean": ({"mean": [float("nan")], "std": [0.35]}, "finite"),
    "zero std": ({"mean": [0.28], "std": [0.0]}, "std must be > 0"),
    "three channels": ({"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}, "one per channel"),
    "a string": ({"mean": "0.28", "std": [0.35]}, "one per channel"),
}


@pytest.mark.parametrize("damage", list(BAD_OPTIMIZER_STATE))
def test_a_resume_refuses_optimizer_state_out_of_range(damage, small_run, tmp_path, capsys):
    change, needle = BAD_OPTIMIZER_STATE[damage]
    (tmp_path / "run").mkdir()
    rewrite(small_run / LAST, tmp_path / "run" / LAST, change)
    status, err = call(train, ["--resume", tmp_path / "run", "--epochs", "2", "--no-progress"], capsys)
    assert_bad_input(status, err, needle, str(tmp_path / "run" / LAST))
    assert "diverged" not in err


@pytest.mark.parametrize("damage", list(BAD_NORMALIZATION))
def test_evaluate_and_predict_refuse_a_normalization_that_is_not_usable(damage, small_run, tmp_path, capsys):
    normalization, needle = BAD_NORMALIZATION[damage]
    bad = rewrite(small_run / LAST, tmp_path / "bad.npz", set_in("meta", "normalization", normalization))
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    for module, argv in ((evaluate, ["--checkpoint", bad]), (predict, [image, "--checkpoint", bad])):
        status, err = call(module, argv, capsys)
        assert_bad_input(status, err, needle, str(bad))


# --- evaluate -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--batch-size", "0"], "batch_size"),
        (["--batch-size", "-3"], "batch_size"),
        (["--batch-size", "x"], "--batch-size"),
        (["--limit-test", "0"], "limit"),
        (["--split", "val"], "invalid choice"),
    ],
)
def test_evaluate_refuses_bad_values(argv, needle, small_run, capsys):
    status, err = call(evaluate, ["--checkpoint", small_run, *argv], capsys)
    assert_bad_input(status, err, needle)


def test_evaluate_refuses_mnist_for_a_fashion_mnist_checkpoint_before_looking_for_files(small_run, capsys):
    status, err = call(evaluate, ["--checkpoint", small_run, "--dataset", "mnist"], capsys)
    assert_bad_input(status, err, "classes", "fashion-mnist-mini")


def test_evaluate_refuses_a_dataset_with_other_classes(small_run, tmp_path, capsys):
    for name in ("cat", "dog"):
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("L", (28, 28)).save(tmp_path / "test" / name / "0.png")
    argv = ["--checkpoint", small_run, "--dataset", "folder", "--data-dir", tmp_path]
    status, err = call(evaluate, argv, capsys)
    assert_bad_input(status, err, "classes")


# --- predict ------------------------------------------------------------------------------------------------
def truncated_jpeg(path: Path) -> Path:
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path.with_suffix(".full.jpg"))
    path.write_bytes(path.with_suffix(".full.jpg").read_bytes()[:300])
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def bomb(path: Path) -> Path:
    Image.new("1", (10_000, 10_000)).save(path)  # 10^8 pixels in a few kB of PNG
    return path


PREDICT_BAD = {
    "truncated jpeg": (truncated_jpeg, "cannot decode image"),
    "directory": (lambda p: p.mkdir() or p, "not a regular file"),
    "fifo": (fifo, "not a regular file"),
    "bomb": (bomb, "pixels"),
    "missing": (lambda p: p, "no image file"),
    "text": (lambda p: p.write_text("hello") and p, "not a PNG, JPEG"),
}


@pytest.mark.parametrize("case", list(PREDICT_BAD))
def test_predict_refuses_bad_image_files(case, small_run, tmp_path, capsys):
    make, needle = PREDICT_BAD[case]
    path = make(tmp_path / "input.png")
    signal.alarm(60)  # a FIFO used to block forever: fail instead of hanging the suite
    try:
        status, err = call(predict, [path, "--checkpoint", small_run], capsys)
    finally:
        signal.alarm(0)
    assert_bad_input(status, err, needle)


@pytest.mark.parametrize("top", ["0", "-1", "11", "x"])
def test_predict_top_must_be_between_1_and_the_number_of_classes(top, small_run, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    status, err = call(predict, [image, "--checkpoint", small_run, "--top", top], capsys)
    assert_bad_input(status, err, "--top")


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("three") / "run"
    assert train.main(["--out", str(out), "--epochs", "1", "--classes", "7,0-1", *TINY]) == 0
    return out


def test_a_three_class_run_prints_no_top5(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "run"), "--epochs", "1", "--classes", "0-2", *TINY]
    assert train.main(argv) == 0
    final = capsys.readouterr().out.splitlines()[-1]
    assert final.startswith("final test_accuracy=") and "top5" not in final


def test_evaluate_tests_a_class_selection_on_its_classes(three_class_run, capsys):
    status = evaluate.main(["--checkpoint", str(three_class_run), "--limit-test", "64"])
    out, err = capsys.readouterr()
    assert status == 0, err
    rows = [line.split()[0] for line in out.splitlines()[4:]]  # after the title, metrics, blank, header
    assert rows == ["Sneaker", "T-shirt/top", "Trouser"] and "top-5" not in out


def test_predict_lists_every_class_of_a_model_with_fewer_than_5(three_class_run, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    assert predict.main([str(image), "--checkpoint", str(three_class_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[out.index(str(image)) :] == out[-4:]  # the path, then its 3 classes


def test_pretrained_help_is_help(capsys):
    assert pretrained.main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: python -m scratchnet.pretrained") and not err


# --- pretrained weights -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content", [b"", b"\x80\x04 not a pickle at all" * 50, b"PK\x03\x04 broken zip" * 20]
)
def test_random_or_empty_weight_files_are_refused(content, tmp_path, capsys):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(content)
    status, err = call(pretrained, [weights, tmp_path / "out.npz"], capsys)
    assert_bad_input(status, err, str(weights))
    assert not (tmp_path / "out.npz").exists()
    status, err = call(train, ["--pretrained", weights, "--out", tmp_path / "run", *TINY], capsys)
    assert_bad_input(status, err, "pretrained")


def test_a_zip_that_is_not_torch_is_refused(tmp_path, capsys):
    weights = tmp_path / "weights.pth"
    with zipfile.ZipFile(weights, "w") as z:
        z.writestr("data.pkl", b"garbage")
    status, err = call(pretrained, [weights, tmp_path / "out.npz"], capsys)
    assert_bad_input(status, err, str(weights))
