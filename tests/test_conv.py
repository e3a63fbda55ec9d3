"""Conv2D: the layer contract, a sweep of geometries, naive vs fast, PyTorch parity, mutants, bad input."""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import threading

import numpy as np
import pytest
import threadpoolctl

from scratchnet.benchmarks.torch_twins import twin_forward_backward
from scratchnet.gradcheck import TOLERANCE, check_layer
from scratchnet.layers import Conv2D
from scratchnet.layers import conv as conv_module
from scratchnet.layers.base import window_output_hw
from scratchnet.layers.batch_threads import over_batch_parts
from scratchnet.layers.conv import (
    conv2d_backward_fast,
    conv2d_backward_input_flipped,
    conv2d_backward_naive,
    conv2d_forward_fast,
    conv2d_forward_naive,
    dx_by_flipped_kernel,
)
from scratchnet.layers.linear import bias_grad
from scratchnet.testing import DEVICES, KERNEL_DEVICES, LayerContract, LayerSpec, forward_backward

IMPLS = ["fast", "naive"]
FLOAT32_ERROR = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}  # sums of many float32 products

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


# The fast backward's two routes to dx (col2im, or the flipped kernel on wide columns), each forced on every
# geometry it serves: the default choice would leave most of these small inputs on one of them.
DX_ROUTES = {"col2im": 0.0, "flipped": float("inf")}  # DX_WIDE_MAX_EXTRA and DX_MAX_FILTERS_PER_CHANNEL


def force_dx_route(monkeypatch, route: str) -> None:
    for limit in ("DX_WIDE_MAX_EXTRA", "DX_MAX_FILTERS_PER_CHANNEL"):
        monkeypatch.setattr(conv_module, limit, DX_ROUTES[route])


@pytest.fixture(params=DX_ROUTES)
def dx_route(request, monkeypatch):
    force_dx_route(monkeypatch, request.param)
    return request.param


def conv_by_definition(layer, x):
    """y[n, f, oh, ow] = b[f] + Σ over the window of f's group of x (zero-padded) · W[f], output by output."""
    weight = layer.params["W"]  # (F, C / G, KH, KW)
    (KH, KW), (SH, SW), (PH, PW) = layer.kernel_size, layer.stride, layer.padding
    padded = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    N, (F, Cg) = len(x), weight.shape[:2]
    OH, OW = (padded.shape[2] - KH) // SH + 1, (padded.shape[3] - KW) // SW + 1
    y = np.empty((N, F, OH, OW))
    for n, f, oh, ow in np.ndindex(y.shape):
        c = f // (F // layer.groups) * Cg  # the first input channel of f's group
        window = padded[n, c : c + Cg, oh * SH : oh * SH + KH, ow * SW : ow * SW + KW]
        y[n, f, oh, ow] = (window * weight[f]).sum() + (layer.params["b"][f] if layer.bias else 0.0)
    return y


def config_spec(config: str, impl: str = "fast", cls=Conv2D) -> LayerSpec:
    """The spec of one geometry: a seeded layer (random bias too) and a Gaussian input."""
    N, C, H, W, F, kernel, stride, padding, groups = CONFIGS[config]
    make = functools.partial(cls, C, F, kernel, stride, padding, groups, impl, seed=0)
    return LayerSpec(
        make=make, input_shape=(N, C, H, W), tolerance=FLOAT32_ERROR, reference=conv_by_definition
    )


def geometries(impl: str) -> dict:
    """Stride 3 > kernel 2 (inputs no window covers), C != F with padding 2, the kernel covering the input."""
    return {
        config: {"make": config_spec(config, impl).make, "input_shape": config_spec(config).input_shape}
        for config in ("stride3-kernel2", "pad2-batch1", "kernel-covers-input")
    }


class TestConv2DContract(LayerContract):
    """Groups, a non-square kernel, stride 2 and padding at once (the geometry sweep is below)."""

    spec = dataclasses.replace(
        config_spec("depthwise"), bad_shapes=((2, 4, 6, 5), (2, 3, 6)), geometries=geometries("fast")
    )


class TestConv2DNaiveContract(LayerContract):
    spec = dataclasses.replace(
        TestConv2DContract.spec, make=config_spec("depthwise", "naive").make, geometries=geometries("naive")
    )


# --- gradients --------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_finite_differences(device, impl, config):
    spec = config_spec(config, impl)
    errors = check_layer(spec.layer(device), spec.input())
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < TOLERANCE, errors


