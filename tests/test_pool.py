"""MaxPool2D and AvgPool2D: the layer contract, geometries, naive vs fast, ties, overlapping windows, windows
that skip inputs, an independent reference, PyTorch."""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np
import pytest

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_layer
from scratchnet.layers import AvgPool2D, MaxPool2D
from scratchnet.testing import (
    DEVICES,
    KERNEL_DEVICES,
    LayerContract,
    LayerSpec,
    forward_backward,
    split_batches,
)

# (input shape, kernel_size, stride, padding)
CONFIGS = [
    ((2, 2, 7, 7), 3, 2, 0),  # AlexNet's overlapping 3x3 stride 2
    ((2, 3, 6, 6), 2, None, 0),  # LeNet's 2x2 stride 2
    ((2, 1, 5, 7), 2, 2, 0),  # sizes not divisible by the stride: the last row/column is dropped
    ((1, 2, 5, 5), 3, 2, 1),  # padding 1, batch 1
    ((1, 2, 5, 6), (3, 2), (1, 2), (1, 1)),  # non-square kernel and stride, padding
    ((2, 2, 5, 4), 2, 2, 1),  # non-overlapping windows reaching into the padding
]
CONFIG_IDS = ["3x3s2", "2x2s2", "2x2s2-ragged", "3x3s2p1", "3x2s1x2p1", "2x2s2p1"]


def distinct(shape, seed=0):
    """A shuffled 0, 0.01, 0.02, ...: no ties, values 1000x further apart than the finite-difference h."""
    return np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.01


def max_pool_by_definition(layer, x):
    """y[n, c, oh, ow] = the largest x of the window from (oh*SH - PH, ow*SW - PW), padding as -inf."""
    (KH, KW), (SH, SW), (PH, PW) = layer.kernel_size, layer.stride, layer.padding
    padded = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=-np.inf)
    OH, OW = (padded.shape[2] - KH) // SH + 1, (padded.shape[3] - KW) // SW + 1
    y = np.empty((*x.shape[:2], OH, OW))
    for n, c, oh, ow in np.ndindex(y.shape):
        y[n, c, oh, ow] = padded[n, c, oh * SH : oh * SH + KH, ow * SW : ow * SW + KW].max()
    return y


def geometries(impl: str) -> dict:
    """Windows with gaps between them, and non-overlapping ones reaching into the padding."""
    return {
        "stride 3 > kernel 2": {
            "make": functools.partial(MaxPool2D, 2, 3, 0, impl),
            "input_shape": (2, 3, 7, 8),
        },
        "2x2s2p1, odd sizes": {
            "make": functools.partial(MaxPool2D, 2, 2, 1, impl),
            "input_shape": (1, 3, 5, 3),
        },
    }


class TestMaxPool2DContract(LayerContract):
    """Overlapping windows reaching into the padding (more geometries below)."""

    spec = LayerSpec(
        make=functools.partial(MaxPool2D, 3, 2, padding=1),
        input_shape=(2, 2, 5, 6),
        make_input=lambda shape, rng: distinct(shape, seed=int(rng.integers(100))),
        tolerance={np.dtype(np.float32): 0.0, np.dtype(np.float64): 0.0},  # a maximum is exact
        bad_shapes=((2, 2, 5),),
        reference=max_pool_by_definition,
        geometries=geometries("fast"),
    )


class TestMaxPool2DNaiveContract(LayerContract):
    spec = dataclasses.replace(
        TestMaxPool2DContract.spec,
        make=functools.partial(MaxPool2D, 3, 2, 1, "naive"),
        geometries=geometries("naive"),
    )


def with_ties(shape, seed=0):
    """Small integers: most windows hold their maximum more than once."""
    return np.random.default_rng(seed).integers(0, 3, size=shape).astype(np.float64)


