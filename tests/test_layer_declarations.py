"""What the rest of scratchnet needs to know about a layer, the layer declares: its kernel file and its
PyTorch twin. Nothing else lists layers, so every exported layer must declare both."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet import layers
from scratchnet._cuda.sources import kernel_dir
from scratchnet.layers import Layer

# One instance of every exported layer but the loss (its twin takes labels too: tested on its own below).
EXAMPLES = {
    "BatchNorm1D": lambda: layers.BatchNorm1D(3),
    "BatchNorm2D": lambda: layers.BatchNorm2D(3),
    "Conv2D": lambda: layers.Conv2D(3, 4, 3, stride=2, padding=1, groups=1),
    "Dropout": lambda: layers.Dropout(0.3),
    "Flatten": lambda: layers.Flatten(),
    "GlobalAvgPool2D": lambda: layers.GlobalAvgPool2D(),
    "Linear": lambda: layers.Linear(3, 4),
    "LocalResponseNorm": lambda: layers.LocalResponseNorm(3),
    "MaxPool2D": lambda: layers.MaxPool2D(2),
    "ReLU": lambda: layers.ReLU(),
    "ResidualBlock": lambda: layers.ResidualBlock(3, 5, stride=2),
}
INPUTS = {"BatchNorm1D": (5, 3), "Linear": (5, 3)}  # the rest take (N, C, H, W) = (5, 3, 6, 6)


def test_every_exported_layer_has_an_example():
    exported = {
        name
        for name in layers.__all__
        if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), Layer)
    }
    assert exported - {"Layer", "SoftmaxCrossEntropy"} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted([*EXAMPLES, "SoftmaxCrossEntropy"]))
def test_the_kernel_file_exists(name):
    layer = EXAMPLES.get(name, layers.SoftmaxCrossEntropy)()
    if layer.kernel_file is None:  # no kernel: Flatten only reshapes
        assert name == "Flatten"
    else:
        assert (kernel_dir() / layer.kernel_file).is_file()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_torch_twin_computes_what_the_layer_computes(name, dtype):
    """The twin's evaluation output equals the layer's on one input (Dropout: the identity)."""
    torch = pytest.importorskip("torch")
    layer = EXAMPLES[name]().to("cpu", dtype)
    x = np.random.default_rng(0).standard_normal(INPUTS.get(name, (5, 3, 6, 6))).astype(dtype)
    twin = layer.torch_equivalent(torch).eval()
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    assert theirs.dtype == dtype  # the weights kept the layer's precision
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(layer.forward(x, training=False), theirs, rtol=tolerance, atol=tolerance)


def test_the_loss_twin_computes_the_same_loss():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    loss = layers.SoftmaxCrossEntropy(dtype=np.float64)
    theirs = loss.torch_equivalent(torch)(torch.from_numpy(logits), torch.from_numpy(labels))
    assert loss.forward(logits, labels) == pytest.approx(theirs.item(), rel=1e-12)


def test_a_layer_without_a_twin_says_so():
    class Doubling(Layer):
        def output_shape(self, input_shape):
            return input_shape

    with pytest.raises(NotImplementedError, match="Doubling declares no PyTorch equivalent"):
        Doubling().torch_equivalent(None)
