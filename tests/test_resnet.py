"""GlobalAvgPool2D, ResidualBlock, ResNet-20 and VGG-cifar: gradient checks, a mutant, PyTorch parity,
parameter counts, buffers in state dicts and checkpoints, training on cpu and sim, the command lines."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from test_batchnorm import BatchNormContract, batch_norm_by_definition
from test_conv import conv_by_definition

import scratchnet as sn
import scratchnet.train as T
from scratchnet import evaluate, predict
from scratchnet.benchmarks.torch_twins import torch_model
from scratchnet.checkpoint import load_checkpoint, load_model
from scratchnet.gradcheck import TOLERANCE, check_layer
from scratchnet.testing import DEVICES, LayerContract, LayerSpec, forward_backward, split_batches

BLOCKS = {"identity": (2, 2, 1), "downsample": (2, 4, 2)}  # in_channels, out_channels, stride


def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# --- the layer contract ------------------------------------------------------------------------------------
class TestGlobalAvgPool2DContract(LayerContract):
    spec = LayerSpec(
        make=sn.layers.GlobalAvgPool2D,
        input_shape=(2, 3, 4, 5),
        bad_shapes=((2, 3, 4),),
        reference=lambda layer, x: x.sum(axis=(2, 3), keepdims=True) / (x.shape[2] * x.shape[3]),
        geometries={"one pixel": {"input_shape": (3, 2, 1, 1)}, "odd sizes": {"input_shape": (1, 5, 3, 7)}},
    )


def block_by_definition(block, x):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the shortcut as the block's docstring has it."""
    conv1, bn1, conv2, bn2 = (block.layers[name] for name in ("conv1", "bn1", "conv2", "bn2"))
    h = batch_norm_by_definition(
        bn2,
        conv_by_definition(conv2, np.maximum(batch_norm_by_definition(bn1, conv_by_definition(conv1, x)), 0)),
    )
    C, F, S = block.in_channels, block.out_channels, block.stride
    shortcut = np.zeros_like(h)
    shortcut[:, (F - C) // 2 : (F - C) // 2 + C] = x[:, :, ::S, ::S]
    return np.maximum(h + block.shortcut * shortcut, 0)


class TestIdentityBlockContract(BatchNormContract):
    spec = LayerSpec(
        make=functools.partial(sn.layers.ResidualBlock, 2, 2, seed=0),
        input_shape=(2, 2, 4, 4),
        bad_shapes=((2, 3, 4, 4),),
        reference=block_by_definition,
        geometries={"odd sizes": {"input_shape": (3, 2, 3, 5)}},
    )


class TestDownsamplingBlockContract(BatchNormContract):
    spec = LayerSpec(
        make=functools.partial(sn.layers.ResidualBlock, 2, 4, 2, seed=0),
        input_shape=(2, 2, 5, 5),
        bad_shapes=((2, 4, 5, 5),),
        reference=block_by_definition,
        geometries={
            "even sizes, C 1 -> F 3": {
                "make": functools.partial(sn.layers.ResidualBlock, 1, 3, 2, seed=0),
                "input_shape": (2, 1, 4, 6),
            }
        },
    )


# --- global average pooling --------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_global_avg_pool_values(device):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    layer = sn.layers.GlobalAvgPool2D(device=device, dtype=np.float64)
    y = layer.device.to_host(layer.forward(layer.device.array(x)))
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(y[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-13)


# --- the residual block ------------------------------------------------------------------------------------
def block_input(C, seed=1):
    return np.random.default_rng(seed).standard_normal((2, C, 5, 5))  # odd sides: 5 -> 3 with stride 2


def test_plain_block_gradients():
    """The block without its shortcut (the contract above checks the two shortcut kinds on every device)."""
    block = sn.layers.ResidualBlock(2, 2, shortcut=False, dtype=np.float64, seed=3)
    errors = check_layer(block, block_input(2))
    assert set(errors) == {"x", "conv1.W", "bn1.gamma", "bn1.beta", "conv2.W", "bn2.gamma", "bn2.beta"}
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("kind", ["identity", "downsample"])
def test_gradcheck_catches_a_block_that_drops_the_shortcut_gradient(kind):
    """A backward that returns only the main branch's dL/dx (forgetting that x also fed the shortcut)."""

    class MainBranchOnlyMutant(sn.layers.ResidualBlock):
        def _shortcut_backward(self, dz):
            return dz * 0 if self.identity_shortcut else super()._shortcut_backward(dz) * 0

    C, F, S = BLOCKS[kind]
    errors = check_layer(MainBranchOnlyMutant(C, F, S, dtype=np.float64, seed=3), block_input(C))
    assert errors["x"] > 1e-2, errors
    assert errors["conv1.W"] < TOLERANCE  # the parameters' gradients are still right


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("kind", ["identity", "downsample"])
def test_block_split_over_threads_gives_the_one_thread_result(kind, threads, monkeypatch):
    """Seven images as parts of 3+4 or 2+2+3 through the whole block (its BatchNorms, ReLUs, sums and
    shortcut each split): y, dx, every gradient and the running statistics of the whole batch on one
    thread."""
    C, F, S = BLOCKS[kind]
    x = np.random.default_rng(1).standard_normal((7, C, 5, 5))
    dy = np.random.default_rng(2).standard_normal((7, F, -(-5 // S), -(-5 // S)))

    def run():
        block = sn.layers.ResidualBlock(C, F, S, dtype=np.float64, seed=3)
        return forward_backward(block, x, dy).arrays() | {k: v.copy() for k, v in block.buffers.items()}

    expected = run()
    with split_batches(threads, monkeypatch) as splits:
        got = run()
    assert splits and all(len(split) == threads for split in splits)
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_option_a_shortcut_subsamples_and_pads_channels(device):
    block = sn.layers.ResidualBlock(2, 6, 2, device=device, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    y = block.device.to_host(block._shortcut_forward(block.device.array(x)))
    expected = np.zeros((2, 6, 3, 3))
    expected[:, 2:4] = x[:, :, ::2, ::2]  # (6 − 2) / 2 = 2 zero channels on each side
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["identity", "downsample"])
def test_residual_block_matches_pytorch(device, kind):
    torch = pytest.importorskip("torch")
    C, F, S = BLOCKS[kind]
    block = sn.layers.ResidualBlock(C, F, S, device=device, dtype=np.float64, seed=4)
    module = block.torch_equivalent(torch).double()
    x = block_input(C)
    dy = np.random.default_rng(2).standard_normal(block.output_shape(x.shape))
    dev = block.device
    y = dev.to_host(block.forward(dev.array(x)))
    dx = dev.to_host(block.backward(dev.array(dy)))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = module(x_t)
    y_t.backward(torch.from_numpy(dy))
    assert relative(y, y_t.detach().numpy()) < 1e-10
    assert relative(dx, x_t.grad.numpy()) < 1e-10
    theirs = dict(module.main.named_parameters())  # "0.weight" = conv1.W, "1.weight" = bn1.gamma, ...
    names = {"conv1.W": "0.weight", "bn1.gamma": "1.weight", "bn1.beta": "1.bias", "conv2.W": "3.weight"}
    for ours, their_name in names.items():
        assert relative(dev.to_host(block.grads[ours]), theirs[their_name].grad.numpy()) < 1e-10, ours
    running = dev.to_host(block.buffers["bn2.running_var"])
    assert relative(running, module.main[4].running_var.numpy()) < 1e-10


# --- the models --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "in_channels", "size", "count"),
    [
        ("resnet20-cifar", 3, 32, 269_722),  # He et al. 2016, section 4.2
        ("plain20-cifar", 3, 32, 269_722),  # the shortcuts have no parameters
        ("resnet20-cifar", 1, 28, 269_434),  # conv1 sees one channel: 288 weights fewer
        ("vgg-cifar", 3, 32, 307_946),
        ("vgg-cifar", 1, 28, 307_370),  # the pools pad odd sides: 28 -> 14 -> 7 -> 4, fc as for 32
    ],
)
def test_parameter_counts_and_shapes(name, in_channels, size, count):
    model = sn.models.build(name, in_channels=in_channels, input_size=size, seed=0)
    assert model.num_params() == count
    assert model.input_shape == (in_channels, size, size)
    x = np.random.default_rng(0).standard_normal((2, in_channels, size, size)).astype(np.float32)
    assert model.forward(x, training=False).shape == (2, 10)
    assert "total parameters: " + f"{count:,}" in model.summary()


def test_resnet20_layout():
    model = sn.models.build("resnet20-cifar")
    convs = [k for k, v in model.params.items() if k.endswith(".W") and v.ndim == 4]
    assert len(convs) == 19 and not any(k.endswith(".b") for k in model.params if k != "fc.b")
    shapes = model.output_shapes()
    assert shapes["stage1_block3"] == (16, 32, 32)
    assert shapes["stage2_block1"] == (32, 16, 16) and shapes["stage3_block3"] == (64, 8, 8)
    assert shapes["pool"] == (64, 1, 1)
    assert len(model.buffers) == 2 * 19  # running mean and variance of 19 BatchNorms
    assert sn.models.build(**model.config).num_params() == 269_722


def test_resnet20_matches_pytorch_in_training_mode():
    """The whole network, float64: logits with batch statistics, and every parameter's gradient."""
    torch = pytest.importorskip("torch")
    model = sn.models.build("resnet20-cifar", dtype=np.float64, seed=1, input_grad=True)
    net = torch_model(model, torch).train()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    dlogits = np.random.default_rng(1).standard_normal((2, 10))
    logits = model.forward(x)
    dx = model.backward(dlogits)
    x_t = torch.from_numpy(x).requires_grad_(True)
    logits_t = net(x_t)
    logits_t.backward(torch.from_numpy(dlogits))
    assert relative(logits, logits_t.detach().numpy()) < 1e-10
    assert relative(dx, x_t.grad.numpy()) < 1e-9
    theirs = [p.grad.numpy() for p in net.parameters()]  # the same order as model.grads
    assert len(theirs) == len(model.grads) and sum(g.size for g in theirs) == 269_722
    for (name, ours), their in zip(model.grads.items(), theirs, strict=True):
        their = their.T if name == "fc.W" else their  # torch keeps Linear weights as (out, in)
        assert relative(ours, their) < 1e-9, name


def test_buffers_are_in_the_state_dict_and_restored_exactly():
    model = sn.models.build("resnet20-cifar", seed=0)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    model.forward(x)  # one training forward moves every running statistic
    model.backward(np.ones((4, 10), dtype=np.float32))
    before = {k: v.copy() for k, v in model.buffers.items()}
    sn.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4).step()
    for k, v in model.buffers.items():  # SGD leaves the buffers alone
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    state = model.state_dict()
    assert "bn1.running_mean" in state and "stage2_block1.bn2.running_var" in state
    assert not set(model.buffers) & set(model.params)
    assert not np.array_equal(state["bn1.running_mean"], np.zeros(16))
    other = sn.models.build("resnet20-cifar", seed=5)
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    np.testing.assert_array_equal(other.forward(x, training=False), model.forward(x, training=False))
    with pytest.raises(KeyError, match="missing keys"):
        other.load_state_dict({k: v for k, v in state.items() if "running" not in k})


def synthetic_images(count=16, size=32, channels=3, seed=0):
    """Two classes that differ in brightness, with noise: easy to learn in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    x = rng.standard_normal((count, channels, size, size)) * 0.5 + (labels * 2.0 - 1.0)[:, None, None, None]
    return x, labels


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "lr"), [("resnet20-cifar", 0.05), ("vgg-cifar", 0.01)])
def test_training_lowers_the_loss(device, name, lr):
    """2 epochs of 16 synthetic images in batches of 8: the second epoch's loss is lower. 32×32 on cpu; on
    the kernel devices 16×16, as ResNet-20 runs at about 1 image/s at 32×32 on sim (any size >= 8 builds)."""
    if device != "cpu" and name == "vgg-cifar":
        pytest.skip("one model is enough on the kernel devices (the layers are the same)")
    size = 32 if device == "cpu" else 16
    model = sn.models.build(name, input_size=size, device=device, seed=0)
    dev = model.device
    x_host, labels_host = synthetic_images(size=size)
    x, labels = dev.array(x_host, dtype=np.float32), dev.array(labels_host)
    loss = sn.layers.SoftmaxCrossEntropy(device=device)
    optimizer = sn.optim.SGD(model, lr=lr, momentum=0.9)
    epoch_losses = []
    for _ in range(2):
        losses = []
        for start in (0, 8):
            losses.append(float(loss.forward(model.forward(x[start : start + 8]), labels[start : start + 8])))
            model.backward(loss.backward())
            optimizer.step()
        epoch_losses.append(np.mean(losses))
    assert epoch_losses[1] < 0.8 * epoch_losses[0], epoch_losses


# --- the trainer and the command lines ---------------------------------------------------------------------
def test_resume_restores_the_running_statistics_exactly(tmp_path):
    settings = dict(model="vgg-cifar", limit_train=40, limit_test=16, val_fraction=0.0, batch_size=8,
                    schedule="none", progress=False, plots=False)  # fmt: skip
    straight = T.train(T.TrainConfig(epochs=2, **settings), log=lambda line: None)
    T.train(T.TrainConfig(epochs=1, out=str(tmp_path), **settings), log=lambda line: None)
    assert "bn1_1.running_mean" in load_checkpoint(tmp_path).params
    resumed = T.train(T.resume_config(tmp_path, epochs=2), log=lambda line: None)
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def call(module, *args, capsys):
    try:
        status = module.main([str(a) for a in args])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_resnet20_trains_evaluates_and_predicts_from_the_command_line(tmp_path, monkeypatch, capsys):
    """CIFAR-format files, the usual augmentation (4-pixel pad, random crop, flip), then evaluate and
    predict from the run folder, whose model is rebuilt with its running statistics."""
    from PIL import Image
    from test_data_sources import write_cifar

    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path / "cache"))
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", per_batch=4)  # 20 training, 4 test images
    run = tmp_path / "run"
    args = ["--model", "resnet20-cifar", "--dataset", "cifar10", "--data-dir", tmp_path / "data",
            "--augment", "--epochs", "1", "--batch-size", "8", "--no-download", "--no-plots",
            "--no-progress", "--out", run]  # fmt: skip
    status, out, err = call(T, *args, capsys=capsys)
    assert status == 0, err
    assert "resnet20-cifar on cifar10" in out and "(3, 32, 32), 10 classes" in out
    model, checkpoint = load_model(run)
    for k, v in checkpoint.params.items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    assert not np.array_equal(checkpoint.params["bn1.running_var"], np.ones(16))  # trained statistics
    status, out, err = call(evaluate, "--checkpoint", run, capsys=capsys)
    assert status == 0 and "top-1 accuracy" in out, err
    picture = tmp_path / "picture.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(picture)
    status, out, err = call(predict, picture, "--checkpoint", run, "--top", "2", capsys=capsys)
    model_line = f"model: {run / 'last.npz'} (resnet20-cifar trained on cifar10 for 1 epoch)"
    assert status == 0 and out.splitlines()[:2] == [model_line, str(picture)], err


@pytest.mark.parametrize("name", ["resnet20-cifar", "vgg-cifar"])
def test_freeze_trains_only_the_classifier_on_the_bundled_set(name, capsys):
    """1×28×28 images: the models build for them; --freeze changes fc alone (BatchNorm statistics still
    follow the data in training mode, as in PyTorch)."""
    config = T.TrainConfig(model=name, freeze=True, epochs=1, limit_train=16, limit_test=8, val_fraction=0.0,
                           batch_size=8, progress=False, plots=False)  # fmt: skip
    initial = sn.models.build(name, in_channels=1, input_size=28, seed=config.seed).state_dict()
    result = T.train(config, log=lambda line: None)
    trained = result.model.state_dict()
    changed = {k for k in result.model.params if not np.array_equal(trained[k], initial[k])}
    assert changed == {"fc.W", "fc.b"}
