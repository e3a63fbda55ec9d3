"""The trainer as a library: reproducibility, exact resume, divergence, interrupts, run folders, freezing.

Every run here is LeNet-5 on a few hundred images of the bundled mini Fashion-MNIST, for 1 to 4 epochs.
"""

import json

import numpy as np
import pytest
from PIL import Image

import scratchnet.data as D
import scratchnet.train as T
from scratchnet import get_device
from scratchnet.checkpoint import load_checkpoint
from scratchnet.errors import DeviceError
from scratchnet.evaluate import evaluate
from scratchnet.layers import SoftmaxCrossEntropy
from scratchnet.train import loop, preparation


def tiny(tmp_path=None, **overrides) -> T.TrainConfig:
    """A run of a few seconds: 160 training images (128 train + 32 validation), 64 test images."""
    settings = dict(
        limit_train=160,
        limit_test=64,
        val_fraction=0.2,
        epochs=1,
        batch_size=32,
        progress=False,
        plots=False,
        out=str(tmp_path) if tmp_path is not None else None,
    )
    settings.update(overrides)
    return T.TrainConfig(**settings)


def quiet(config, **kwargs):
    return T.train(config, log=lambda line: None, **kwargs)


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_config_rejects_bad_values_with_clear_messages():
    with pytest.raises(T.ConfigError, match="unknown model 'resnet'; choose one of lenet5"):
        T.TrainConfig(model="resnet")
    with pytest.raises(T.ConfigError, match="unknown dataset"):
        T.TrainConfig(dataset="imagenet21k")
    with pytest.raises(T.ConfigError, match="val_fraction"):
        T.TrainConfig(early_stopping=2, val_fraction=0)
    with pytest.raises(T.ConfigError, match="alexnet-torchvision"):
        T.TrainConfig(pretrained="weights.pth")


def test_a_model_that_does_not_fit_the_images_names_the_fix():
    with pytest.raises(T.ConfigError, match="--image-size 32"):
        quiet(tiny(model="alexnet-cifar"))  # 32x32x3 model, 28x28x1 images


def test_same_seed_same_run_other_seed_other_run():
    first, second = quiet(tiny(epochs=2)), quiet(tiny(epochs=2))
    assert_same_params(first.model.state_dict(), second.model.state_dict())
    assert without_speed(first.history) == without_speed(second.history)
    other = quiet(tiny(epochs=2, seed=1))
    assert not np.array_equal(other.model.params["conv1.W"], first.model.params["conv1.W"])


def without_speed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "images_per_second"} for record in history]


def test_training_learns_something():
    result = quiet(tiny(epochs=2, limit_train=640, limit_test=200))
    history = result.history
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert result.test_accuracy > 0.4  # 10 classes: chance is 0.1
    assert result.test.confusion.sum() == 200 and result.test.images == 200
    assert 0.0 <= result.test_accuracy <= result.test_top5 <= 1.0


def run_interrupted(config, stop_in_epoch: int, monkeypatch):
    """Run ``config`` and press Ctrl-C at the start of epoch ``stop_in_epoch``."""
    real_train_epoch = T.train_epoch

    def train_epoch(*args, epoch, **kwargs):
        if epoch == stop_in_epoch:
            raise KeyboardInterrupt
        return real_train_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", train_epoch)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        T.train(config, log=lines.append)
    monkeypatch.undo()
    return lines


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_resume_after_ctrl_c_is_bit_identical(tmp_path, monkeypatch, schedule):
    """Stopped in epoch 3 and resumed = never stopped: same weights, same momentum, same history."""
    config = dict(epochs=4, schedule=schedule, step_size=1, gamma=0.5, momentum=0.9, nesterov=True)
    straight = quiet(tiny(tmp_path / "straight", **config))

    lines = run_interrupted(tiny(tmp_path / "stopped", **config), stop_in_epoch=3, monkeypatch=monkeypatch)
    assert "interrupted during epoch 3" in lines[-1] and "end of epoch 2" in lines[-1]
    assert f"--resume {tmp_path / 'stopped'}" in lines[-1]
    assert load_checkpoint(tmp_path / "stopped").meta["epoch"] == 2

    resumed = quiet(T.resume_config(tmp_path / "stopped"))
    assert_same_params(straight.model.state_dict(), resumed.model.state_dict())
    a = load_checkpoint(tmp_path / "straight").optimizer
    b = load_checkpoint(tmp_path / "stopped").optimizer
    assert_same_params(a, b)  # momentum buffers and learning rate
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]
    assert resumed.test_accuracy == straight.test_accuracy
    metrics = (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in metrics] == [1, 2, 3, 4]


