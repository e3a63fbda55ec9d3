"""Loading torchvision's AlexNet weights: layout (Linear transposed), logits parity with PyTorch, errors.

The reference net is written with ``torch.nn`` under torchvision's module names (torchvision itself is not
imported), with PyTorch's random initialisation standing in for the ImageNet weights.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

import scratchnet.models as M
from scratchnet.pretrained import (
    TORCHVISION_ALEXNET_URL,
    convert_to_npz,
    from_torchvision,
    load_torchvision_alexnet,
    load_torchvision_weights,
    read_state_dict,
)


def torchvision_alexnet(num_classes: int = 1000):
    """torchvision.models.AlexNet's module tree, rebuilt with torch.nn (same state_dict keys)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )  # fmt: skip
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )  # fmt: skip

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    return AlexNet().eval()


@pytest.fixture(scope="module")
def torch_net():
    return torchvision_alexnet()


@pytest.fixture(scope="module")
def torch_state(torch_net) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in torch_net.state_dict().items()}


@pytest.fixture(scope="module")
def pth_path(tmp_path_factory, torch_net):
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("weights") / "alexnet.pth"
    torch.save(torch_net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def model():
    return M.AlexNet(1000, variant="torchvision", seed=0)


def test_pth_logits_match_pytorch(pth_path, torch_net, model):
    torch = pytest.importorskip("torch")
    load_torchvision_weights(model, pth_path)

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(x)).numpy()
    start = time.perf_counter()
    logits = model.forward(x, training=False)
    seconds = time.perf_counter() - start
    print(f"scratchnet AlexNet forward, 1 x 3 x 224 x 224 on cpu: {seconds:.2f} s")
    assert logits.shape == (1, 1000)
    error = np.linalg.norm(logits - expected) / np.linalg.norm(expected)
    assert error < 1e-4, error


def test_layout_conv_as_is_linear_transposed(torch_state, model):
    load_torchvision_weights(model, torch_state)
    np.testing.assert_array_equal(model.params["conv1.W"], torch_state["features.0.weight"])
    np.testing.assert_array_equal(model.params["conv5.b"], torch_state["features.10.bias"])
    np.testing.assert_array_equal(model.params["fc6.W"], torch_state["classifier.1.weight"].T)  # (9216, 4096)
    np.testing.assert_array_equal(model.params["fc8.b"], torch_state["classifier.6.bias"])


def test_npz_needs_no_torch(tmp_path, monkeypatch, pth_path, torch_state):
    npz = tmp_path / "alexnet.npz"
    convert_to_npz(pth_path, npz)

    monkeypatch.setitem(sys.modules, "torch", None)  # from here on, `import torch` fails
    with pytest.raises(
        ImportError, match=r"needs PyTorch.*python -m scratchnet.pretrained alexnet.pth alexnet"
    ):
        read_state_dict(pth_path)
    loaded = load_torchvision_alexnet(npz, seed=0)
    assert loaded.config["name"] == "alexnet-torchvision" and loaded.config["num_classes"] == 1000
    for ours, theirs in (("conv2.W", "features.3.weight"), ("fc7.W", "classifier.4.weight")):
        expected = torch_state[theirs].T if ours.startswith("fc") else torch_state[theirs]
        np.testing.assert_array_equal(loaded.params[ours], expected)


def test_missing_and_unexpected_keys_are_named(torch_state, model):
    state = {k: v for k, v in torch_state.items() if k != "features.0.weight"}
    with pytest.raises(KeyError, match=r"missing keys \['features.0.weight'\], unexpected keys \[\]"):
        load_torchvision_weights(model, state)
    with pytest.raises(KeyError, match=r"unexpected keys \['features.1.weight'\]"):
        load_torchvision_weights(model, torch_state | {"features.1.weight": np.zeros(3)})


def test_other_class_count_needs_skipping(torch_state, model):
    model.replace_classifier(10, seed=0)
    try:
        check_skipping(torch_state, model)
    finally:
        model.replace_classifier(1000, seed=0)


def check_skipping(torch_state, model10):
    fc8_before = model10.params["fc8.W"].copy()
    with pytest.raises(
        ValueError, match=r"fc8.W: model \(4096, 10\), weights \(4096, 1000\).*skip_last_layer=True"
    ):
        load_torchvision_weights(model10, torch_state)

    load_torchvision_weights(model10, torch_state, skip_last_layer=True)
    np.testing.assert_array_equal(model10.params["fc7.W"], torch_state["classifier.4.weight"].T)
    np.testing.assert_array_equal(model10.params["fc8.W"], fc8_before)

    features_only = {k: v for k, v in torch_state.items() if k.startswith("features.")}
    model10.params["fc7.W"][...] = 0.0
    load_torchvision_weights(model10, features_only, skip_classifier=True)
    np.testing.assert_array_equal(model10.params["conv4.W"], torch_state["features.8.weight"])
    assert not model10.params["fc7.W"].any()  # the classifier was left alone


def test_from_torchvision_maps_every_key(torch_state):
    ours = from_torchvision(torch_state)
    assert sorted(ours) == sorted(f"{layer}.{p}" for layer in M.TORCHVISION_NAMES for p in ("W", "b"))
    assert ours["fc6.W"].shape == (9216, 4096)


def test_wrong_model_and_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="AlexNet\\(variant='torchvision'\\) only, not model 'lenet5'"):
        load_torchvision_weights(M.LeNet5(), {})
    missing = tmp_path / "nowhere" / "alexnet.pth"
    with pytest.raises(FileNotFoundError, match=f"no weights file at {missing}.*{TORCHVISION_ALEXNET_URL}"):
        read_state_dict(missing)
    other = tmp_path / "weights.h5"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=r"expected a \.pth/\.pt \(PyTorch\) or \.npz file"):
        read_state_dict(other)
    with pytest.raises(ValueError, match="RGB images"):
        load_torchvision_alexnet({}, in_channels=1)
