"""Conv2D: gradient checks, naive vs fast, kernels vs NumPy, PyTorch parity, mutants, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_layer
from scratchnet.layers import Conv2D
from scratchnet.layers.conv import (
    _batch_first,
    _batch_last,
    conv2d_backward_fast,
    conv2d_backward_naive,
    conv2d_forward_fast,
    conv2d_forward_naive,
)
from scratchnet.layers.linear import bias_grad

CPU = "cpu"
SIM = pytest.param("sim", marks=pytest.mark.sim)
GPU = pytest.param("gpu", marks=pytest.mark.gpu)
KERNEL_DEVICES = [SIM, GPU]
DEVICES = [CPU, SIM, GPU]
IMPLS = ["fast", "naive"]

# (N, C, H, W, F, kernel_size, stride, padding, groups): tiny, so that the simulator and the naive loops
# stay quick even under a gradient check (hundreds of forwards).
CONFIGS = {
    "3x3-stride1-pad1": (2, 3, 5, 5, 4, 3, 1, 1, 1),
    "stride2-pad0": (2, 2, 7, 7, 3, 3, 2, 0, 1),
    "pad2-batch1": (1, 2, 5, 6, 2, 3, 1, 2, 1),
    "nonsquare-7x5-kernel3x2": (2, 2, 7, 5, 3, (3, 2), (2, 1), (1, 0), 1),
    "stride3-kernel2": (2, 2, 7, 6, 2, 2, 3, 1, 1),
    "kernel-covers-input": (2, 2, 3, 3, 2, 3, 1, 0, 1),
    "groups2": (2, 4, 5, 5, 4, 3, 1, 1, 2),
    "depthwise": (2, 3, 6, 5, 6, (3, 2), 2, 1, 3),
}


def make_layer(config, device=CPU, impl="fast", dtype=np.float64, seed=0, cls=Conv2D):
    _, C, _, _, F, k, s, p, g = CONFIGS[config]
    return cls(C, F, k, stride=s, padding=p, groups=g, impl=impl, device=device, dtype=dtype, seed=seed)


def make_input(config, dtype=np.float64, seed=1):
    N, C, H, W = CONFIGS[config][:4]
    return np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)


def randomize_bias(layer, seed=2):
    """The layer starts with zero bias; a random one makes the forward comparisons check it too."""
    b = np.random.default_rng(seed).standard_normal(layer.params["b"].shape)
    layer.params["b"][...] = layer.device.array(b, dtype=layer.dtype)


def run(layer, x_host, dy_host):
    """Forward and backward on the layer's device; everything back as NumPy: (y, dx, dW, db)."""
    dev = layer.device
    y = layer.forward(dev.array(x_host, dtype=layer.dtype))
    dx = layer.backward(dev.array(dy_host, dtype=layer.dtype))
    return tuple(dev.to_host(a) for a in (y, dx, layer.grads["W"], layer.grads["b"]))


def output_gradient(layer, x_host, seed=3):
    shape = layer.output_shape(x_host.shape)
    return np.random.default_rng(seed).standard_normal(shape)


# --- gradients --------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_finite_differences(device, impl, config):
    layer = make_layer(config, device, impl)
    randomize_bias(layer)
    errors = check_layer(layer, make_input(config))
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < TOLERANCE, errors


# --- the implementations agree ----------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_naive_and_fast_numpy_agree(config, dtype, tol):
    layer = make_layer(config, dtype=dtype)
    conv = {"stride": layer.stride, "padding": layer.padding, "groups": layer.groups}
    x = make_input(config, dtype)
    w, b = layer.params["W"], np.random.default_rng(2).standard_normal(layer.params["b"].shape).astype(dtype)
    y_naive = conv2d_forward_naive(x, w, b, **conv)
    y_fast, cache = conv2d_forward_fast(x, w, b, **conv)
    dy = output_gradient(layer, x).astype(dtype)
    naive, fast = conv2d_backward_naive(dy, x, w, **conv), conv2d_backward_fast(dy, cache, w, **conv)
    for name, a, c in zip(("y", "dx", "dW", "db"), (y_naive, *naive), (y_fast, *fast), strict=True):
        assert a.dtype == c.dtype == dtype, name
        np.testing.assert_allclose(c, a, rtol=tol, atol=tol, err_msg=name)