def test_ctrl_c_in_the_first_epoch_of_a_resume_into_another_folder_names_the_source(tmp_path, monkeypatch):
    quiet(tiny(tmp_path / "a", epochs=1))
    config = T.resume_config(tmp_path / "a", epochs=3, out=str(tmp_path / "b"))
    lines = run_interrupted(config, stop_in_epoch=2, monkeypatch=monkeypatch)
    assert "interrupted during epoch 2" in lines[-1]
    assert f"is {tmp_path / 'a' / 'last.npz'}" in lines[-1]
    assert f"--resume {tmp_path / 'a' / 'last.npz'} --out {tmp_path / 'b'}" in lines[-1]
    assert not (tmp_path / "b" / "last.npz").exists()


def test_resume_can_extend_a_finished_run(tmp_path):
    # (a step schedule: a cosine one depends on the planned number of epochs, so extending changes it)
    straight = quiet(tiny(tmp_path / "straight", epochs=3, schedule="step", step_size=1))
    quiet(tiny(tmp_path / "short", epochs=2, schedule="step", step_size=1))
    longer = quiet(T.resume_config(tmp_path / "short" / "last.npz", epochs=3))
    assert longer.epochs == 3
    assert_same_params(straight.model.state_dict(), longer.model.state_dict())


def test_resume_refuses_to_change_the_run():
    with pytest.raises(ValueError, match="only epochs, .*, data_dir can change, not lr"):
        T.resume_config("anything.npz", lr=0.1)


def test_resume_restores_dropout_call_counters(tmp_path, monkeypatch):
    """A model with dropout: its masks depend on how many draws came before, which the checkpoint keeps."""
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("val", 4)):
        for label in ("cat", "dog"):
            (folder / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / label / f"{i}.png")
    config = dict(
        model="alexnet-cifar",
        dataset="folder",
        data_dir=str(folder),
        image_size=32,
        epochs=3,
        batch_size=8,
        val_fraction=0.25,
    )
    straight = quiet(tiny(tmp_path / "straight", **config))
    run_interrupted(tiny(tmp_path / "stopped", **config), stop_in_epoch=3, monkeypatch=monkeypatch)
    stored = load_checkpoint(tmp_path / "stopped").meta["dropout_rng_calls"]
    assert stored == {"drop6": 6, "drop7": 6}  # 2 epochs x 3 batches (24 training images, 8 validation)
    resumed = quiet(T.resume_config(tmp_path / "stopped"))
    assert_same_params(straight.model.state_dict(), resumed.model.state_dict())


class NaNLoss(SoftmaxCrossEntropy):
    """The real loss, but NaN at the 8th call (batch 2 of epoch 2 with 5 batches per epoch, after the
    recheck of epoch 1's last update), as a diverging run would give."""

    calls = 0

    def forward(self, logits, labels):
        loss = super().forward(logits, labels)
        NaNLoss.calls += 1
        return float("nan") if NaNLoss.calls == 8 else loss


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(NaNLoss, "calls", 0)
    monkeypatch.setattr(preparation, "SoftmaxCrossEntropy", NaNLoss)
    with pytest.raises(T.TrainingDiverged) as error:
        quiet(tiny(tmp_path, epochs=3, val_fraction=0.0))
    message = str(error.value)
    assert "the loss is nan in epoch 2, batch 2" in message and "smaller --lr" in message
    assert "end of epoch 1" in message and str(tmp_path / "last.npz") in message
    saved = load_checkpoint(tmp_path)
    assert saved.meta["epoch"] == 1
    assert all(np.isfinite(p).all() for p in saved.params.values())


def test_a_huge_learning_rate_really_diverges():
    with pytest.raises(T.TrainingDiverged, match="training diverged: the loss is (nan|inf)"):
        quiet(tiny(lr=1e6, momentum=0.0, weight_decay=0.0, epochs=3, val_fraction=0.0))