def pool(config, **kwargs):
    _, kernel_size, stride, padding = config
    return sn.layers.MaxPool2D(kernel_size, stride, padding, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_gradient(device, config):
    errors = check_layer(pool(config, device=device, dtype=np.float64), distinct(config[0]))
    assert errors["x"] < TOLERANCE, errors


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_naive_gradient(config):
    errors = check_layer(pool(config, impl="naive", dtype=np.float64), distinct(config[0]))
    assert errors["x"] < TOLERANCE, errors


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("make_input", [distinct, with_ties, np.ones], ids=["distinct", "ties", "constant"])
def test_naive_and_fast_agree_exactly(config, make_input):
    x = make_input(config[0])
    naive, fast = pool(config, impl="naive", dtype=np.float64), pool(config, dtype=np.float64)
    y = naive.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_array_equal(fast.forward(x), y)
    np.testing.assert_array_equal(fast._saved().argmax, naive._saved().argmax)
    np.testing.assert_array_equal(fast.backward(dy), naive.backward(dy))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("make_input", [distinct, with_ties], ids=["distinct", "ties"])
def test_fast_split_over_threads_agrees_with_naive_exactly(config, make_input, threads, monkeypatch):
    """Seven images as parts of 3+4 or 2+2+3, each part writing its slice of y, argmax and dx."""
    x = make_input((7, *config[0][1:]))
    naive = pool(config, impl="naive", dtype=np.float64)
    y = naive.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    fast = pool(config, dtype=np.float64)
    with split_batches(threads, monkeypatch) as splits:
        np.testing.assert_array_equal(fast.forward(x), y)
        np.testing.assert_array_equal(fast.backward(dy), naive.backward(dy))
    np.testing.assert_array_equal(fast._saved().argmax, naive._saved().argmax)
    assert [len(split) for split in splits] == [threads, threads]  # forward and backward


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["fast", "naive"])
def test_ties_send_the_gradient_to_the_first_maximum(device, impl):
    """Constant input: every window is one big tie, and its gradient goes to its top-left element."""
    x = np.ones((1, 1, 7, 7))
    layer = sn.layers.MaxPool2D(3, 2, impl=impl, device=device, dtype=np.float64)  # overlapping windows
    y, dx, _ = forward_backward(layer, x, np.ones((1, 1, 3, 3)))
    expected = np.zeros((7, 7))
    expected[0:6:2, 0:6:2] = 1  # window (oh, ow) starts at (2*oh, 2*ow)
    np.testing.assert_array_equal(y, np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("device", DEVICES)
def test_overlapping_windows_accumulate(device):
    """The global maximum at (2, 2) is the maximum of all four 3x3 stride-2 windows of a 5x5 input."""
    x = distinct((1, 1, 5, 5))
    x[0, 0, 2, 2] = 100.0
    y, dx, _ = forward_backward(MaxPool2D(3, 2, device=device, dtype=np.float64), x, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 100.0))
    assert dx[0, 0, 2, 2] == 4 and dx.sum() == 4


def test_gradcheck_catches_overwriting_instead_of_accumulating():
    """A backward with ``=`` instead of ``+=`` loses gradient where windows overlap: the check must fail."""

    class OverwriteMutant(sn.layers.MaxPool2D):
        def _backward_numpy(self, dy):
            saved = self._saved()
            dx = np.zeros(saved.input_shape, dtype=dy.dtype)
            KW, (SH, SW) = self.kernel_size[1], self.stride
            for n, c, oh, ow in np.ndindex(dy.shape):
                kh, kw = divmod(int(saved.argmax[n, c, oh, ow]), KW)
                dx[n, c, oh * SH + kh, ow * SW + kw] = dy[n, c, oh, ow]  # the bug: = instead of +=
            return dx

    x = distinct((1, 2, 5, 5))
    x[:, :, 2, 2] = 100.0  # shared by all four windows
    assert check_layer(sn.layers.MaxPool2D(3, 2, dtype=np.float64), x)["x"] < TOLERANCE
    assert check_layer(OverwriteMutant(3, 2, dtype=np.float64), x)["x"] > 1e-2


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("make_input", [distinct, with_ties], ids=["distinct", "ties"])
def test_kernels_match_numpy_exactly(device, dtype, config, make_input):
    x = make_input(config[0])
    dy = np.random.default_rng(2).standard_normal(pool(config).output_shape(x.shape))
    cpu = forward_backward(pool(config, dtype=dtype), x, dy)
    kernels = forward_backward(pool(config, device=device, dtype=dtype), x, dy)
    np.testing.assert_array_equal(kernels.y, cpu.y)
    np.testing.assert_array_equal(kernels.dx, cpu.dx)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("make_input", [distinct, with_ties, np.ones], ids=["distinct", "ties", "constant"])
