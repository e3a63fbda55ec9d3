"""LocalResponseNorm: the layer contract, every window placement, a mutant, PyTorch's convention."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_layer
from scratchnet.layers import LocalResponseNorm
from scratchnet.testing import DEVICES, KERNEL_DEVICES, LayerContract, LayerSpec, forward_backward

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


class TestLocalResponseNormContract(LayerContract):
    spec = LayerSpec(
        make=functools.partial(LocalResponseNorm, size=4, alpha=0.2, beta=0.5, k=2.0),
        input_shape=(2, 5, 2, 3),
        make_input=lambda shape, rng: 2 * rng.standard_normal(shape),
        bad_shapes=((2, 5, 6),),
        reference=lambda layer, x: x * local_energy(layer, x) ** -layer.beta,
        geometries={
            "size 3, 1 channel": {
                "make": functools.partial(LocalResponseNorm, size=3, alpha=0.1),
                "input_shape": (1, 1, 3, 1),
            }
        },
    )


def local_energy(layer, x):
    """k + α Σ x[c']² over the channels c' from c - size//2 to c + (size-1)//2 that exist, for each c."""
    C = x.shape[1]
    return np.stack(
        [
            layer.k
            + layer.alpha
            * (x[:, max(0, c - layer.size // 2) : c + (layer.size - 1) // 2 + 1] ** 2).sum(axis=1)
            for c in range(C)
        ],
        axis=1,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
def test_gradient_for_every_window(device, settings):
    errors = check_layer(sn.layers.LocalResponseNorm(**settings, device=device, dtype=np.float64), inputs())
    assert errors["x"] < TOLERANCE, errors


def test_gradcheck_catches_a_backward_without_the_cross_channel_term():
    class DiagonalMutant(sn.layers.LocalResponseNorm):
        def _backward_numpy(self, dy):
            scale = self._saved().scale
            return dy * scale ** (-self.beta)  # treats the scale as a constant

    errors = check_layer(DiagonalMutant(**SETTINGS[1], dtype=np.float64), inputs())
    assert errors["x"] > 1e-2, errors


@pytest.mark.parametrize("settings", SETTINGS, ids=SETTING_IDS)
def test_matches_pytorch_with_alpha_times_size(settings):
    torch = pytest.importorskip("torch")
    x, dy = inputs(), inputs(seed=1)
    xt = torch.tensor(x, requires_grad=True)
    layer = LocalResponseNorm(**settings, dtype=np.float64)
    yt = layer.torch_equivalent(torch)(xt)  # the layer's own twin: PyTorch divides alpha by size
    yt.backward(torch.tensor(dy))
    y, dx, _ = forward_backward(layer, x, dy)
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
def test_kernels_match_numpy_for_every_window(device, dtype, settings):
    x, dy = inputs((2, 7, 3, 5)), inputs((2, 7, 3, 5), seed=1)
    cpu = forward_backward(sn.layers.LocalResponseNorm(**settings, dtype=dtype), x, dy)
    kernels = forward_backward(sn.layers.LocalResponseNorm(**settings, device=device, dtype=dtype), x, dy)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(kernels.y, cpu.y, rtol=tol, atol=tol)
    np.testing.assert_allclose(kernels.dx, cpu.dx, rtol=tol, atol=tol)


def test_shape_repr_and_bad_arguments():
    layer = sn.layers.LocalResponseNorm(3, alpha=0.1)
    assert layer.output_shape((2, 7, 4, 4)) == (2, 7, 4, 4)
    assert repr(layer) == "LocalResponseNorm(size=3, alpha=0.1, beta=0.75, k=2.0)"
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        sn.layers.LocalResponseNorm(0)
    with pytest.raises(ValueError, match="k > 0"):
        sn.layers.LocalResponseNorm(5, k=0.0)
