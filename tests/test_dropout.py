"""Dropout: the counter-based masks (same bits on every device), scaling, evaluation mode, gradients."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import scratchnet as sn
from scratchnet.gradcheck import check_layer
from scratchnet.layers import Dropout
from scratchnet.testing import DEVICES, KERNEL_DEVICES, LayerContract, LayerSpec

MASK64 = 2**64 - 1


class TestDropoutContract(LayerContract):
    """The gradient checks replay one mask (``check_layer`` resets ``rng_calls`` before every forward); the
    kernels draw the same mask as NumPy, bit for bit."""

    spec = LayerSpec(
        make=functools.partial(Dropout, 0.3, seed=1234),
        input_shape=(3, 4, 2, 2),
        tolerance={np.dtype(np.float32): 0.0, np.dtype(np.float64): 0.0},
        reference=lambda layer, x: x * keep_by_definition(layer, x.shape) / (1 - layer.p),
        geometries={"odd sizes, 2-d": {"input_shape": (5, 7)}},
    )


def keep_by_definition(layer, shape) -> np.ndarray:
    """Which elements the first training forward of a fresh ``layer`` keeps, from the documented hash."""
    return reference_keep(layer.seed, 0, int(np.prod(shape)), layer.p).reshape(shape)


def reference_keep(seed: int, calls: int, n: int, p: float) -> np.ndarray:
    """The documented formula, one element at a time in plain Python integers (independent of the layer)."""

    def mix64(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    golden = 0x9E3779B97F4A7C15
    key = mix64((seed + golden * (calls + 1)) & MASK64)
    uniforms = [(mix64((key + golden * (i + 1)) & MASK64) >> 40) / 2**24 for i in range(n)]
    return np.array(uniforms) >= p


def training_output(layer, x):
    dev = layer.device
    return dev.to_host(layer.forward(dev.array(x, dtype=layer.dtype), training=True))


def test_gradcheck_catches_a_backward_without_the_scale():
    class UnscaledMutant(sn.layers.Dropout):
        def _backward_numpy(self, dy):
            return dy * (self._saved().mask != 0)  # forgets the 1 / (1 - p)

    x = np.random.default_rng(0).standard_normal((3, 8))
    assert check_layer(UnscaledMutant(0.5, seed=1, dtype=np.float64), x)["x"] > 1e-2


@pytest.mark.parametrize("device", DEVICES)
def test_masks_follow_the_documented_hash(device):
    seed, p, shape = 2**63 + 12345, 0.3, (4, 5, 3)  # a seed above 2^63 exercises the full uint64 range
    layer = sn.layers.Dropout(p, seed=seed, device=device, dtype=np.float64)
    x = np.ones(shape)
    for calls in range(3):
        kept = training_output(layer, x) != 0
        np.testing.assert_array_equal(kept.ravel(), reference_keep(seed, calls, x.size, p))
    assert layer.rng_calls == 3


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_draw_the_same_masks_bit_for_bit(device, dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 5))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    cpu = sn.layers.Dropout(0.4, seed=99, dtype=dtype)
    kernels = sn.layers.Dropout(0.4, seed=99, device=device, dtype=dtype)
    dev = kernels.device
    for _ in range(3):  # successive calls: fresh masks, still equal across devices
        y_cpu = cpu.forward(x.astype(dtype))
        y_dev = kernels.forward(dev.array(x, dtype=dtype))
        np.testing.assert_array_equal(y_cpu, dev.to_host(y_dev))
        dx_dev = kernels.backward(dev.array(dy, dtype=dtype))
        np.testing.assert_array_equal(cpu.backward(dy.astype(dtype)), dev.to_host(dx_dev))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scaling(device, p):
    n = 20_000 if device == "cpu" else 4_000
    x = np.random.default_rng(0).uniform(1, 2, size=(n,))
    y = training_output(sn.layers.Dropout(p, seed=7, device=device, dtype=np.float64), x)
    kept = y != 0
    # The kept fraction is Binomial(n, 1 - p) / n: allow 5 standard deviations.
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_masks_differ_across_calls_and_repeat_from_the_counter(device):
    layer = sn.layers.Dropout(0.5, seed=3, device=device, dtype=np.float64)
    x = np.ones((8, 16))
    first, second = training_output(layer, x), training_output(layer, x)
    assert not np.array_equal(first, second)
    layer.rewind(0)  # what a checkpoint restores for an exact resume
    np.testing.assert_array_equal(training_output(layer, x), first)
    other_seed = training_output(sn.layers.Dropout(0.5, seed=4, device=device, dtype=np.float64), x)
    assert not np.array_equal(other_seed, first)


@pytest.mark.parametrize("device", DEVICES)
def test_identity_in_evaluation_and_its_backward(device):
    layer = sn.layers.Dropout(0.5, seed=0, device=device, dtype=np.float32)
    dev = layer.device
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_array_equal(dev.to_host(layer.forward(dev.array(x), training=False)), x)
    with pytest.raises(RuntimeError, match="keep_for_backward=True"):
        layer.backward(dev.array(2 * x))  # an evaluation forward keeps nothing
    y = layer.forward(dev.array(x), training=False, keep_for_backward=True)  # a saliency map's forward
    np.testing.assert_array_equal(dev.to_host(y), x)
    np.testing.assert_array_equal(dev.to_host(layer.backward(dev.array(2 * x))), 2 * x)
    assert layer.rng_calls == 0  # evaluation draws no mask


def test_p_zero_keeps_everything():
    x = np.random.default_rng(0).standard_normal((5, 5))
    np.testing.assert_array_equal(training_output(sn.layers.Dropout(0.0, seed=0, dtype=np.float64), x), x)


def test_seed_from_os_entropy():
    a, b = sn.layers.Dropout(), sn.layers.Dropout()
    assert 0 <= a.seed < 2**64 and a.seed != b.seed
    assert repr(a) == "Dropout(p=0.5)" and a.output_shape((3, 4)) == (3, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.0}, r"\[0, 1\), got 1.0"),
        ({"p": -0.1}, r"\[0, 1\), got -0.1"),
        ({"p": "0.5"}, "got '0.5'"),
        ({"seed": -1}, "seed must be an integer"),
        ({"seed": 2**64}, "seed must be an integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sn.layers.Dropout(**kwargs)


def test_the_random_stream_is_moved_only_through_its_methods():
    layer = sn.layers.Dropout(0.5, seed=0)
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match="Dropout: rng_calls must be a non-negative integer"):
            layer.rewind(bad)
        with pytest.raises(ValueError, match="Dropout: first_example must be a non-negative integer"):
            layer.shard_from(bad)
    with pytest.raises(AttributeError):
        layer.rng_calls = 2  # read-only: rewind() says what it is for
