"""The capstone (lesson 18, scratchnet.exercises.capstone): LeNet-5 from the learner's functions trains
exactly as the library's does, the layer-by-layer comparison names the layer a planted mistake is in, and the
functions are collected from the newest passing notebook cell or exercise file, else the reference."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import scratchnet.data as D
from scratchnet.exercises import capstone, run
from scratchnet.layers import SoftmaxCrossEntropy
from scratchnet.models import LeNet5
from scratchnet.optim import SGD
from scratchnet.train import train_epoch

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "lessons" / "exercises" / "solutions"
SGD_SETTINGS = {"lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4}
REFERENCE = capstone.reference_code()


def _batches(steps: int, batch_size: int = 32):
    """The first ``steps`` batches of the bundled training set, normalised, shuffled with seed 0."""
    train = D.load_dataset("fashion-mnist-mini", split="train")
    loader = D.DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        seed=0,
        transform=D.Normalize(*D.MEAN_STD["fashion-mnist-mini"]),
    )
    batches = []
    for images, labels in loader:
        if len(batches) == steps:
            break
        batches.append((images.astype(np.float64), labels))
    return batches


def _losses(net, loss_fn, optimizer, batches) -> np.ndarray:
    losses = []
    for images, labels in batches:
        losses.append(loss_fn.forward(net.forward(images, training=True), labels))
        net.backward(loss_fn.backward())
        optimizer.step()
    return np.array(losses)


def _library_losses(batches) -> np.ndarray:
    net = LeNet5(seed=0, dtype=np.float64)
    return _losses(net, SoftmaxCrossEntropy(dtype=np.float64), SGD(net, **SGD_SETTINGS), batches)


def _capstone_losses(code, batches) -> np.ndarray:
    net = capstone.lenet5_from(code, seed=0, dtype=np.float64)
    loss_fn = capstone.YourSoftmaxCrossEntropy(code, dtype=np.float64)
    return _losses(net, loss_fn, capstone.YourSGD(code, net, **SGD_SETTINGS), batches)


# --- the network from the learner's functions trains as the library's does -------------------------------
def test_fifty_float64_steps_give_the_library_losses_to_1e_9():
    batches = _batches(50)
    library, yours = _library_losses(batches), _capstone_losses(REFERENCE, batches)
    np.testing.assert_allclose(yours, library, rtol=1e-9, atol=0)
    assert library[-1] < 0.75 * library[0]  # it trained: the comparison is not of two flat lines


def test_a_wrong_sgd_step_changes_the_losses():
    """The 50-step comparison can fail: an SGD step that forgets the weight decay is caught at step 2."""

    def sgd_step_without_decay(param, grad, velocity, lr, momentum, weight_decay):
        return REFERENCE.sgd_step(param, grad, velocity, lr, momentum, 0.0)

    batches = _batches(3)
    yours = _capstone_losses(REFERENCE.replace(sgd_step=sgd_step_without_decay), batches)
    library = _library_losses(batches)
    assert yours[0] == pytest.approx(library[0], rel=1e-12)  # the same first forward
    assert abs(yours[1] - library[1]) > 1e-9 * library[1]


def test_the_loop_convolution_computes_the_same_steps():
    batches = _batches(2, batch_size=8)
    net = capstone.lenet5_from(REFERENCE, seed=0, dtype=np.float64, method="loops")
    loss_fn = capstone.YourSoftmaxCrossEntropy(REFERENCE, dtype=np.float64)
    loops = _losses(net, loss_fn, capstone.YourSGD(REFERENCE, net, **SGD_SETTINGS), batches)
    np.testing.assert_allclose(loops, _library_losses(batches), rtol=1e-12)


def test_the_library_epoch_function_trains_the_capstone_network():
    """Lesson 18's last cell says scratchnet.train.train_epoch runs an epoch of the capstone network."""
    train = D.subset(D.load_dataset("fashion-mnist-mini", split="train"), 256, seed=0)
    loader = D.DataLoader(
        train, batch_size=64, shuffle=True, seed=0, transform=D.Normalize(*D.MEAN_STD["fashion-mnist-mini"])
    )
    net = capstone.lenet5_from(REFERENCE, seed=0)
    loss_fn = capstone.YourSoftmaxCrossEntropy(REFERENCE)
    before = net.state_dict()
    record = train_epoch(
        net,
        loader,
        loss_fn,
        capstone.YourSGD(REFERENCE, net, lr=0.02),
        net.device,
        np.float32,
        epoch=1,
        progress=False,
    )
    assert np.isfinite(record["loss"]) and 0 <= record["accuracy"] <= 1
    assert not np.array_equal(before["fc3.W"], net.state_dict()["fc3.W"])