# --- the implementations agree ----------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_naive_and_fast_numpy_agree(config, dtype, tol, dx_route):
    spec = config_spec(config)
    layer = spec.layer("cpu", dtype)
    conv = {"stride": layer.stride, "padding": layer.padding, "groups": layer.groups}
    x = spec.input().astype(dtype)
    weight, bias = layer.params["W"], layer.params["b"]
    y_naive = conv2d_forward_naive(x, weight, bias, **conv)
    y_fast, cache = conv2d_forward_fast(x, weight, bias, **conv)
    dy = spec.output_gradient(layer, x).astype(dtype)
    naive = conv2d_backward_naive(dy, x, weight, **conv)
    fast = conv2d_backward_fast(dy, cache, weight, **conv)
    for name, a, c in zip(("y", "dx", "dweight", "dbias"), (y_naive, *naive), (y_fast, *fast), strict=True):
        assert a.dtype == c.dtype == dtype, name
        np.testing.assert_allclose(c, a, rtol=tol, atol=tol, err_msg=name)


def test_naive_and_fast_agree_on_a_lenet_sized_batch():
    """Larger than the gradient-check inputs: many overlapping windows, so col2im's sums are exercised."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 14, 14))
    fast = Conv2D(6, 16, 5, padding=2, dtype=np.float64, seed=0)
    naive = Conv2D(6, 16, 5, padding=2, impl="naive", dtype=np.float64, seed=0)
    dy = rng.standard_normal((3, 16, 14, 14))
    expected, got = forward_backward(naive, x, dy).arrays(), forward_backward(fast, x, dy).arrays()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("padding", [1, 0])
def test_fast_path_in_chunks_with_its_workspace_reused_across_shapes(monkeypatch, padding, dx_route):
    """Chunks of two images (the last one shorter) and one layer's workspace reused for inputs of two sizes:
    a buffer whose old contents leaked into the new shape (the zero border of the padded image, the zero
    parts of col2im's shifted images) would change the sums; the 1×1 layer checks the no-copy path."""
    rng = np.random.default_rng(0)
    for kernel, stride in ((3, 1), (3, 2), (1, 1)):
        fast = Conv2D(3, 4, kernel, stride, padding, dtype=np.float64, seed=0)
        naive = Conv2D(3, 4, kernel, stride, padding, impl="naive", dtype=np.float64, seed=0)
        for shape in ((5, 3, 9, 8), (3, 3, 6, 6)):
            column_bytes = 3 * kernel * kernel * np.prod(fast.output_shape(shape)[2:]) * 8  # one image's
            monkeypatch.setattr(conv_module, "CHUNK_BYTES", 2 * column_bytes)
            x = rng.standard_normal(shape)
            dy = rng.standard_normal(fast.output_shape(shape))
            expected, got = forward_backward(naive, x, dy).arrays(), forward_backward(fast, x, dy).arrays()
            for name, value in expected.items():
                np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=(kernel, name))


def test_layers_of_one_geometry_share_a_workspace_and_interleave_correctly():
    """Two layers of one geometry share their buffers (another geometry gets its own); one's forward and
    backward around the other's, on inputs of another size, must still give the naive loops' numbers."""
    rng = np.random.default_rng(0)
    first, second = (Conv2D(3, 4, 3, 1, 1, dtype=np.float64, seed=seed) for seed in (0, 1))
    assert first._workspace() is second._workspace()
    assert Conv2D(3, 4, 3, 2, 1, dtype=np.float64)._workspace() is not first._workspace()
    assert Conv2D(3, 4, 3, 1, 1)._workspace() is not first._workspace()  # float32
    shapes = {"first": (5, 3, 9, 8), "second": (3, 3, 6, 7)}
    x = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    dy = {name: rng.standard_normal(first.output_shape(shape)) for name, shape in shapes.items()}
    got = {"first": {"y": first.forward(x["first"])}}
    got["second"] = forward_backward(second, x["second"], dy["second"]).arrays()
    got["first"].update(dx=first.backward(dy["first"]), dweight=first.grads["W"], dbias=first.grads["b"])
    for name, layer in (("first", first), ("second", second)):
        naive = Conv2D(3, 4, 3, 1, 1, impl="naive", dtype=np.float64)
        naive.params.update(layer.params)
        expected = forward_backward(naive, x[name], dy[name]).arrays()
        for key, value in got[name].items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-12, atol=1e-12, err_msg=(name, key))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("config", ["stride2-pad0", "nonsquare-7x5-kernel3x2", "depthwise", "groups2"])