def test_naive_and_fast_agree_on_a_lenet_sized_batch():
    """Larger than the gradient-check inputs: many overlapping windows, so col2im's sums are exercised."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 14, 14))
    fast = Conv2D(6, 16, 5, padding=2, dtype=np.float64, seed=0)
    naive = Conv2D(6, 16, 5, padding=2, impl="naive", dtype=np.float64, seed=0)
    dy = rng.standard_normal((3, 16, 14, 14))
    for a, c in zip(run(naive, x, dy), run(fast, x, dy), strict=True):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 5, 7), (130, 1, 8, 8), (2, 3, 10, 10)])
def test_batch_last_round_trip(shape):
    """The fast path's blocked transposes, with sizes that are not multiples of the block."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    last = _batch_last(x)
    assert last.flags.c_contiguous
    np.testing.assert_array_equal(last, np.moveaxis(x, 0, -1))
    first = _batch_first(last)
    assert first.flags.c_contiguous
    np.testing.assert_array_equal(first, x)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernels_agree_with_numpy(device, impl, config, dtype, tol):
    reference, layer = make_layer(config, CPU, "fast", dtype), make_layer(config, device, impl, dtype)
    randomize_bias(reference)
    randomize_bias(layer)
    x = make_input(config, dtype)
    dy = output_gradient(layer, x)
    for name, a, c in zip(("y", "dx", "dW", "db"), run(reference, x, dy), run(layer, x, dy), strict=True):
        assert c.dtype == dtype, name
        np.testing.assert_allclose(c, a, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernel_path_copies_nothing_between_host_and_device(device, impl):
    layer = make_layer("groups2", device, impl)
    dev = layer.device
    x, dy = dev.array(make_input("groups2")), dev.array(output_gradient(layer, make_input("groups2")))
    before = dict(dev.transfers)
    layer.forward(x)
    layer.backward(dy)
    assert dict(dev.transfers) == before


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_first_layer_can_skip_the_input_gradient(device, impl):
    full, first = make_layer("stride2-pad0", device, impl), make_layer("stride2-pad0", device, impl)
    first.needs_input_grad = False
    x = make_input("stride2-pad0")
    dy = output_gradient(full, x)
    run(full, x, dy)
    dev = first.device
    first.forward(dev.array(x))
    assert first.backward(dev.array(dy)) is None
    for name in ("W", "b"):
        np.testing.assert_array_equal(
            dev.to_host(first.grads[name]), dev.to_host(full.grads[name]), err_msg=name
        )


# --- PyTorch as an independent reference ------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_matches_pytorch(device, impl, config):
    torch = pytest.importorskip("torch")
    layer = make_layer(config, device, impl)
    randomize_bias(layer)
    x = make_input(config)
    dy = output_gradient(layer, x)
    y, dx, dW, db = run(layer, x, dy)

    dev = layer.device
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(dev.to_host(layer.params["W"]), requires_grad=True)
    bt = torch.tensor(dev.to_host(layer.params["b"]), requires_grad=True)
    yt = torch.nn.functional.conv2d(
        xt, wt, bt, stride=layer.stride, padding=layer.padding, groups=layer.groups
    )
    yt.backward(torch.tensor(dy))
    for name, ours, theirs in (("y", y, yt), ("dx", dx, xt.grad), ("dW", dW, wt.grad), ("db", db, bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_matches_pytorch_in_float32_on_lenet_shapes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = Conv2D(1, 6, 5, padding=2, seed=0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    dy = rng.standard_normal((4, 6, 28, 28)).astype(np.float32)
    y, dx, dW, db = run(layer, x, dy)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(layer.params["W"], requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, padding=2)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dW, wt.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3), dtype=np.float64), rtol=1e-4)


# --- mutants: a wrong backward must fail the gradient check -----------------------------------------
class KernelNotFlipped(Conv2D):
    """dW computed for the flipped kernel (convolution instead of cross-correlation)."""

    def _backward_numpy(self, dy):
        dx = super()._backward_numpy(dy)
        self.grads["W"] = self.grads["W"][:, :, ::-1, ::-1].copy()
        return dx


class BiasGradientNotSummedOverPositions(Conv2D):
    """db from the first output position only, not summed over Ho x Wo."""

    def _backward_numpy(self, dy):
        dx = super()._backward_numpy(dy)
        self.grads["b"] = dy[:, :, 0, 0].sum(axis=0)
        return dx


class InputGradientWithoutOverlaps(Conv2D):
    """col2im that assigns instead of adding: a pixel gets gradient from only one of its windows."""

    def _backward_numpy(self, dy):
        super()._backward_numpy(dy)
        x, w = self._input_x, self.params["W"]
        (sh, sw), (ph, pw), (kh, kw) = self.stride, self.padding, self.kernel_size
        dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw))
        for ho in range(dy.shape[2]):
            for wo in range(dy.shape[3]):
                dxp[:, :, ho * sh : ho * sh + kh, wo * sw : wo * sw + kw] = np.einsum(
                    "nf,fcij->ncij", dy[:, :, ho, wo], w
                )
        return dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]

    def _forward_numpy(self, x, training):
        self._input_x = x  # the fast path keeps only its im2col columns; this mutant needs x itself
        return super()._forward_numpy(x, training)


