"""Sequential, LeNet-5 and the AlexNet variants: sizes, shapes, gradients, state dicts, devices."""

from __future__ import annotations

import numpy as np
import pytest

import scratchnet.models as M
from scratchnet.gradcheck import TOLERANCE, numerical_gradient, relative_error
from scratchnet.layers import (
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
)
from scratchnet.testing import DEVICES


@pytest.fixture(scope="module")
def alexnet_paper():
    return M.AlexNet(1000, variant="paper", seed=0)


@pytest.fixture(scope="module")
def alexnet_torchvision():
    return M.AlexNet(1000, variant="torchvision", seed=0)


# --- sizes and shapes ---------------------------------------------------------------------------------
def test_lenet5_parameter_count():
    assert M.LeNet5().num_params() == 61_706
    assert M.LeNet5(in_channels=3, input_size=32).num_params() == 62_006  # conv1 sees 3 channels: +300


def test_alexnet_parameter_counts(alexnet_paper, alexnet_torchvision):
    assert alexnet_paper.num_params() == 60_965_224
    assert alexnet_torchvision.num_params() == 61_100_840
    assert M.AlexNet(10, variant="cifar").num_params() == 543_946


def test_lenet5_shapes_and_summary():
    for size, pad in ((28, 2), (32, 0)):
        model = M.LeNet5(in_channels=1, input_size=size)
        assert model.layers["conv1"].params["W"].shape == (6, 1, 5, 5)
        shapes = model.output_shapes()
        assert shapes["conv1"] == (6, 28, 28), f"padding {pad} for input {size}"
    assert shapes["pool1"] == (6, 14, 14)
    assert shapes["conv2"] == (16, 10, 10)
    assert shapes["pool2"] == (16, 5, 5)
    assert shapes["flatten"] == (400,)
    assert [shapes[k] for k in ("fc1", "fc2", "fc3")] == [(120,), (84,), (10,)]

    table = M.LeNet5().summary((1, 28, 28)).splitlines()
    conv1_row = next(line for line in table if line.startswith("conv1"))
    assert "Conv2D" in conv1_row and "(6, 28, 28)" in conv1_row and conv1_row.rstrip().endswith("156")
    assert table[-1] == "total parameters: 61,706"