def test_matches_pytorch(config, make_input):
    torch = pytest.importorskip("torch")
    shape = config[0]
    x = make_input(shape)
    xt = torch.tensor(x, requires_grad=True)
    layer = pool(config, dtype=np.float64)
    yt = layer.torch_equivalent(torch)(xt)  # the layer's own declaration, as the benchmarks use it
    dy = np.random.default_rng(3).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    y, dx, _ = forward_backward(layer, x, dy)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_output_shape_and_repr():
    layer = sn.layers.MaxPool2D(3, 2, padding=1)
    assert layer.output_shape((4, 96, 55, 55)) == (4, 96, 28, 28)
    assert sn.layers.MaxPool2D(3, 2).output_shape((4, 96, 55, 55)) == (4, 96, 27, 27)  # AlexNet pool1
    assert layer.forward(np.zeros((1, 2, 7, 5), np.float32)).shape == layer.output_shape((1, 2, 7, 5))
    assert repr(layer) == "MaxPool2D(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    assert sn.layers.MaxPool2D(2).stride == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 2, "padding": 2}, "padding must be at most half"),
        ({"kernel_size": 0}, "MaxPool2D: kernel_size must be >= 1, got 0"),
        ({"kernel_size": (2, 2, 2)}, "kernel_size must be"),
        ({"kernel_size": 2, "stride": 0}, "stride must be"),
        ({"kernel_size": 2, "impl": "slow"}, "impl must be one of"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sn.layers.MaxPool2D(**kwargs)


def test_inputs_smaller_than_the_window_are_refused():
    layer = sn.layers.MaxPool2D(3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(2, 5, 5\)"):
        layer.forward(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 5\): a 3x3 window does not fit in a 2x5 input.*empty"):
        layer.forward(np.zeros((1, 1, 2, 5), np.float32))


# --- AvgPool2D ---------------------------------------------------------------------------------------------
# (input shape, kernel_size, stride, padding) as pairs
AVG_CONFIGS = [
    ((2, 2, 8, 7), (2, 2), (3, 3), (0, 0)),  # stride > kernel: rows and columns 2 and 5 lie in no window
    ((2, 3, 5, 6), (3, 3), (2, 2), (1, 1)),  # overlapping windows reaching into the padding
    ((1, 2, 6, 5), (2, 3), (2, 1), (1, 0)),  # non-square kernel and stride, odd sizes, batch 1
]
AVG_IDS = ["2x2s3", "3x3s2p1", "2x3s2x1p1x0"]


def avg_pool_definition(x, dy, kernel, stride, padding):
    """y and dL/dx from the definition, apart from the layer: every window's inputs (padding: zeros) by
    loops, and each dy[oh, ow] shared out over its window's inputs."""
    (KH, KW), (SH, SW), (PH, PW) = kernel, stride, padding
    N, C, H, W = x.shape
    tops, lefts = range(-PH, H + PH - KH + 1, SH), range(-PW, W + PW - KW + 1, SW)  # window corners
    y, dx = np.zeros((N, C, len(tops), len(lefts))), np.zeros(x.shape)
    for n, c, (oh, top), (ow, left) in itertools.product(
        range(N), range(C), enumerate(tops), enumerate(lefts)
    ):
        for h, w in itertools.product(range(top, top + KH), range(left, left + KW)):
            if 0 <= h < H and 0 <= w < W:
                y[n, c, oh, ow] += x[n, c, h, w] / (KH * KW)
                dx[n, c, h, w] += dy[n, c, oh, ow] / (KH * KW)
    return y, dx


def avg_pool_reference(layer, x):
    """The forward of the definition below, for the contract."""
    dy = np.zeros(layer.output_shape(x.shape))
    return avg_pool_definition(x, dy, layer.kernel_size, layer.stride, layer.padding)[0]


class TestAvgPool2DContract(LayerContract):
    """Stride > kernel: some inputs are in no window, and their dL/dx must be written as 0."""

    spec = LayerSpec(
        make=functools.partial(AvgPool2D, 2, 3),
        input_shape=(2, 2, 8, 7),
        bad_shapes=((2, 8, 7),),
        reference=avg_pool_reference,
        geometries={
            "3x3s2p1: overlapping windows reaching into the padding": {
                "make": functools.partial(AvgPool2D, 3, 2, 1),
                "input_shape": (2, 3, 5, 6),
            },
            "2x3s2x1p1x0: odd sizes, batch 1": {
                "make": functools.partial(AvgPool2D, (2, 3), (2, 1), (1, 0)),
                "input_shape": (1, 2, 6, 5),
            },
        },
    )


def assert_matches_the_definition(layer, config):
    shape, kernel, stride, padding = config
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(layer.output_shape(shape))
    y, dx, _ = forward_backward(layer, x, dy)
    expected_y, expected_dx = avg_pool_definition(x, dy, kernel, stride, padding)
    np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", AVG_CONFIGS, ids=AVG_IDS)
def test_avg_pool_follows_its_definition(device, config):
    assert_matches_the_definition(AvgPool2D(*config[1:], device=device, dtype=np.float64), config)


class DividesByOneMore(AvgPool2D):
    """Forward and backward agree with each other (the gradient check passes) but divide by KH·KW + 1."""

    def _forward_numpy(self, x, training):
        K = np.prod(self.kernel_size)
        return super()._forward_numpy(x, training) * (K / (K + 1))

    def _backward_numpy(self, dy):
        K = np.prod(self.kernel_size)
        return super()._backward_numpy(dy) * (K / (K + 1))


def test_the_definition_catches_a_divisor_that_the_gradient_check_cannot():
    mutant = DividesByOneMore(2, 3, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 7))
    assert check_layer(mutant, x)["x"] < TOLERANCE  # consistent, so the gradient check is blind to it
    with pytest.raises(AssertionError):
        assert_matches_the_definition(mutant, AVG_CONFIGS[0])


@pytest.mark.parametrize("config", AVG_CONFIGS, ids=AVG_IDS)
def test_avg_pool_matches_pytorch(config):
    torch = pytest.importorskip("torch")
    shape, kernel, stride, padding = config
    layer = AvgPool2D(kernel, stride, padding, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = layer.torch_equivalent(torch)(xt)  # the layer's own declaration, as the benchmarks use it
    dy = np.random.default_rng(6).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    y, dx, _ = forward_backward(layer, x, dy)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_avg_pool_shape_repr_and_arguments():
    layer = AvgPool2D(2, 3)
    assert layer.output_shape((4, 6, 8, 7)) == (4, 6, 3, 2)
    assert repr(layer) == "AvgPool2D(kernel_size=(2, 2), stride=(3, 3), padding=(0, 0))"
    with pytest.raises(ValueError, match="AvgPool2D: padding must be at most half"):
        AvgPool2D(2, padding=2)
    with pytest.raises(ValueError, match=r"AvgPool2D: input \(1, 1, 1, 5\): a 2x2 window does not fit"):
        layer.forward(np.zeros((1, 1, 1, 5), np.float32))
