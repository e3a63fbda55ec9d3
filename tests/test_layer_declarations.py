"""What the rest of scratchnet needs to know about a layer, the layer declares: its kernel file and its
PyTorch twin. Nothing else lists layers, so every exported layer must declare both."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet import layers
from scratchnet._cuda.sources import kernel_dir
from scratchnet.layers import Layer

EXPORTED = sorted(
    name
    for name in layers.__all__
    if name != "Layer"
    and isinstance(getattr(layers, name), type)
    and issubclass(getattr(layers, name), Layer)
)


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_layer_declares_its_kernel_file_and_twin(name):
    cls = getattr(layers, name)
    assert cls.torch_equivalent is not Layer.torch_equivalent, f"{name} declares no torch_equivalent"
    if cls.kernel_file is None:  # no kernels only where the kernel path is the NumPy path (Flatten)
        assert cls._forward_kernels is cls._forward_numpy, f"{name} launches kernels but names no kernel_file"
    else:
        assert (kernel_dir() / cls.kernel_file).is_file(), f"{name}: no kernels/{cls.kernel_file}"


# The twins of the layers that no family test compares with PyTorch (each family's test does for its own).
EXAMPLES = {
    "BatchNorm1D": lambda: layers.BatchNorm1D(3),
    "Dropout": lambda: layers.Dropout(0.3),
    "Flatten": lambda: layers.Flatten(),
    "GlobalAvgPool2D": lambda: layers.GlobalAvgPool2D(),
    "ResidualBlock": lambda: layers.ResidualBlock(3, 5, stride=2),
}
INPUTS = {"BatchNorm1D": (5, 3)}  # the rest take (N, C, H, W) = (5, 3, 6, 6)


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