def test_alexnet_paper_shapes(alexnet_paper):
    shapes = alexnet_paper.output_shapes((3, 227, 227))
    assert shapes["conv1"] == (96, 55, 55)
    assert shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == (384, 13, 13) and shapes["conv4"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert shapes["flatten"] == (9216,)
    assert shapes["fc8"] == (1000,)
    assert alexnet_paper.layers["conv2"].params["W"].shape == (256, 48, 5, 5)  # 2 groups: half the channels
    assert "total parameters: 60,965,224" in alexnet_paper.summary()


def test_alexnet_torchvision_layout(alexnet_torchvision):
    shapes = alexnet_torchvision.output_shapes((3, 224, 224))
    assert shapes["conv1"] == (64, 55, 55) and shapes["pool5"] == (256, 6, 6)
    tv = [k for k, layer in alexnet_torchvision.layers.items() if layer.params]
    assert tv == list(M.TORCHVISION_NAMES)
    # dropout before fc6 and fc7, as torchvision has it
    names = list(alexnet_torchvision.layers)
    assert names[names.index("fc6") - 1] == "drop6" and names[names.index("fc7") - 1] == "drop7"


def test_alexnet_torchvision_refuses_sizes_that_do_not_give_6x6(alexnet_torchvision):
    assert alexnet_torchvision.output_shapes((3, 227, 227))["pool5"] == (256, 6, 6)
    with pytest.raises(ValueError, match=r"layer 'fc6'.*AdaptiveAvgPool2d"):
        alexnet_torchvision.output_shapes((3, 256, 256))


def test_alexnet_cifar_forward_shape():
    model = M.AlexNet(10, variant="cifar", seed=0)
    assert model.input_shape == (3, 32, 32)
    assert model.output_shapes()["pool5"] == (64, 4, 4)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert model.forward(x, training=False).shape == (2, 10)


def test_wrong_input_shape_names_layer_and_model_input():
    model = M.LeNet5()
    with pytest.raises(ValueError, match=r"layer 'conv1'.*expects \(N, 1, 28, 28\)"):
        model.forward(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"layer 'fc1'.*expects \(N, 1, 28, 28\)"):
        model.forward(np.zeros((2, 1, 32, 32), np.float32))


@pytest.mark.parametrize("size", [29, 30, 31])
def test_lenet5_refuses_images_it_would_crop(size):
    """Every layer runs on 29-31 px, but pooling would silently drop the last rows and columns."""
    with pytest.raises(
        ValueError, match=rf"\(2, 1, {size}, {size}\).*lenet5 expects exactly \(N, 1, 28, 28\)"
    ):
        M.LeNet5().forward(np.zeros((2, 1, size, size), np.float32))


@pytest.mark.parametrize("size", [28, 29, 30, 31])
def test_alexnet_cifar_refuses_other_sizes(size):
    model = M.AlexNet(10, variant="cifar", seed=0)
    with pytest.raises(ValueError, match=r"alexnet-cifar expects exactly \(N, 3, 32, 32\)"):
        model.forward(np.zeros((1, 3, size, size), np.float32), training=False)


def test_lenet5_refuses_sizes_without_a_28x28_conv1_output():
    with pytest.raises(ValueError, match="input_size must make conv1's output 28x28"):
        M.LeNet5(input_size=29)
    with pytest.raises(ValueError, match="got 36"):
        M.LeNet5(input_size=36)


def test_bad_model_name_lists_choices():
    with pytest.raises(ValueError, match="lenet5, alexnet, alexnet-torchvision, alexnet-cifar"):
        M.build("vgg16")
    with pytest.raises(ValueError, match="paper, torchvision, cifar"):
        M.AlexNet(variant="caffe")


def test_sequential_refuses_bad_names():
    with pytest.raises(ValueError, match="two layers are called 'relu'"):
        M.Sequential([("relu", ReLU()), ("relu", ReLU())])
    with pytest.raises(ValueError, match="without dots"):
        M.Sequential([("features.0", ReLU())])


# --- parameters, init, state ----------------------------------------------------------------------
def test_params_are_the_layers_arrays():
    model = M.LeNet5(seed=0)
    assert list(model.params)[:4] == ["conv1.W", "conv1.b", "conv2.W", "conv2.b"]
    assert model.params["fc2.W"] is model.layers["fc2"].params["W"]
    model.params["fc2.b"][...] = 7.0  # what an optimizer does
    assert np.all(model.layers["fc2"].params["b"] == 7.0)
    assert model.params.keys() == model.grads.keys()


def test_seeded_he_initialisation():
    a, b, c = M.LeNet5(seed=3), M.LeNet5(seed=3), M.LeNet5(seed=4)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["conv1.W"], c.params["conv1.W"])
    w = a.params["fc1.W"]  # (400, 120): He normal, std sqrt(2 / fan_in)
    assert w.std() == pytest.approx(np.sqrt(2 / 400), rel=0.03)
    assert abs(w.mean()) < 0.05 * w.std()
    for k in ("conv1.b", "fc1.b", "fc3.b"):
        assert np.all(a.params[k] == 0)


def test_state_dict_round_trip():
    model = M.LeNet5(seed=0)
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["conv1.W"] is not model.params["conv1.W"]
    original = {k: v.copy() for k, v in state.items()}
    model.params["conv1.W"][...] = 0.0
    np.testing.assert_array_equal(state["conv1.W"], original["conv1.W"])  # a copy, not a view

    other = M.LeNet5(seed=1)
    arrays_before = {k: v for k, v in other.params.items()}
    other.load_state_dict(original)
    for k, v in other.params.items():
        assert v is arrays_before[k]  # loaded in place
        np.testing.assert_array_equal(v, original[k])


