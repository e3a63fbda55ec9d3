"""ReLU and Flatten: the layer contract, a mutant, the kink and NaN, PyTorch reference, Flatten's layout."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet.gradcheck import check_layer
from scratchnet.layers import Flatten, ReLU
from scratchnet.testing import DEVICES, LayerContract, LayerSpec, forward_backward, split_batches

EXACT = {np.dtype(np.float32): 0.0, np.dtype(np.float64): 0.0}  # nothing to round: kernels match bit for bit


def away_from_zero(shape, rng=None):
    """Random values with |x| >= 0.1, so no finite difference straddles ReLU's kink at 0."""
    x = (rng or np.random.default_rng(0)).standard_normal(shape)
    return np.sign(x) * (0.1 + np.abs(x))


class TestReLUContract(LayerContract):
    spec = LayerSpec(
        make=ReLU,
        input_shape=(2, 3, 4, 4),
        make_input=away_from_zero,
        tolerance=EXACT,
        reference=lambda layer, x: np.where(x > 0, x, 0.0),
        geometries={"odd sizes, 2-d": {"input_shape": (3, 7)}},
    )


class TestFlattenContract(LayerContract):
    spec = LayerSpec(
        make=Flatten,
        input_shape=(2, 3, 2, 2),
        tolerance=EXACT,
        bad_shapes=((5,),),
        reference=lambda layer, x: np.stack([example.ravel() for example in x]),
        geometries={"odd sizes, 3-d": {"input_shape": (3, 5, 3)}},
    )


def test_relu_gradcheck_catches_a_wrong_backward():
    """A backward that lets the gradient through where y == 0 (``y >= 0``) must fail the check."""

    class LeakyMutant(ReLU):
        def _backward_numpy(self, dy):
            return dy * (self._saved().y >= 0)

    errors = check_layer(LeakyMutant(dtype=np.float64), away_from_zero((2, 3, 4, 4)))
    assert errors["x"] > 1e-2, errors


@pytest.mark.parametrize("device", DEVICES)
def test_relu_values_and_nan(device):
    x = np.array([[-2.0, -0.0, 0.0, 0.5, np.nan]], dtype=np.float32)
    y, dx, _ = forward_backward(ReLU(device=device), x, np.ones_like(x))
    np.testing.assert_array_equal(y, [[0, 0, 0, 0.5, np.nan]])
    np.testing.assert_array_equal(dx, [[0, 0, 0, 1, 0]])  # slope 0 at the kink, as PyTorch


@pytest.mark.parametrize("threads", [2, 3])
def test_relu_split_over_threads_gives_the_one_thread_result(threads, monkeypatch):
    """Seven images as parts of 3+4 or 2+2+3, each part writing its slice of y and of dx."""
    x, dy = away_from_zero((7, 3, 4, 5)), np.random.default_rng(3).standard_normal((7, 3, 4, 5))
    expected = forward_backward(ReLU(dtype=np.float64), x, dy)
    with split_batches(threads, monkeypatch) as splits:
        got = forward_backward(ReLU(dtype=np.float64), x, dy)
    assert [len(split) for split in splits] == [threads, threads]  # forward and backward
    np.testing.assert_array_equal(got.y, expected.y)
    np.testing.assert_array_equal(got.dx, expected.dx)


def test_relu_matches_pytorch():
    torch = pytest.importorskip("torch")
    x, dy = away_from_zero((2, 3, 4, 4)), np.random.default_rng(3).standard_normal((2, 3, 4, 4))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(dy))
    y, dx, _ = forward_backward(ReLU(dtype=np.float64), x, dy)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (1, 2, 3)])
def test_flatten_layout(shape):
    """C (row-major) order, as ``torch.flatten(x, 1)``; backward moves dy back into x's shape."""
    layer = Flatten(dtype=np.float64)
    x = np.random.default_rng(0).standard_normal(shape)
    y, dx, _ = forward_backward(layer, x, x.reshape(shape[0], -1) * 2)
    assert layer.output_shape(shape) == y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(y, x.reshape(shape[0], -1))
    np.testing.assert_array_equal(dx, 2 * x)


def test_flatten_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"Flatten: .*at least 2 dimensions, got \(5,\)"):
        Flatten().forward(np.zeros(5, dtype=np.float32))
