"""DataLoader workers: the same batches, in the same order, whatever the number of worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scratchnet.data as D


def _image_folder(root, classes=3, per_class=7, seed=0):
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = (int(rng.integers(20, 48)), int(rng.integers(20, 48)))  # (width, height)
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_serve_the_batches_of_one_process(tmp_path, workers):
    root = _image_folder(tmp_path)
    dataset = D.load_dataset("folder", data_dir=root, image_size=16, crop="random-resized")
    transform = D.Compose([D.RandomCrop(16, padding=2), D.RandomHorizontalFlip()])
    loaders = [
        D.DataLoader(dataset, 4, shuffle=True, seed=3, transform=transform, workers=w) for w in (0, workers)
    ]
    for epoch in (1, 2):
        for loader in loaders:
            loader.set_epoch(epoch)
        batches = [list(loader) for loader in loaders]
        assert len(batches[0]) == len(batches[1]) == 6  # 21 images in batches of 4
        for (x0, y0), (x1, y1) in zip(*batches, strict=True):
            np.testing.assert_array_equal(x0, x1)
            np.testing.assert_array_equal(y0, y1)


def test_stopping_early_leaves_no_worker_behind(tmp_path):
    dataset = D.load_dataset("folder", data_dir=_image_folder(tmp_path), image_size=8)
    loader = D.DataLoader(dataset, 2, workers=2, prefetch=1)
    for b, _ in enumerate(loader):
        if b == 1:
            break  # the generator closes: its pool shuts down, cancelling the batches not yet started
    x, _ = next(iter(loader))
    assert x.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("kwargs", [{"workers": -1}, {"prefetch": 0}])
def test_bad_worker_settings_are_refused(kwargs):
    dataset = D.load_dataset("fashion-mnist-mini", split="test")
    with pytest.raises(ValueError, match="workers"):
        D.DataLoader(dataset, 8, **kwargs)


def test_loader_benchmark_prints_one_row_per_worker_count(tmp_path, capsys):
    from scratchnet import parallel_bench

    root = _image_folder(tmp_path)
    argv = ["loader", "--data-dir", str(root), "--workers", "0,1", "--image-size", "16", "--epochs", "1"]
    assert parallel_bench.main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["0", "1"] and all(float(r[1]) > 0 for r in rows)


def test_training_with_workers_gives_the_same_run():
    from scratchnet.train import TrainConfig, train

    results = [
        train(
            TrainConfig(
                dtype="float64",
                limit_train=192,
                limit_test=64,
                epochs=1,
                augment=True,
                workers=w,
                progress=False,
            ),
            log=lambda line: None,
        )
        for w in (0, 2)
    ]
    assert results[0].test_loss == results[1].test_loss
    for k, v in results[0].model.params.items():
        np.testing.assert_array_equal(v, results[1].model.params[k])


def test_a_worker_killed_mid_epoch_is_a_dataset_error(monkeypatch):
    decode = D.DataLoader._decode

    def killed_at_batch_3(self, b, order):
        if b == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
        return decode(self, b, order)

    monkeypatch.setattr(D.DataLoader, "_decode", killed_at_batch_3)  # (the forked workers inherit it)
    loader = D.DataLoader(D.load_dataset("fashion-mnist-mini", split="test"), 8, workers=2, prefetch=1)
    with pytest.raises(D.DatasetError, match="a data loader worker process died"):
        list(loader)


WORKERS_THEN_WAIT = """
import sys, time
import scratchnet.data as D
from scratchnet.data.loader import DataLoader
decode = DataLoader._decode
DataLoader._decode = lambda self, b, order: (time.sleep(0.5), decode(self, b, order))[1]
loader = D.DataLoader(D.load_dataset("fashion-mnist-mini", split="test"), 8, workers=2, prefetch=1)
batches = iter(loader)
next(batches)
import multiprocessing
print(*[p.pid for p in multiprocessing.active_children()], flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_kill_9_of_the_trainer_takes_its_workers_with_it():
    env = {**os.environ, "PYTHONPATH": str(Path(D.__file__).parents[2])}
    owner = subprocess.Popen([sys.executable, "-c", WORKERS_THEN_WAIT], env=env, stdout=subprocess.PIPE)
    workers = [int(pid) for pid in owner.stdout.readline().split()]
    assert len(workers) == 2
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:  # (before the fix: do not leave them running)
        os.kill(pid, signal.SIGKILL)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has ended