def test_load_state_dict_errors():
    model = M.LeNet5(seed=0)
    state = model.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['fc3.b'\], unexpected keys \['fc4.b'\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "fc3.b"} | {"fc4.b": np.zeros(10)})
    with pytest.raises(ValueError, match=r"fc3.W: model \(84, 10\), given \(10, 84\)"):
        model.load_state_dict(state | {"fc3.W": state["fc3.W"].T})
    before = model.state_dict()
    with pytest.raises(ValueError, match="fc3.b holds NaN or infinite values"):
        model.load_state_dict({k: v + 1 for k, v in state.items()} | {"fc3.b": np.full(10, np.nan)})
    with pytest.raises(ValueError, match="fc3.b holds NaN or infinite values"):
        model.load_state_dict(state | {"fc3.b": np.full(10, -np.inf)})
    with pytest.raises(ValueError, match="fc3.W holds values too large for float32 \\(up to 1e\\+300\\)"):
        model.load_state_dict(state | {"fc3.W": np.full((84, 10), 1e300)})
    for k, v in model.state_dict().items():  # a refused load leaves the parameters before it as they were
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    missing, unexpected = model.load_state_dict({"fc3.b": np.ones(10), "extra": np.ones(1)}, strict=False)
    assert "conv1.W" in missing and unexpected == ["extra"]
    np.testing.assert_array_equal(model.params["fc3.b"], 1.0)


def test_config_rebuilds_the_model():
    model = M.AlexNet(7, variant="cifar", in_channels=1, seed=0)
    again = M.build(**model.config, seed=0)
    assert again.config == model.config
    for k, v in model.params.items():
        np.testing.assert_array_equal(again.params[k], v)


def test_replace_classifier_and_feature_params():
    model = M.LeNet5(seed=0)
    features = model.feature_param_names()
    assert features == ["conv1.W", "conv1.b", "conv2.W", "conv2.b"]
    before = model.state_dict()
    model.replace_classifier(5, seed=1)
    assert model.params["fc3.W"].shape == (84, 5) and model.config["num_classes"] == 5
    for k in before:
        if not k.startswith("fc3."):
            np.testing.assert_array_equal(model.params[k], before[k])
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 5)


# --- forward and backward through the model ----------------------------------------------------------
def tiny_net(device, dtype=np.float64) -> M.Sequential:
    """Every layer type, on a 2x6x6 input: small enough for finite differences on every parameter."""
    layers = [
        ("conv1", Conv2D(2, 3, 3, padding=1, seed=1)),
        ("relu1", ReLU()),
        ("norm1", LocalResponseNorm(size=3, alpha=0.1, beta=0.75, k=2.0)),
        ("pool1", MaxPool2D(2)),
        ("flatten", Flatten()),
        ("fc1", Linear(3 * 3 * 3, 5, seed=2)),
        ("relu2", ReLU()),
        ("drop", Dropout(0.3, seed=3)),
        ("fc2", Linear(5, 4, seed=4)),
    ]
    return M.Sequential(layers, device=device, dtype=dtype, input_shape=(2, 6, 6), input_grad=True)


def model_gradient_errors(model) -> dict[str, float]:
    """Relative error of dL/dx and of every dL/dparam from backward, against finite differences of the
    mean cross-entropy L of the whole model (dropout replays the same mask at every evaluation)."""
    dev = model.device
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((3, 2, 6, 6))
    labels = dev.array(np.array([0, 3, 1], dtype=np.int64))
    loss = SoftmaxCrossEntropy(device=dev, dtype=model.dtype)
    stochastic = {name: layer for name, layer in model.layers.items() if isinstance(layer, Dropout)}
    saved_calls = {name: layer.rng_calls for name, layer in stochastic.items()}

    def loss_of(x_dev):
        for name, layer in stochastic.items():
            layer.rewind(saved_calls[name])
        return loss.forward(model.forward(x_dev, training=True), labels)

    loss_of(dev.array(x_host))
    analytic = {"x": dev.to_host(model.backward(loss.backward()))}
    analytic |= {k: dev.to_host(g).copy() for k, g in model.grads.items()}

    errors = {
        "x": relative_error(analytic["x"], numerical_gradient(lambda xh: loss_of(dev.array(xh)), x_host))
    }
    x_dev = dev.array(x_host)
    for key, param in model.params.items():
        p_host = dev.to_host(param).copy()

        def loss_of_param(ph, param=param):
            param[...] = dev.array(ph)  # in place: the layer holds this very array
            return loss_of(x_dev)

        errors[key] = relative_error(analytic[key], numerical_gradient(loss_of_param, p_host))
        param[...] = dev.array(p_host)
    return errors


@pytest.mark.parametrize("device", DEVICES)
def test_model_gradients(device):
    errors = model_gradient_errors(tiny_net(device))
    assert set(errors) == {"x", "conv1.W", "conv1.b", "fc1.W", "fc1.b", "fc2.W", "fc2.b"}
    assert max(errors.values()) < TOLERANCE, errors


