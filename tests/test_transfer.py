"""Transfer learning: class selection (--classes), a scratchnet checkpoint as the starting point
(--pretrained), through the Python API and the command line."""

from __future__ import annotations

import numpy as np
import pytest

import scratchnet.data as D
import scratchnet.models as M
from scratchnet.checkpoint import CheckpointError, load_checkpoint
from scratchnet.data.classes import parse_classes, select_classes
from scratchnet.evaluate import evaluate_checkpoint
from scratchnet.train import ConfigError, TrainConfig, build_model, main, train
from scratchnet.transfer import is_checkpoint, load_pretrained

QUICK = dict(epochs=1, limit_train=120, limit_test=40, progress=False, plots=False)


@pytest.fixture(scope="module")
def first_five(tmp_path_factory):
    """A run folder: LeNet-5 trained one short epoch on classes 0-4 (5 outputs)."""
    out = tmp_path_factory.mktemp("runs") / "first-five"
    train(TrainConfig(classes="0-4", out=str(out), **QUICK), log=lambda line: None)
    return out


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("0,2,7", [0, 2, 7]),
        ("0-2,7", [0, 1, 2, 7]),
        ("7,2", [7, 2]),
        ([3, 1], [3, 1]),
    ],
)
def test_parse_classes(spec, expected):
    assert parse_classes(spec, 10) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "not a class id"),
        ("a-b", "not a class id"),
        ("4-1", "runs backwards"),
        ("8-11", "11 is not in 0..9"),
        ("1,1", "more than once"),
        ([], "at least one"),
        ([True], "ints"),
    ],
)
def test_parse_classes_refuses_bad_selections(spec, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_classes(spec, 10)


def test_select_classes_renumbers_in_the_given_order_and_keeps_names():
    dataset = D.load_dataset("fashion-mnist-mini", split="test")
    selected = select_classes(dataset, "7,2")
    assert selected.classes == [dataset.classes[7], dataset.classes[2]]
    keep = np.flatnonzero(np.isin(dataset.labels, [7, 2]))
    assert len(selected) == len(keep)
    np.testing.assert_array_equal(selected.labels, np.where(dataset.labels[keep] == 7, 0, 1))
    images, labels = selected.get_batch(np.arange(len(selected)))
    original_images, _ = dataset.get_batch(keep)
    np.testing.assert_array_equal(images, original_images)
    np.testing.assert_array_equal(labels, selected.labels)
    assert select_classes(dataset, None) is dataset


def test_a_run_on_some_classes_stores_their_names(first_five):
    checkpoint = load_checkpoint(first_five)
    names = D.load_dataset("fashion-mnist-mini", split="test").classes[:5]
    assert checkpoint.meta["classes"] == names
    assert checkpoint.meta["model_config"]["num_classes"] == 5
    assert is_checkpoint(first_five) and is_checkpoint(first_five / "last.npz")


def test_a_run_on_some_classes_is_evaluated_on_those_classes_labelled_as_in_training(tmp_path):
    """Classes 7 then 2 (reversed, not contiguous): evaluate tests the run's own selection, renumbered as in
    training, so it reproduces the trainer's final test figures on the same 200 test images."""
    out = tmp_path / "sneaker-pullover"
    trained = train(TrainConfig(classes="7,2", out=str(out), **{**QUICK, "limit_test": None}), log=print)
    result, classes, _ = evaluate_checkpoint(out)
    assert classes == ["Sneaker", "Pullover"]
    assert result.images == trained.test.images == 200
    assert result.accuracy == pytest.approx(trained.test_accuracy)
    assert result.loss == pytest.approx(trained.test_loss, rel=1e-5)


def test_pretrained_with_other_classes_copies_all_but_the_last_layer(first_five):
    stored = load_checkpoint(first_five / "best.npz").params
    config = TrainConfig(classes="5-7", pretrained=str(first_five), **QUICK)
    model = build_model(config, (1, 28, 28), num_classes=3)
    fresh = M.LeNet5(num_classes=3, seed=config.seed)  # what the model starts from without pretrained weights
    for key, value in model.state_dict().items():
        if key.startswith("fc3."):
            assert value.shape == fresh.params[key].shape
            np.testing.assert_array_equal(value, fresh.params[key])  # re-initialised, not copied
        else:
            np.testing.assert_array_equal(value, stored[key])
            assert not np.array_equal(value, fresh.params[key])  # really loaded, not the fresh value


def test_pretrained_with_the_same_classes_copies_everything(first_five):
    model = M.LeNet5(num_classes=5, seed=123)
    assert load_pretrained(model, first_five) == []
    stored = load_checkpoint(first_five / "best.npz").params
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, stored[key])


def test_pretrained_of_another_architecture_is_refused(first_five):
    with pytest.raises(CheckpointError, match="another architecture.*input_size"):
        load_pretrained(M.LeNet5(num_classes=5, input_size=32), first_five)


def test_fine_tuning_trains_from_the_pretrained_weights(first_five):
    result = train(TrainConfig(classes="5-9", pretrained=str(first_five), **QUICK), log=lambda line: None)
    assert result.model.config["num_classes"] == 5
    assert result.test.images == 40 and 0.0 <= result.test_accuracy <= 1.0


def test_bad_classes_in_the_api_is_a_config_error():
    with pytest.raises(ConfigError, match="not in 0..9"):
        train(TrainConfig(classes="5-12", **QUICK), log=lambda line: None)


def test_command_line(first_five, tmp_path, capsys):
    args = ["--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--no-progress", "--no-plots"]
    assert (
        main([*args, "--classes", "5-9", "--pretrained", str(first_five), "--out", str(tmp_path / "b")]) == 0
    )
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("final test_accuracy=")
    assert load_checkpoint(tmp_path / "b").meta["config"]["classes"] == "5-9"

    assert main([*args, "--classes", "3-1", "--out", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "backwards" in error[0]

    code = main([*args, "--model", "alexnet-cifar", "--dataset", "fashion-mnist-mini", "--image-size", "32",
                 "--pretrained", str(first_five), "--out", str(tmp_path / "d")])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "another architecture" in error[0]


def test_the_trainer_says_what_it_loaded_from_which_file_and_what_it_froze(first_five):
    lines = []
    train(TrainConfig(classes="5-7", pretrained=str(first_five), freeze=True, **QUICK), log=lines.append)
    assert f"pretrained: every layer but fc3.W, fc3.b (new classes) from {first_five / 'best.npz'}" in lines
    assert "frozen: only the classifier is trained (fc1.W, fc1.b, fc2.W, fc2.b, fc3.W, fc3.b)" in lines


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda path: path, "no such file or run folder"),
        (lambda path: (path.write_bytes(b""), path)[1], "the file is empty"),
        (lambda path: (path.write_bytes(b"PK\x03\x04 cut short"), path)[1], "a damaged .npz file"),
        (lambda path: path.mkdir() or path, "holds no best.npz or last.npz"),
    ],
)
def test_pretrained_weights_that_are_missing_or_broken_are_named_so(tmp_path, capsys, make, needle):
    weights = make(tmp_path / "weights.npz")
    args = ["--epochs", "1", "--limit-train", "120", "--no-progress", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "r"), "--pretrained", str(weights)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and needle in error[0] and "RGB" not in error[0]