def test_early_stopping_on_validation_accuracy():
    # A learning rate too small to change any prediction: validation accuracy never improves after epoch 1.
    result = quiet(tiny(lr=1e-12, momentum=0.0, epochs=5, early_stopping=2))
    assert result.stopped_early and result.epochs == 3


def test_run_folder_holds_metrics_config_checkpoints_and_pictures(tmp_path):
    result = quiet(tiny(tmp_path, epochs=2, plots=True))
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"config.json", "metrics.jsonl", "last.npz", "best.npz", "curves.png", "confusion.png"}
    assert expected | {"filters.png"} == names
    for png in ("curves.png", "confusion.png", "filters.png"):
        with Image.open(tmp_path / png) as image:
            assert image.format == "PNG" and image.size[0] > 100
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records == result.history
    assert json.loads((tmp_path / "config.json").read_text())["limit_train"] == 160
    meta = load_checkpoint(tmp_path / "best.npz").meta
    assert meta["best"]["metric"] == "val_accuracy" and meta["normalization"]["mean"] == [0.2853]


def test_freeze_trains_only_the_classifier():
    config = tiny(freeze=True)
    model = T.build_model(config, (1, 28, 28), 10)
    before = model.state_dict()
    result = quiet(config)
    after = result.model.state_dict()
    for name in after:
        changed = not np.array_equal(before[name], after[name])
        assert changed == name.startswith("fc"), name


def test_evaluate_counts_per_class():
    result = quiet(tiny())
    data = T.load_data(tiny())
    ev = evaluate(result.model, data.test, transform=data.eval_transform, batch_size=17, confusion=True)
    assert ev.images == 64 and ev.accuracy == result.test_accuracy
    np.testing.assert_allclose(ev.loss, result.test_loss, rtol=1e-5)  # batch size only changes rounding
    per_class = ev.per_class_accuracy()
    counts = ev.confusion.sum(axis=1)
    assert np.isclose((per_class * counts).sum() / counts.sum(), ev.accuracy)


def test_gpu_without_cupy_is_a_device_error():
    try:
        get_device("gpu")
        pytest.skip("a GPU is present")
    except DeviceError:
        pass
    with pytest.raises(DeviceError, match="--device cpu"):
        quiet(tiny(device="gpu"))


@pytest.mark.sim
def test_a_training_step_copies_only_the_batch_in_and_scalars_out():
    """On sim: per batch exactly two host->device copies (images, labels) and only scalar copies back."""
    try:
        device = get_device("sim")
    except DeviceError as e:
        pytest.skip(f"simulator unavailable: {e}")
    config = tiny(device="sim", limit_train=16, batch_size=8, val_fraction=0.0)
    data = T.load_data(config)
    model = T.build_model(config, data.shape, 10)
    optimizer, _ = T.make_optimizer(config, model)
    loss = SoftmaxCrossEntropy(device=device)
    loader = D.DataLoader(data.train, 8, seed=0, transform=data.train_transform)

    copied_back = []
    real_to_host = device.to_host

    def to_host(x):
        copied_back.append(x.size)
        return real_to_host(x)

    device.transfers.clear()
    device.to_host = to_host
    try:
        T.train_epoch(model, loader, loss, optimizer, device, np.float32, epoch=1, progress=False)
    finally:
        del device.to_host
    assert device.transfers["host_to_device"] == 2 * len(loader)  # images and labels, nothing else
    assert len(copied_back) == device.transfers["device_to_host"] > 0
    assert max(copied_back) <= 2  # a loss scalar, a (top-1 count + invalid-label count) pair


@pytest.mark.sim
def test_the_simulated_kernels_train_like_numpy():
    """The same seeded run on cpu (NumPy) and on sim (the CUDA kernels) ends with the same weights."""
    try:
        get_device("sim")
    except DeviceError as e:
        pytest.skip(f"simulator unavailable: {e}")
    config = dict(limit_train=48, limit_test=16, batch_size=16, val_fraction=0.0, dtype="float64")
    on_cpu = quiet(tiny(**config)).model.state_dict()
    on_sim = quiet(tiny(device="sim", **config)).model.state_dict()
    assert on_cpu.keys() == on_sim.keys()
    for k in on_cpu:
        np.testing.assert_allclose(on_sim[k], on_cpu[k], rtol=1e-9, atol=1e-12, err_msg=k)