# --- the layer-by-layer comparison names the planted mistake ----------------------------------------------
COL2IM = (SOLUTIONS / "05_convolution_backward" / "col2im.py").read_text(encoding="utf-8")
# col2im that assigns instead of adding: where windows overlap, all but the last contribution are lost
WRONG_COL2IM = COL2IM.replace("dx_pad[:, :, rows, columns] +=", "dx_pad[:, :, rows, columns] =")


def _linear_backward_without_dbias(dy, x, weight):
    dx, dweight, dbias = REFERENCE.linear_backward(dy, x, weight)
    return dx, dweight, np.zeros_like(dbias)


PLANTED = {
    "a conv backward that assigns where windows overlap": (
        {"col2im": capstone._run_cell(WRONG_COL2IM)["col2im"]},
        "conv2",
        "dL/dx",
    ),
    "a linear forward without the bias": ({"linear_forward": lambda x, w, b: x @ w}, "fc1", "output"),
    "a linear backward without dbias": ({"linear_backward": _linear_backward_without_dbias}, "fc3", "dL/db"),
    "a ReLU backward without its mask": ({"relu_backward": lambda dy, x: dy}, "relu4", "dL/dx"),
    "a loss gradient not divided by N": (
        {
            "softmax_cross_entropy_backward": lambda z, t: (
                REFERENCE.softmax_cross_entropy_backward(z, t) * len(t)
            )
        },
        "loss",
        "dL/dlogits",
    ),
    "an im2col with its rows reversed": (
        {"im2col": lambda *a: REFERENCE.im2col(*a)[::-1].copy()},
        "conv1",
        "output",
    ),
}


@pytest.fixture(scope="module")
def batch():
    images, labels = _batches(1, batch_size=16)[0]
    return images, labels


def test_the_right_functions_agree_everywhere(batch):
    comparisons = capstone.compare_layers(REFERENCE, *batch)
    assert all(c.same for c in comparisons), [str(c) for c in comparisons if not c.same]
    assert len(comparisons) == 12 + 2 + 12 + 2 * 5  # outputs, loss and dL/dlogits, dL/dx, parameters
    assert capstone.first_difference(REFERENCE, *batch) is None


@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_the_first_difference_names_the_planted_layer(batch, mistake):
    replaced, layer, what = PLANTED[mistake]
    first = capstone.first_difference(REFERENCE.replace(**replaced), *batch)
    assert first is not None and (first.layer, first.what) == (layer, what), str(first)
    assert f"{layer}" in str(first) and "DIFFERS" in str(first)


# --- where the functions come from ------------------------------------------------------------------------
def _notebook(path: Path, cells: dict[str, str], modified: float) -> None:
    """A notebook whose code cells have the given ids and sources, modified at time ``modified``."""
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "id": cid,
                "metadata": {"tags": ["exercise"]},
                "source": source,
                "outputs": [],
            }
            for cid, source in cells.items()
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook), encoding="utf-8")
    os.utime(path, (modified, modified))


@pytest.fixture
def lessons(tmp_path) -> Path:
    """A lessons folder with the reference solutions and no learner code yet."""
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "solutions").symlink_to(SOLUTIONS)
    return tmp_path


def test_a_passing_notebook_cell_wins_over_the_reference_and_a_newer_wrong_one(lessons):
    assert WRONG_COL2IM != COL2IM
    _notebook(lessons / "05_convolution_backward.ipynb", {"col2im": COL2IM}, modified=1_000)
    _notebook(lessons / "my_05.ipynb", {"col2im": WRONG_COL2IM}, modified=2_000)  # newer, but wrong
    code = capstone.collect(lessons, exercise_ids=("col2im", "im2col"))
    assert code.sources["col2im"] == "yours: 05_convolution_backward.ipynb, cell col2im"
    assert code.col2im.__code__.co_filename == "<cell>"  # the cell's function, not the reference's
    assert run("col2im", code.col2im).passed
    assert code.sources["im2col"].startswith("reference solution (no notebook")
    assert "col2im" in code.describe() and "yours: 05_convolution_backward.ipynb" in code.describe()