def test_fast_path_split_over_threads_agrees_with_naive(monkeypatch, threads, config, dx_route):
    """With T BLAS threads the batch runs as T parts on T threads: five images as parts of 2+3 or 1+2+2
    images, each in chunks of two (the last one shorter), must give the naive loops' y, dx, dweight, dbias."""
    N, C, H, W, F, kernel, stride, padding, groups = CONFIGS[config]
    fast = Conv2D(C, F, kernel, stride, padding, groups, dtype=np.float64, seed=0)
    naive = Conv2D(C, F, kernel, stride, padding, groups, impl="naive", dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, C, H, W))
    dy = rng.standard_normal(fast.output_shape(x.shape))
    column_bytes = C * np.prod(fast.kernel_size) * np.prod(dy.shape[2:]) * 8  # one image's
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 2 * column_bytes)
    expected = forward_backward(naive, x, dy).arrays()
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        got = forward_backward(fast, x, dy).arrays()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


def _conv_on_two_threads(x, queue):
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        queue.put(Conv2D(3, 4, 3, padding=1, seed=0).forward(x))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_forked_child_runs_the_split_fast_path_on_threads_of_its_own():
    """A child forked after the parent used its threads (which the child does not have) finishes its
    forward, equal to the parent's, instead of waiting for them."""
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32)
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    _conv_on_two_threads(x, queue)
    expected = queue.get(timeout=10)
    child = fork.Process(target=_conv_on_two_threads, args=(x, queue))
    child.start()
    try:
        got = queue.get(timeout=30)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)


def test_batch_parts_cover_the_batch_on_separate_threads_with_one_blas_thread_each():
    """over_batch_parts: contiguous parts that cover 0..N-1, one per BLAS thread, all running at the same
    time (each waits at a barrier for the others) with BLAS limited to one thread, the setting restored
    afterwards; a part's error reaches the caller. ``split=False``: one part on the calling thread, BLAS
    limited to one thread all the same."""

    def blas_threads():  # NumPy's BLAS, whichever other thread pools (PyTorch's OpenMP) are loaded first
        (blas,) = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
        return blas["num_threads"]

    def work(images, workspace):
        return images, threading.get_ident(), blas_threads(), workspace

    all_parts_running = threading.Barrier(3, timeout=10)

    def work_together(images, workspace):
        all_parts_running.wait()
        return work(images, workspace)

    workspace = conv_module.Workspace()
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        parts = over_batch_parts(work_together, 7, workspace)
        assert blas_threads() == 3
    assert [images for images, *_ in parts] == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert len({thread for _, thread, _, _ in parts}) == 3
    assert [threads for _, _, threads, _ in parts] == [1, 1, 1]
    assert [part for *_, part in parts] == [workspace.part(i) for i in range(3)]
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert over_batch_parts(work, 7, workspace)[0][::3] == (slice(0, 7), workspace)
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):  # too little work to split
        (part,) = over_batch_parts(work, 7, workspace, split=False)
        assert part == (slice(0, 7), threading.get_ident(), 1, workspace)
        assert blas_threads() == 3

    def fail(images, workspace):
        if images.start > 0:
            raise ValueError(f"part {images} failed")

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(ValueError, match="part slice"):
            over_batch_parts(fail, 4, workspace)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernels_agree_with_numpy_on_every_geometry(device, impl, config, dtype):
    spec = config_spec(config, impl)
    x = spec.input().astype(dtype)
    reference, layer = config_spec(config).layer("cpu", dtype), spec.layer(device, dtype)
    dy = spec.output_gradient(layer, x)
    expected, got = forward_backward(reference, x, dy).arrays(), forward_backward(layer, x, dy).arrays()
    tol = FLOAT32_ERROR[np.dtype(dtype)]
    for name, value in expected.items():
        assert got[name].dtype == dtype, name
        np.testing.assert_allclose(got[name], value, rtol=tol, atol=tol, err_msg=name)


