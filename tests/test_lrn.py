"""LocalResponseNorm: gradient checks (with the cross-channel term), devices, PyTorch's convention."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEVICES

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_layer

KERNEL_DEVICES = DEVICES[1:]  # sim and gpu: compared with cpu
# alpha = 0.1 and k = 1 make the normalisation strong enough that a wrong term shows.
SETTINGS = [
    {"size": 3, "alpha": 0.1, "beta": 0.75, "k": 1.0},
    {"size": 5, "alpha": 0.1, "beta": 0.75, "k": 1.0},
    {"size": 4, "alpha": 0.2, "beta": 0.5, "k": 2.0},  # even: the window is 2 channels before, 1 after
    {"size": 9, "alpha": 0.05, "beta": 1.0, "k": 1.0},  # wider than the 7 channels
]
SETTING_IDS = ["size3", "size5", "size4", "size9"]
SHAPE = (2, 7, 2, 3)


def inputs(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).standard_normal(shape) * 2


def forward_backward(layer, x, dy):
    dev = layer.device
    y = layer.forward(dev.array(x, dtype=layer.dtype))
    dx = layer.backward(dev.array(dy, dtype=layer.dtype))
    return dev.to_host(y), dev.to_host(dx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
def test_gradient(device, settings):
    errors = check_layer(sn.layers.LocalResponseNorm(**settings, device=device, dtype=np.float64), inputs())
    assert errors["x"] < TOLERANCE, errors


def test_gradcheck_catches_a_backward_without_the_cross_channel_term():
    class DiagonalMutant(sn.layers.LocalResponseNorm):
        def _backward_numpy(self, db):
            s = self._saved().s
            return db * s ** (-self.beta)  # treats the scale as a constant

    errors = check_layer(DiagonalMutant(**SETTINGS[1], dtype=np.float64), inputs())
    assert errors["x"] > 1e-2, errors


@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
def test_matches_pytorch_with_alpha_times_size(settings):
    torch = pytest.importorskip("torch")
    x, dy = inputs(), inputs(seed=1)
    size, alpha, beta, k = settings["size"], settings["alpha"], settings["beta"], settings["k"]
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.LocalResponseNorm(size, alpha * size, beta, k)(xt)  # PyTorch divides alpha by size
    yt.backward(torch.tensor(dy))
    y, dx = forward_backward(sn.layers.LocalResponseNorm(**settings, dtype=np.float64), x, dy)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_paper_defaults_and_formula():
    """One position by hand: channel 0 of 3 with size 5 sees channels 0, 1, 2 (the window is clipped)."""
    layer = sn.layers.LocalResponseNorm()
    assert (layer.size, layer.alpha, layer.beta, layer.k) == (5, 1e-4, 0.75, 2.0)  # Krizhevsky et al. 2012
    a = np.array([3.0, 4.0, 12.0]).reshape(1, 3, 1, 1)
    b = sn.layers.LocalResponseNorm(5, alpha=0.01, beta=0.5, k=1.0, dtype=np.float64).forward(a)
    assert b[0, 0, 0, 0] == pytest.approx(3.0 / np.sqrt(1.0 + 0.01 * (9 + 16 + 144)))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
def test_kernels_match_numpy(device, dtype, settings):
    x, dy = inputs((2, 7, 3, 5)), inputs((2, 7, 3, 5), seed=1)
    cpu = forward_backward(sn.layers.LocalResponseNorm(**settings, dtype=dtype), x, dy)
    kernels = forward_backward(sn.layers.LocalResponseNorm(**settings, device=device, dtype=dtype), x, dy)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for a, b in zip(cpu, kernels, strict=True):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


def test_shape_repr_and_bad_input():
    layer = sn.layers.LocalResponseNorm(3, alpha=0.1)
    assert layer.output_shape((2, 7, 4, 4)) == (2, 7, 4, 4)
    assert repr(layer) == "LocalResponseNorm(size=3, alpha=0.1, beta=0.75, k=2.0)"
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(7, 4, 4\)"):
        layer.forward(np.zeros((7, 4, 4), np.float32))
    with pytest.raises(ValueError, match="float32, got float64"):
        layer.forward(np.zeros((1, 7, 4, 4)))
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        sn.layers.LocalResponseNorm(0)
    with pytest.raises(ValueError, match="k > 0"):
        sn.layers.LocalResponseNorm(5, k=0.0)