def test_the_newest_passing_place_wins(lessons):
    _notebook(lessons / "05_convolution_backward.ipynb", {"col2im": COL2IM}, modified=1_000)
    _notebook(lessons / "copies" / "my_05.ipynb", {"col2im": COL2IM}, modified=3_000)
    file = lessons / "exercises" / "col2im.py"
    file.write_text(COL2IM, encoding="utf-8")
    os.utime(file, (2_000, 2_000))
    assert (
        capstone.collect(lessons, ("col2im",)).sources["col2im"] == "yours: copies/my_05.ipynb, cell col2im"
    )
    os.utime(file, (4_000, 4_000))
    assert capstone.collect(lessons, ("col2im",)).sources["col2im"] == "yours: exercises/col2im.py"


def test_failing_places_fall_back_to_the_reference_and_say_why(lessons):
    stub = 'def col2im(cols, x_shape, KH, KW, S, P):\n    raise NotImplementedError("write col2im")\n'
    _notebook(lessons / "05_convolution_backward.ipynb", {"col2im": stub}, modified=1_000)
    _notebook(lessons / "my_05.ipynb", {"col2im": WRONG_COL2IM}, modified=2_000)
    _notebook(lessons / "broken.ipynb", {"col2im": "def col2im(:"}, modified=3_000)
    _notebook(lessons / ".ipynb_checkpoints" / "autosave.ipynb", {"col2im": COL2IM}, modified=4_000)
    (lessons / "half_saved.ipynb").write_text('{"cells": [', encoding="utf-8")
    code = capstone.collect(lessons, ("col2im",))
    assert code.sources["col2im"] == (
        "reference solution (broken.ipynb, cell col2im: does not run (SyntaxError); "
        "my_05.ipynb, cell col2im: wrong; 05_convolution_backward.ipynb, cell col2im: not done yet)"
    )
    assert code.col2im.__code__.co_filename == "<cell>" and run("col2im", code.col2im).passed


def test_bad_calls_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lessons folder"):
        capstone.collect(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no function \['col2img'\]"):
        REFERENCE.replace(col2img=lambda: None)
    with pytest.raises(AttributeError, match="no function 'maxpool_backward'"):
        REFERENCE.maxpool_backward  # noqa: B018
    with pytest.raises(ValueError, match="method must be one of"):
        capstone.lenet5_from(REFERENCE, method="fft")


# --- the lesson's exercise: one training step ---------------------------------------------------------------
TRAIN_STEP = (SOLUTIONS / "18_lenet5_from_your_code" / "train-step.py").read_text(encoding="utf-8")
STEP_MUTANTS = {
    "no update": ("    optimizer.step()  #", "    #", "optimizer.step() was called 0 times"),
    "two updates": (
        "    optimizer.step()  #",
        "    optimizer.step()\n    optimizer.step()  #",
        "called 2 times",
    ),
    "update before backward": (
        "    net.backward(loss_fn.backward())  # dL/dlogits in, every layer's grads filled on the way back\n"
        "    optimizer.step()  # every parameter moves against its gradient\n",
        "    optimizer.step()\n    net.backward(loss_fn.backward())\n",
        "gradients that are not this batch's",
    ),
    "the loss after the update": (
        "    return loss\n",
        "    return loss_fn.forward(net.forward(images, training=False), labels)\n",
        "return the batch's loss from before the step",
    ),
}


def _train_step(source: str):
    return capstone._run_cell(source)["train_step"]


def test_the_train_step_solution_passes():
    assert run("train-step", _train_step(TRAIN_STEP)).passed


@pytest.mark.parametrize("mutant", sorted(STEP_MUTANTS))
def test_a_wrong_train_step_is_named(mutant):
    old, new, message = STEP_MUTANTS[mutant]
    assert old in TRAIN_STEP
    report = run("train-step", _train_step(TRAIN_STEP.replace(old, new)))
    assert not report.passed and message in report.render(), report.render()