class BiasGradientKernelForgetsPositions(Conv2D):
    """Kernel path: bias_grad launched as if dy had one position per channel (P = 1)."""

    def _backward_kernels(self, dy):
        dx = super()._backward_kernels(dy)
        self.grads["b"] = bias_grad(self.device, dy, positions=1)
        return dx


@pytest.mark.parametrize(
    "mutant, device",
    [
        (KernelNotFlipped, CPU),
        (BiasGradientNotSummedOverPositions, CPU),
        (InputGradientWithoutOverlaps, CPU),
        pytest.param(BiasGradientKernelForgetsPositions, "sim", marks=pytest.mark.sim),
        pytest.param(BiasGradientKernelForgetsPositions, "gpu", marks=pytest.mark.gpu),
    ],
)
def test_gradient_check_catches_a_wrong_backward(mutant, device):
    layer = make_layer("3x3-stride1-pad1", device, cls=mutant)
    errors = check_layer(layer, make_input("3x3-stride1-pad1"))
    assert max(errors.values()) > 1e-3, errors


# --- construction, shapes, repr -----------------------------------------------------------------------
def test_parameters_shapes_init_and_seed():
    layer = Conv2D(6, 16, (5, 3), groups=2, seed=7)
    assert layer.params["W"].shape == layer.grads["W"].shape == (16, 3, 5, 3)
    assert layer.params["b"].shape == (16,) and not layer.params["b"].any()
    assert layer.params["W"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["W"], Conv2D(6, 16, (5, 3), groups=2, seed=7).params["W"])
    assert not np.array_equal(layer.params["W"], Conv2D(6, 16, (5, 3), groups=2, seed=8).params["W"])
    big = Conv2D(64, 64, 3, seed=0)  # 36,864 weights: the sample std is within 2% of He's sqrt(2 / fan_in)
    assert abs(big.params["W"].std() / np.sqrt(2 / (64 * 9)) - 1) < 0.02