def test_model_gradient_check_catches_a_wrong_backward(monkeypatch):
    model = tiny_net("cpu")
    monkeypatch.setattr(model.layers["relu1"], "backward", lambda dy: dy)  # forgets the ReLU mask
    errors = model_gradient_errors(model)
    assert errors["conv1.W"] > 1e-3 and errors["x"] > 1e-3
    assert errors["fc2.W"] < TOLERANCE  # the layers after the mutant are still right


@pytest.mark.sim
def test_to_sim_and_back_is_bit_exact():
    model = M.LeNet5(seed=0, dtype=np.float64)
    before = model.state_dict()
    model.to("sim")
    assert model.device.name == "sim" and all(layer.device.name == "sim" for layer in model.layers.values())
    model.to("cpu")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    model.to("cpu", dtype=np.float32)
    assert model.dtype == np.float32 and model.params["conv1.W"].dtype == np.float32


@pytest.mark.sim
def test_lenet5_forward_backward_same_on_sim_and_cpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 28, 28))
    dout = rng.standard_normal((2, 10))
    results = {}
    for device in ("cpu", "sim"):
        model = M.LeNet5(seed=0, dtype=np.float64, device=device, input_grad=True)
        dev = model.device
        logits = dev.to_host(model.forward(dev.array(x), training=True))
        dx = dev.to_host(model.backward(dev.array(dout)))
        results[device] = [logits, dx] + [dev.to_host(g) for g in model.grads.values()]
    for cpu, sim in zip(results["cpu"], results["sim"], strict=True):
        np.testing.assert_allclose(sim, cpu, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_skips_the_input_gradient_unless_asked(device):
    """By default the first conv skips dL/dx (nobody reads it) and backward returns None; the parameter
    gradients are exactly those of a model that computes it."""
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 1, 28, 28)), rng.standard_normal((2, 10))
    grads, returned = {}, {}
    for input_grad in (False, True):
        model = M.LeNet5(seed=0, dtype=np.float64, device=device, input_grad=input_grad)
        assert model.layers["conv1"].needs_input_grad is input_grad
        dev = model.device
        model.forward(dev.array(x))
        returned[input_grad] = model.backward(dev.array(dout))
        grads[input_grad] = {k: dev.to_host(g) for k, g in model.grads.items()}
    assert returned[False] is None and returned[True].shape == x.shape
    for k, g in grads[True].items():
        np.testing.assert_array_equal(grads[False][k], g, err_msg=k)

    model.input_grad = False  # switched off later: the first layer follows
    assert model.layers["conv1"].needs_input_grad is False
    model.forward(model.device.array(x))
    assert model.backward(model.device.array(dout)) is None


@pytest.mark.parametrize("device", DEVICES)
def test_saliency_map_from_an_evaluation_forward(device):
    """An evaluation forward keeps nothing (backward is refused) unless ``keep_for_backward=True``; then
    backward is the exact gradient of the evaluation network (Dropout the identity), a saliency map."""
    model = tiny_net(device)
    dev = model.device
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((2, 2, 6, 6))
    G = rng.standard_normal((2, 4))  # dL/dlogits of f(x) = Σ model(x) ⊙ G
    model.forward(dev.array(x_host), training=False)
    with pytest.raises(RuntimeError, match="needs a forward with training=True or keep_for_backward=True"):
        model.backward(dev.array(G))

    model.forward(dev.array(x_host), training=False, keep_for_backward=True)
    saliency = dev.to_host(model.backward(dev.array(G)))

    def f(xh):
        return float(np.sum(dev.to_host(model.forward(dev.array(xh), training=False)) * G))

    assert relative_error(saliency, numerical_gradient(f, x_host.copy())) < TOLERANCE
    assert model.layers["drop"].rng_calls == 0  # evaluation draws no dropout mask


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_of_zero_runs_through_the_model(device):
    model = M.LeNet5(seed=0, device=device, input_grad=True)
    dev = model.device
    logits = model.forward(dev.array(np.zeros((0, 1, 28, 28), np.float32)))
    assert logits.shape == (0, 10)
    dx = model.backward(dev.zeros((0, 10), np.float32))
    assert dx.shape == (0, 1, 28, 28)
    for key, grad in model.grads.items():
        assert grad.shape == model.params[key].shape and not dev.to_host(grad).any(), key