def test_fast_numpy_without_a_bias_agrees_with_the_loops():
    """bias=False: the fast path adds nothing and sums no dbias; y, dx and dweight as the loops give them."""
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((3, 4, 5, 5)), rng.standard_normal((3, 6, 3, 3))
    kwargs = dict(stride=2, padding=1, groups=2, bias=False, dtype=np.float64, seed=5)
    naive, fast = Conv2D(4, 6, 3, impl="naive", **kwargs), Conv2D(4, 6, 3, **kwargs)
    expected, got = forward_backward(naive, x, dy).arrays(), forward_backward(fast, x, dy).arrays()
    assert set(got) == set(expected) == {"y", "dx", "dweight"}
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("config", [c for c in CONFIGS if CONFIGS[c][6] == 1])
def test_gradients_through_the_flipped_kernel_route(config, monkeypatch):
    """The finite differences of every stride-1 geometry, dx by the flipped kernel on wide columns."""
    force_dx_route(monkeypatch, "flipped")
    spec = config_spec(config)
    errors = check_layer(spec.layer("cpu"), spec.input())
    assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize(
    "x_shape, weight_shape, stride, padding, expected",
    [
        ((8, 16, 32, 32), (16, 16, 3, 3), (1, 1), (1, 1), True),  # ResNet-20's first stage: Wq / W = 34 / 32
        ((8, 64, 8, 8), (64, 64, 3, 3), (1, 1), (1, 1), True),  # its last: 10 / 8, the limit
        ((8, 96, 8, 8), (64, 96, 3, 3), (1, 1), (1, 1), True),  # fewer filters than channels
        ((8, 32, 16, 16), (64, 32, 3, 3), (1, 1), (1, 1), False),  # more filters than channels
        ((8, 6, 14, 14), (16, 6, 5, 5), (1, 1), (0, 0), False),  # LeNet-5's conv2: 18 / 14
        ((8, 16, 32, 32), (16, 16, 3, 3), (2, 2), (1, 1), False),  # stride 2: dx is no stride-1 convolution
        ((8, 16, 32, 32), (16, 16, 1, 1), (1, 1), (1, 1), False),  # padding ≥ kernel: a negative border
        ((8, 16, 32, 32), (16, 16, 1, 1), (1, 1), (0, 0), True),
    ],
)
def test_which_convolutions_take_the_flipped_kernel_route(x_shape, weight_shape, stride, padding, expected):
    assert dx_by_flipped_kernel(x_shape, weight_shape, stride, padding) is expected


@pytest.mark.parametrize("flipped", [True, False])
def test_the_fast_backward_takes_the_route_the_rule_names(monkeypatch, flipped):
    """A spy on the flipped-kernel dx: called for a 32×32 3×3 convolution with padding 1, not for 14×14 5×5
    without padding (nor for a first layer, which needs no dx); dx equal to the loops' either way."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[2])  # input_hw
        return conv2d_backward_input_flipped(*args, **kwargs)

    monkeypatch.setattr(conv_module, "conv2d_backward_input_flipped", spy)
    rng = np.random.default_rng(2)
    C, H, K, P = (3, 32, 3, 1) if flipped else (3, 14, 5, 0)
    fast = Conv2D(C, 3, K, padding=P, dtype=np.float64, seed=0)
    naive = Conv2D(C, 3, K, padding=P, impl="naive", dtype=np.float64, seed=0)
    x = rng.standard_normal((2, C, H, H))
    dy = rng.standard_normal(fast.output_shape(x.shape))
    expected, got = forward_backward(naive, x, dy).arrays(), forward_backward(fast, x, dy).arrays()
    assert calls == ([(H, H)] if flipped else [])
    np.testing.assert_allclose(got["dx"], expected["dx"], rtol=1e-12, atol=1e-12)
    fast.needs_input_grad = False
    fast.forward(x)
    assert fast.backward(dy) is None and len(calls) == int(flipped)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernels_without_a_bias_agree_with_numpy(device, impl):
    """bias=False (ResNet): the fast forward's GEMM epilogue then adds zeros; no "b" anywhere."""
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((2, 6, 3, 3))
    kwargs = dict(stride=2, padding=1, groups=2, bias=False, dtype=np.float64, seed=5)
    reference, layer = Conv2D(4, 6, 3, **kwargs), Conv2D(4, 6, 3, impl=impl, device=device, **kwargs)
    expected, got = forward_backward(reference, x, dy).arrays(), forward_backward(layer, x, dy).arrays()
    assert set(got) == set(expected) == {"y", "dx", "dweight"}
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_first_layer_can_skip_the_input_gradient(device, impl):
    spec = config_spec("stride2-pad0", impl)
    full, first = spec.layer(device), spec.layer(device)
    first.needs_input_grad = False
    x = spec.input()
    dy = spec.output_gradient(full, x)
    expected, got = forward_backward(full, x, dy), forward_backward(first, x, dy)
    assert got.dx is None
    for name in ("W", "b"):
        np.testing.assert_array_equal(got.grads[name], expected.grads[name], err_msg=name)


