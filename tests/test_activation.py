"""ReLU and Flatten: gradient checks, a mutant, agreement across devices, PyTorch reference, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEVICES

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_layer

KERNEL_DEVICES = DEVICES[1:]  # sim and gpu: compared with cpu


def away_from_zero(shape, seed=0):
    """Random values with |x| >= 0.1, so no finite difference straddles ReLU's kink at 0."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.sign(x) * (0.1 + np.abs(x))


def forward_backward(layer, x, dy):
    """Run ``layer`` on host arrays ``x`` and ``dy``; return y and dx on the host."""
    dev = layer.device
    y = layer.forward(dev.array(x, dtype=layer.dtype))
    dx = layer.backward(dev.array(dy, dtype=layer.dtype))
    return dev.to_host(y), dev.to_host(dx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 4), (1, 1, 1, 7)])
def test_relu_gradient(device, shape):
    errors = check_layer(sn.layers.ReLU(device=device, dtype=np.float64), away_from_zero(shape))
    assert errors["x"] < TOLERANCE, errors


def test_relu_gradcheck_catches_a_wrong_backward():
    """A backward that lets the gradient through where y == 0 (``y >= 0``) must fail the check."""

    class LeakyMutant(sn.layers.ReLU):
        def _backward_numpy(self, dy):
            return dy * (self._saved().y >= 0)

    errors = check_layer(LeakyMutant(dtype=np.float64), away_from_zero((2, 3, 4, 4)))
    assert errors["x"] > 1e-2, errors


@pytest.mark.parametrize("device", DEVICES)
def test_relu_values_and_nan(device):
    dev = sn.get_device(device)
    x = np.array([[-2.0, -0.0, 0.0, 0.5, np.nan]], dtype=np.float32)
    y, dx = forward_backward(sn.layers.ReLU(device=device), x, np.ones_like(x))
    np.testing.assert_array_equal(y, [[0, 0, 0, 0.5, np.nan]])
    np.testing.assert_array_equal(dx, [[0, 0, 0, 1, 0]])  # slope 0 at the kink, as PyTorch
    assert dev.is_array(sn.layers.ReLU(device=device).forward(dev.array(x)))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_match_numpy_exactly(device, dtype):
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    dy = np.random.default_rng(2).standard_normal(x.shape)
    cpu = forward_backward(sn.layers.ReLU(dtype=dtype), x, dy)
    kernels = forward_backward(sn.layers.ReLU(device=device, dtype=dtype), x, dy)
    for a, b in zip(cpu, kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_relu_matches_pytorch():
    torch = pytest.importorskip("torch")
    x, dy = away_from_zero((2, 3, 4, 4)), np.random.default_rng(3).standard_normal((2, 3, 4, 4))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(dy))
    y, dx = forward_backward(sn.layers.ReLU(dtype=np.float64), x, dy)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (1, 2, 3)])
def test_flatten_gradient_and_layout(device, shape):
    layer = sn.layers.Flatten(device=device, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal(shape)
    y, dx = forward_backward(layer, x, x.reshape(shape[0], -1) * 2)
    assert layer.output_shape(shape) == y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(y, x.reshape(shape[0], -1))  # C order, as torch.flatten(x, 1)
    np.testing.assert_array_equal(dx, 2 * x)
    assert check_layer(layer, x)["x"] < TOLERANCE


@pytest.mark.parametrize("layer_class", [sn.layers.ReLU, sn.layers.Flatten])
def test_bad_input_names_expected_and_actual(layer_class):
    layer = layer_class(dtype=np.float32)
    with pytest.raises(ValueError, match="float32.*float64"):
        layer.forward(np.zeros((2, 3), dtype=np.float64))
    with pytest.raises(ValueError, match="must be an array"):
        layer.forward([[1.0, 2.0]])


def test_flatten_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got \(5,\)"):
        sn.layers.Flatten().forward(np.zeros(5, dtype=np.float32))