@pytest.mark.parametrize(
    "kwargs, shape, expected",
    [
        ({"kernel_size": 5, "padding": 2}, (8, 1, 28, 28), (8, 6, 28, 28)),
        ({"kernel_size": 5}, (8, 1, 14, 14), (8, 6, 10, 10)),
        ({"kernel_size": 11, "stride": 4, "padding": 2}, (2, 1, 224, 224), (2, 6, 55, 55)),
        ({"kernel_size": (3, 2), "stride": (2, 1)}, (1, 1, 7, 5), (1, 6, 3, 4)),
    ],
)
def test_output_shape(kwargs, shape, expected):
    layer = Conv2D(1, 6, **kwargs)
    assert layer.output_shape(shape) == expected
    assert layer.forward(np.zeros(shape, np.float32)).shape == expected


def test_extra_repr():
    assert (
        repr(Conv2D(3, 8, 3, padding=1)) == "Conv2D(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    )
    assert repr(Conv2D(4, 8, (3, 1), stride=2, groups=2, impl="naive")) == (
        "Conv2D(4, 8, kernel_size=(3, 1), stride=(2, 2), padding=(0, 0), groups=2, impl='naive')"
    )


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((0, 6, 3), {}, "in_channels must be a positive integer, got 0"),
        ((3, 6.0, 3), {}, "out_channels must be a positive integer, got 6.0"),
        ((3, 6, 0), {}, "kernel_size must be >= 1, got 0"),
        ((3, 6, (3, 3, 3)), {}, r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\)"),
        ((3, 6, 3), {"stride": 0}, "stride must be >= 1"),
        ((3, 6, 3), {"padding": -1}, "padding must be >= 0"),
        (
            (3, 6, 3),
            {"groups": 2},
            r"in_channels \(3\) and out_channels \(6\) must both be divisible by groups \(2\)",
        ),
        ((4, 6, 3), {"groups": 4}, r"divisible by groups \(4\)"),
        ((3, 6, 3), {"impl": "im2col"}, "impl must be one of"),
        ((3, 6, 3), {"dtype": np.int32}, "float32 or float64, not int32"),
    ],
)
def test_bad_constructor_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv2D(*args, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs_name_expected_and_actual(device):
    layer = Conv2D(3, 4, 5, device=device)
    dev = layer.device
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(8, 1, 28, 28\)"):
        layer.forward(dev.array(np.zeros((8, 1, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(3, 28, 28\)"):
        layer.forward(dev.array(np.zeros((3, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"must have dtype float32, got float64"):
        layer.forward(dev.array(np.zeros((1, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"must be an array on device .*got list"):
        layer.forward(np.zeros((1, 3, 8, 8), np.float32).tolist())
    with pytest.raises(ValueError, match=r"smaller than the 5x5 kernel .*at least 5 and 5"):
        layer.forward(dev.array(np.zeros((1, 3, 4, 8), np.float32)))
    padded = Conv2D(3, 4, 5, padding=1, device=device)
    assert padded.forward(dev.array(np.zeros((1, 3, 3, 3), np.float32))).shape == (1, 4, 1, 1)


def test_sim_layer_takes_numpy_arrays():
    """On sim, device arrays are NumPy arrays: a plain ndarray is a valid input (a list is not, above)."""
    try:
        layer = Conv2D(2, 2, 3, device="sim")
    except sn.DeviceError as e:
        pytest.skip(f"no sim device: {e}")
    assert layer.forward(np.ones((1, 2, 3, 3), np.float32)).shape == (1, 2, 1, 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_needs_a_training_forward(impl):
    layer = Conv2D(1, 2, 3, impl=impl)
    with pytest.raises(RuntimeError, match="Conv2D.backward needs a forward with training=True"):
        layer.backward(np.zeros((1, 2, 3, 3), np.float32))
    layer.forward(np.zeros((1, 1, 5, 5), np.float32), training=False)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.zeros((1, 2, 3, 3), np.float32))
    layer.forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(
        ValueError, match=r"dy must have the output's shape \(1, 2, 3, 3\), got \(1, 2, 3, 4\)"
    ):
        layer.backward(np.zeros((1, 2, 3, 4), np.float32))