# --- PyTorch as an independent reference ------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", DEVICES)
def test_matches_pytorch(device, impl, config):
    torch = pytest.importorskip("torch")
    spec = config_spec(config, impl)
    layer, x = spec.layer(device), spec.input()
    dy = spec.output_gradient(layer, x)
    ours = forward_backward(layer, x, dy).arrays()

    theirs = twin_forward_backward(layer, x, dy, torch)  # the layer's own twin, as the benchmarks use it
    for name, value in ours.items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_matches_pytorch_in_float32_on_lenet_shapes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = Conv2D(1, 6, 5, padding=2, seed=0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    dy = rng.standard_normal((4, 6, 28, 28)).astype(np.float32)
    y, dx, grads = forward_backward(layer, x, dy)
    dW, db = grads["W"], grads["b"]
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
        x, weight = self._input_x, self.params["W"]
        N, C, H, W = x.shape
        (SH, SW), (PH, PW), (KH, KW) = self.stride, self.padding, self.kernel_size
        dxp = np.zeros((N, C, H + 2 * PH, W + 2 * PW))
        for oh in range(dy.shape[2]):
            for ow in range(dy.shape[3]):
                dxp[:, :, oh * SH : oh * SH + KH, ow * SW : ow * SW + KW] = np.einsum(
                    "nf,fcij->ncij", dy[:, :, oh, ow], weight
                )
        return dxp[:, :, PH : PH + H, PW : PW + W]

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
        (KernelNotFlipped, "cpu"),
        (BiasGradientNotSummedOverPositions, "cpu"),
        (InputGradientWithoutOverlaps, "cpu"),
        pytest.param(BiasGradientKernelForgetsPositions, "sim", marks=pytest.mark.sim),
        pytest.param(BiasGradientKernelForgetsPositions, "gpu", marks=pytest.mark.gpu),
    ],
)
def test_gradient_check_catches_a_wrong_backward(mutant, device):
    spec = config_spec("3x3-stride1-pad1", cls=mutant)
    errors = check_layer(spec.layer(device), spec.input())
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
def test_inputs_smaller_than_the_kernel_are_refused(device):
    layer = Conv2D(3, 4, 5, device=device)
    dev = layer.device
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(8, 1, 28, 28\)"):
        layer.forward(dev.array(np.zeros((8, 1, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 8\): a 5x5 window does not fit .*at least 5 and 5"):
        layer.forward(dev.array(np.zeros((1, 3, 4, 8), np.float32)))
    padded = Conv2D(3, 4, 5, padding=1, device=device)
    assert padded.forward(dev.array(np.zeros((1, 3, 3, 3), np.float32))).shape == (1, 4, 1, 1)


def test_one_output_size_for_every_window():
    """window_output_hw, which convolutions, pools, the figures and the checkers all use: worked examples of
    (H + 2P - K) // S + 1, and an empty output refused with the sizes that would make one."""
    assert window_output_hw((28, 28), 5) == (24, 24)  # LeNet-5's conv1
    assert window_output_hw((7, 7), 3, 2, 1) == (4, 4)
    assert window_output_hw((32, 30), (5, 3), (2, 1), (0, 1)) == (14, 30)
    assert window_output_hw((5, 5), 2, 3) == (2, 2)  # stride > kernel: windows on rows 0-1 and 3-4
    with pytest.raises(ValueError, match=r"^Conv2D: a 3x3 window does not fit in a 2x5 .*least 3 and 3"):
        window_output_hw((2, 5), 3, who="Conv2D")
    assert window_output_hw((1, 5), 3, padding=1) == (1, 5)  # padding makes it fit


def test_the_route_timing_tool_times_both_routes_and_names_the_rule(monkeypatch, capsys):
    """tools/conv_routes.py on two small geometries: a row per geometry in each table, the rule's route
    named, and the module's setting restored afterwards."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "tools" / "conv_routes.py"
    spec = importlib.util.spec_from_file_location("conv_routes", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    small = {"same 3x3": (2, 4, 8, 3, 3, 1), "valid 5x5": (2, 3, 9, 2, 5, 0)}
    monkeypatch.setattr(tool, "GEOMETRIES", small)
    monkeypatch.setattr(sys, "argv", ["conv_routes.py", "--rounds", "1", "--threads", "1"])
    tool.main()
    lines = capsys.readouterr().out.splitlines()
    routes = {line[:22].strip(): line.split()[-1] for line in lines if line.endswith(("flipped", "col2im"))}
    assert routes == {"same 3x3": "flipped", "valid 5x5": "col2im"}, lines
    assert sum(line.startswith(tuple(small)) for line in lines) == 4, lines
    assert (conv_module.DX_WIDE_MAX_EXTRA, conv_module.DX_MAX_FILTERS_PER_CHANNEL) == tool.DEFAULT_LIMITS
