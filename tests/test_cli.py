"""The command lines: python -m scratchnet.{train,evaluate,predict}.

A few tests start a real process (the final line, the GPU error without a traceback, the simulator); the
others call each module's ``main(argv)`` in this process, which is the same code without the start-up time.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scratchnet.data as D
from scratchnet import evaluate, get_device, predict, train
from scratchnet.errors import DeviceError

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--limit-train", "160", "--limit-test", "64", "--batch-size", "32", "--no-progress"]
FINAL_LINE = re.compile(
    r"^final test_accuracy=(\d\.\d{4}) test_loss=(\d+\.\d{4}) epochs=(\d+) seconds=(\d+\.\d)( \w+=\S+)*$"
)


def run(module: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"scratchnet.{module}", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def call(module, *args, capsys) -> tuple[int, str, str]:
    """``module.main(args)`` in this process: (exit status, stdout, stderr)."""
    try:
        status = module.main([str(a) for a in args])
    except SystemExit as e:  # argparse rejects bad flags by exiting
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One tiny training run through the command line; its folder serves the evaluate/predict tests."""
    out = tmp_path_factory.mktemp("run")
    done = run("train", *TINY, "--epochs", "2", "--out", out, "--no-plots")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    match = FINAL_LINE.match(lines[-1])
    assert match, lines[-1]
    assert match.group(3) == "2" and 0.0 <= float(match.group(1)) <= 1.0
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]
    return out


def test_train_prints_epochs_and_the_final_line(trained_run):
    assert (trained_run / "last.npz").is_file() and (trained_run / "metrics.jsonl").is_file()


def test_unknown_model_and_dataset_list_the_choices(capsys):
    status, _, err = call(train, "--model", "resnet50", capsys=capsys)
    assert status == 2 and "invalid choice: 'resnet50'" in err and "lenet5" in err and "alexnet-cifar" in err
    status, _, err = call(train, "--dataset", "imagenet", capsys=capsys)
    assert status == 2 and "fashion-mnist-mini" in err


@pytest.mark.slow  # a fresh interpreter
def test_gpu_without_a_gpu_is_a_message_not_a_traceback(tmp_path):
    try:
        get_device("gpu")
        pytest.skip("a GPU is present")
    except DeviceError:
        pass
    done = run("train", "--device", "gpu", "--out", tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: device 'gpu'") and "--device cpu" in done.stderr
    assert "sim" in done.stderr


def test_a_missing_dataset_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path / "cache"))
    args = ["--dataset", "cifar10", "--data-dir", tmp_path, "--no-download", "--out", tmp_path / "run"]
    status, _, err = call(train, *args, capsys=capsys)
    assert status == 2 and err.startswith("error: ") and str(tmp_path) in err


def test_bad_flag_combinations_are_messages(tmp_path, capsys):
    status, _, err = call(
        train, "--early-stopping", "2", "--val-fraction", "0", "--out", tmp_path, capsys=capsys
    )
    assert status == 2 and "val_fraction" in err
    status, _, err = call(train, "--resume", tmp_path / "nothing", capsys=capsys)
    assert status == 2 and "no checkpoint at" in err
    status, _, err = call(train, "--model", "alexnet-cifar", *TINY, "--out", tmp_path, capsys=capsys)
    assert status == 2 and "--image-size 32" in err


def test_resume_continues_the_run(trained_run, tmp_path, capsys):
    args = ["--resume", trained_run, "--epochs", "3", "--out", tmp_path, "--no-plots", "--no-progress"]
    status, out, err = call(train, *args, capsys=capsys)
    assert status == 0, err
    assert "resuming from" in out and "epoch   3/3" in out
    assert FINAL_LINE.match(out.splitlines()[-1]).group(3) == "3"
    status, _, err = call(train, "--resume", trained_run, "--lr", "0.5", capsys=capsys)
    assert status == 2 and "--lr cannot be changed" in err


def test_evaluate_prints_metrics_and_a_table_per_class(trained_run, tmp_path, capsys):
    args = ["--checkpoint", trained_run, "--limit-test", "100", "--confusion", tmp_path / "c.png"]
    status, out, err = call(evaluate, *args, capsys=capsys)
    assert status == 0, err
    assert re.search(r"images 100  top-1 accuracy \d\.\d{4}  top-5 accuracy \d\.\d{4}  loss \d+\.\d{4}", out)
    for name in D.load_dataset("fashion-mnist-mini", split="test").classes:
        assert re.search(rf"^{re.escape(name)}\s+\d\.\d{{4}}\s+\d+$", out, re.MULTILINE), name
    with Image.open(tmp_path / "c.png") as image:
        assert image.format == "PNG"
    status, _, err = call(evaluate, "--checkpoint", tmp_path / "none.npz", capsys=capsys)
    assert status == 2 and "no checkpoint at" in err


def test_predict_reads_image_files(trained_run, tmp_path, capsys):
    images, labels = D.load_dataset("fashion-mnist-mini", split="test").get_batch(np.arange(2))
    paths = []
    for i, image in enumerate(images):  # (1, 28, 28) uint8 -> a grey PNG; the second one as RGB at 56x56
        picture = Image.fromarray(image[0])
        if i == 1:
            picture = picture.convert("RGB").resize((56, 56))
        paths.append(tmp_path / f"image{i}.png")
        picture.save(paths[-1])
    status, out, err = call(predict, *paths, "--checkpoint", trained_run, "--top", "3", capsys=capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert (
        lines[0] == f"model: {trained_run / 'last.npz'} (lenet5 trained on fashion-mnist-mini for 2 epochs)"
    )
    first = lines.index(str(paths[0]))  # already the model's size: nothing to say
    second = lines.index(f"{paths[1]}  (resized from 56x56 to the model's 28x28 grey)")
    probabilities = [float(line.split()[0]) for line in lines[first + 1 : second]]
    assert len(probabilities) == 3 and len(lines) == second + 4
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    status, _, err = call(predict, tmp_path / "missing.png", "--checkpoint", trained_run, capsys=capsys)
    assert status == 2 and "no image file" in err


@pytest.mark.sim
@pytest.mark.slow  # a fresh interpreter
def test_train_on_the_simulator(tmp_path):
    try:
        get_device("sim")
    except DeviceError as e:
        pytest.skip(f"simulator unavailable: {e}")
    done = run("train", "--device", "sim", "--limit-train", "48", "--limit-test", "16", "--batch-size", "16",
               "--epochs", "1", "--no-progress", "--no-plots", "--out", tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert FINAL_LINE.match(done.stdout.splitlines()[-1])
    assert "device sim" in done.stdout


def test_alexnet_cifar_trains_on_cifar_format_files(tmp_path, monkeypatch, capsys):
    from test_data_sources import write_cifar

    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path / "cache"))
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", per_batch=8)  # 40 training, 8 test images
    args = ["--model", "alexnet-cifar", "--dataset", "cifar10", "--data-dir", tmp_path / "data",
            "--epochs", "1", "--batch-size", "8", "--no-download", "--no-plots", "--no-progress",
            "--out", tmp_path / "run"]  # fmt: skip
    status, out, err = call(train, *args, capsys=capsys)
    assert status == 0, err
    assert "alexnet-cifar on cifar10" in out and "(3, 32, 32), 10 classes" in out
    assert FINAL_LINE.match(out.splitlines()[-1])
