"""Linear and the GEMM kernels: the layer contract, PyTorch parity, mutants, the GEMM kernels on their own."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import threadpoolctl

import scratchnet as sn
from scratchnet import sim
from scratchnet._cuda.sources import cuda_defines, kernel_source
from scratchnet.benchmarks.torch_twins import twin_forward_backward
from scratchnet.gradcheck import check_layer
from scratchnet.layers import Linear, batch_threads, linear
from scratchnet.layers.linear import gemm, split_k
from scratchnet.testing import (
    DEVICES,
    KERNEL_DEVICES,
    LayerContract,
    LayerSpec,
    device_or_skip,
    forward_backward,
)


class TestLinearContract(LayerContract):
    """Sizes that are not multiples of the GEMM's 16 x 16 tile (the GEMM tests below cover the tiling)."""

    spec = LayerSpec(
        make=functools.partial(Linear, 7, 5, seed=0),
        input_shape=(4, 7),
        bad_shapes=((4, 6), (4, 7, 1)),
        reference=lambda layer, x: np.einsum("nd,dm->nm", x, layer.params["W"]) + layer.params["b"],
        geometries={
            "one feature in, 3 out": {"make": functools.partial(Linear, 1, 3, seed=0), "input_shape": (3, 1)}
        },
    )


@pytest.mark.parametrize("threads", [2, 3])
def test_rows_split_over_threads_give_the_formulas(threads, monkeypatch):
    """With T BLAS threads the five rows run as T parts (2+3 or 1+2+2): y = x W + b, dx = dy Wᵀ and
    dweight = Σ over the parts of xᵀ dy must be the whole batch's, in float64."""
    monkeypatch.setattr(batch_threads, "SPLIT_MIN_MULTIPLY_ADDS", 0)  # split however small
    parts_run = []

    def recording(work, N, workspace=None, split=True):
        parts = batch_threads.over_batch_parts(work, N, workspace, split)
        parts_run.append(len(parts))
        return parts

    monkeypatch.setattr(linear, "over_batch_parts", recording)
    rng = np.random.default_rng(0)
    layer = Linear(4, 3, dtype=np.float64, seed=0)
    layer.params["b"][...] = rng.standard_normal(3)
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    weight, bias = layer.params["W"], layer.params["b"]
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        got = forward_backward(layer, x, dy).arrays()
    expected = {"y": x @ weight + bias, "dx": dy @ weight.T, "dweight": x.T @ dy, "dbias": dy.sum(axis=0)}
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)
    assert parts_run == [threads, threads]  # the forward's and the backward's


def test_only_products_long_enough_split_their_rows():
    """LeNet-5's fc1 at batch 64 (3.1M multiply-adds) runs on one thread, at batch 256 (12.3M) split."""
    layer = Linear(400, 120)
    assert not layer._worth_splitting(np.zeros((64, 400), np.float32))
    assert layer._worth_splitting(np.zeros((256, 400), np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_matches_pytorch(device):
    torch = pytest.importorskip("torch")
    spec = TestLinearContract.spec
    layer, x = spec.layer(device), spec.input()
    dy = spec.output_gradient(layer, x)
    ours = forward_backward(layer, x, dy).arrays()
    theirs = twin_forward_backward(layer, x, dy, torch)  # the layer's own twin, as the benchmarks use it
    # PyTorch stores the weight as (out_features, in_features): ours transposed.
    theirs["dweight"] = theirs["dweight"].T
    for name, value in ours.items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-12, atol=1e-12, err_msg=name)


# --- mutants: a wrong backward must fail the gradient check -----------------------------------------
# A square W, so that a forgotten transpose gives a wrong value of the right shape instead of a crash.
class InputGradientWithoutTranspose(Linear):
    def _backward_numpy(self, dy):
        super()._backward_numpy(dy)
        return dy @ self.params["W"]  # should be dy Wᵀ


class WeightGradientTransposed(Linear):
    def _backward_numpy(self, dy):
        dx = super()._backward_numpy(dy)
        self.grads["W"] = dy.T @ self._saved().x  # (xᵀ dy)ᵀ
        return dx


class BiasGradientAveraged(Linear):
    def _backward_numpy(self, dy):
        dx = super()._backward_numpy(dy)
        self.grads["b"] = dy.mean(axis=0)  # a stray 1/N: the loss already averages over the batch
        return dx


class WeightGradientKernelWrongTranspose(Linear):
    """Kernel path: dW = dyᵀ x through the transpose flags, instead of xᵀ dy."""

    def _backward_kernels(self, dy):
        dx = super()._backward_kernels(dy)
        self.grads["W"] = gemm(self.device, dy, self._saved().x, transpose_a=True)
        return dx


@pytest.mark.parametrize(
    "mutant, device",
    [
        (InputGradientWithoutTranspose, "cpu"),
        (WeightGradientTransposed, "cpu"),
        (BiasGradientAveraged, "cpu"),
        pytest.param(WeightGradientKernelWrongTranspose, "sim", marks=pytest.mark.sim),
        pytest.param(WeightGradientKernelWrongTranspose, "gpu", marks=pytest.mark.gpu),
    ],
)
def test_gradient_check_catches_a_wrong_backward(mutant, device):
    layer = mutant(4, 4, device=device, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((3, 4))
    errors = check_layer(layer, x)
    assert max(errors.values()) > 1e-3, errors


# --- the GEMM kernels on their own ------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["naive", "tiled", "blocked"])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_gemm_matches_numpy(device, impl, transpose_a, transpose_b, dtype, tol):
    dev = sn.get_device(device)
    rng = np.random.default_rng(0)
    M, K, N = 17, 33, 18  # edge tiles in every direction, and K spans three tiles
    A, B = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    A_stored = np.ascontiguousarray(A.T) if transpose_a else A
    B_stored = np.ascontiguousarray(B.T) if transpose_b else B
    C = gemm(dev, dev.array(A_stored), dev.array(B_stored), transpose_a, transpose_b, impl=impl)
    assert C.shape == (M, N) and C.dtype == dtype
    np.testing.assert_allclose(dev.to_host(C), A @ B, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", ["naive", "tiled", "blocked"])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_gemm_multiplies_stacks_pairwise(device, impl):
    dev = sn.get_device(device)
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((3, 5, 20)), rng.standard_normal((3, 20, 2))
    C = gemm(dev, dev.array(A), dev.array(B), impl=impl)
    np.testing.assert_allclose(dev.to_host(C), A @ B, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["tiled", "blocked"])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_gemm_adds_the_bias_in_its_epilogue(device, transpose_b, impl):
    """gemm_bias and gemm_blocked_bias, Linear's case: a stack of 2 matrices 17x18 (edge tiles, K over
    three 16-wide tiles and two 32-wide ones), bias per column."""
    dev = sn.get_device(device)
    rng = np.random.default_rng(1)
    A, B, bias = rng.standard_normal((2, 17, 33)), rng.standard_normal((2, 33, 18)), rng.standard_normal(18)
    B_stored = np.ascontiguousarray(B.transpose(0, 2, 1)) if transpose_b else B
    C = gemm(dev, dev.array(A), dev.array(B_stored), transpose_b=transpose_b, bias=dev.array(bias), impl=impl)
    np.testing.assert_allclose(dev.to_host(C), A @ B + bias, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["tiled", "blocked"])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_gemm_stores_a_convolution_as_nchw(device, impl):
    """gemm_bias and gemm_blocked_bias, the convolution's case: G = 2 groups of Fg = 17 filters over N = 3
    images of P = 6 positions; the epilogue writes y[n, f, p] = (Wm cols)[f, n·P + p] + bias[f]."""
    dev = sn.get_device(device)
    rng = np.random.default_rng(2)
    G, Fg, K, N, P = 2, 17, 33, 3, 6
    weight, cols = rng.standard_normal((G, Fg, K)), rng.standard_normal((G, K, N * P))
    bias = rng.standard_normal(G * Fg)
    y_t = (weight @ cols).reshape(G * Fg, N, P) + bias[:, None, None]  # (F, N, P): the GEMM's layout
    y = gemm(dev, dev.array(weight), dev.array(cols), bias=dev.array(bias), positions=P, impl=impl)
    assert y.shape == (N, G * Fg, P)
    np.testing.assert_allclose(dev.to_host(y), y_t.transpose(1, 0, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transpose_a, transpose_b", [(False, True), (True, False)])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_gemm_splits_a_long_k_and_adds_the_chunks(device, transpose_a, transpose_b, dtype, tol):
    """A weight gradient's shape: C is one tile (5 x 7) and K = 3000, so gemm_blocked cuts K into chunks,
    one block each, and sum_splits adds them; a stack of 2 checks that each matrix gets its own chunks."""
    dev = sn.get_device(device)
    rng = np.random.default_rng(3)
    batch, M, K, N = 2, 5, 3000, 7
    assert split_k(M, N, K, batch) == 3000 // linear.SPLIT_K_MIN_STEPS  # 11 chunks: the last one is short
    A, B = rng.standard_normal((batch, M, K)).astype(dtype), rng.standard_normal((batch, K, N)).astype(dtype)
    A_stored = np.ascontiguousarray(A.transpose(0, 2, 1)) if transpose_a else A
    B_stored = np.ascontiguousarray(B.transpose(0, 2, 1)) if transpose_b else B
    sums = "sum_splits<" + ("double>" if dtype == np.float64 else "float>")
    before = dev.launches[sums]
    C = gemm(dev, dev.array(A_stored), dev.array(B_stored), transpose_a, transpose_b)
    assert dev.launches[sums] == before + 1
    np.testing.assert_allclose(dev.to_host(C), A @ B, rtol=tol, atol=tol * np.sqrt(K))


def test_split_k_only_splits_small_products_over_long_k():
    assert split_k(64, 6400, 150) == 1  # conv2's forward: plenty of tiles
    assert split_k(6, 25, 63) == 1  # short K: nothing to gain
    # conv1's weight gradient: one tile over a long K, into about SPLIT_K_BLOCKS chunks of whole k-tiles
    assert 0.9 * linear.SPLIT_K_BLOCKS < split_k(6, 25, 50176) <= linear.SPLIT_K_BLOCKS
    assert split_k(16, 150, 6400, batch=1) == 25  # conv2's: 3 tiles, chunks of 256 steps
    assert split_k(64, 64, 10**6, batch=200) == 1


# --- gemm_blocked's shared memory: bank conflicts, counted on the simulator's access record -------------
def tile_conflicts(source: str, dtype, transpose_a: bool, transpose_b: bool) -> dict[tuple[str, str], int]:
    """The worst bank-conflict degree of each of gemm_blocked's shared access sites, ``{("tile_a", "store"):
    1, ...}`` (1: conflict-free; see AccessRecord.shared_sites for the counting rule), from one launch of
    ``source``'s gemm_blocked on one 64 x 64 tile of C (every thread busy) over K = 64 (two tiles of K)."""
    name = f"gemm_blocked<{'float' if dtype == np.float32 else 'double'}>"
    module = sim.load_module(source, [name], filename="gemm_blocked.cu", checks="record")
    rng = np.random.default_rng(4)
    M = N = K = 64
    A, B = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    A_stored = np.ascontiguousarray(A.T) if transpose_a else A
    B_stored = np.ascontiguousarray(B.T) if transpose_b else B
    C = np.zeros((M, N), dtype)
    side = cuda_defines("gemm_blocked.cu")["BLOCK_SIDE"]
    sizes = (M, N, K, int(transpose_a), int(transpose_b), 1)
    module.get_function(name)((1, 1, 1), (side, side), (A_stored, B_stored, C, *map(np.int32, sizes)))
    np.testing.assert_allclose(C, A @ B, rtol=1e-4, atol=1e-4)
    degrees: dict[tuple[str, str], int] = {}
    for site in module.last_record.shared_sites(module.build.library):
        key = (site.array.split("'")[1], site.kind)  # "'tile_a' in gemm_blocked<float>" -> "tile_a"
        degrees[key] = max(degrees.get(key, 0), site.conflict_degree)
    return degrees


@pytest.mark.sim
@pytest.mark.parametrize(
    "transpose_a, transpose_b", [(False, False), (False, True), (True, False), (True, True)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_blocked_tiles_have_at_most_2_way_bank_conflicts(dtype, transpose_a, transpose_b):
    degrees = tile_conflicts(kernel_source("gemm_blocked.cu"), dtype, transpose_a, transpose_b)
    assert set(degrees) == {(tile, kind) for tile in ("tile_a", "tile_b") for kind in ("store", "load")}
    assert max(degrees.values()) <= 2, degrees


@pytest.mark.sim
@pytest.mark.parametrize("dtype, degree", [(np.float32, 32), (np.float64, 16)])
def test_the_conflict_count_sees_tiles_without_padding(dtype, degree):
    """Rows of 64 values: a row-major X stores 32 consecutive k down one column, one bank (a double's half
    warp: 16 words in each of two banks). That is tile_a whenever A is not transposed, and tile_b whenever
    B is."""
    padded = kernel_source("gemm_blocked.cu")
    unpadded = padded.replace("#define TILE_STRIDE (BLOCK_TILE + 1)", "#define TILE_STRIDE BLOCK_TILE")
    assert unpadded != padded
    degrees = tile_conflicts(unpadded, dtype, transpose_a=False, transpose_b=True)
    assert degrees["tile_a", "store"] == degrees["tile_b", "store"] == degree
    assert tile_conflicts(unpadded, dtype, transpose_a=True, transpose_b=False)["tile_a", "store"] == 1


def test_split_k_keeps_the_kernels_int_arithmetic_in_range():
    """gemm_blocked's largest int is cdiv(K, splits * TILE_K)'s numerator, K + splits * TILE_K - 1: near
    K = 2^31 split_k takes fewer chunks (100 instead of 128 here), down to one at its MAX_K."""
    tile_k = cuda_defines("gemm_blocked.cu")["TILE_K"]
    assert linear.MAX_K["blocked"] == 2**31 - tile_k
    for K, expected in [(2**31 - 100 * tile_k, 100), (2**31 - 2 * tile_k, 2), (linear.MAX_K["blocked"], 1)]:
        splits = split_k(6, 25, K)
        assert splits == expected and K + splits * tile_k - 1 <= 2**31 - 1


@pytest.mark.parametrize("impl, step", [("blocked", 32), ("tiled", 16)])
def test_gemm_refuses_a_k_its_int_arithmetic_cannot_count(impl, step):
    """The tiled kernels' k0 goes up to K rounded up to a whole tile of `step`, which must fit in an int.
    Checked on the host before anything is allocated or launched: the operands are broadcast views of one
    zero, shaped like 1 x K and K x 1 matrices, with no memory behind them."""
    dev = device_or_skip("sim")
    assert linear.MAX_K[impl] == 2**31 - step
    K = linear.MAX_K[impl] + 1
    A, B = np.broadcast_to(np.float32(0), (1, K)), np.broadcast_to(np.float32(0), (K, 1))
    launches = sum(dev.launches.values())
    message = f"K = {K} is too long for gemm_{impl}, .* {step} at a time: at most K = {2**31 - step};"
    with pytest.raises(ValueError, match=message):
        gemm(dev, A, B, impl=impl)
    with pytest.raises(ValueError, match=message):
        gemm(dev, A, B, bias=dev.array(np.zeros(1, np.float32)), impl=impl)
    with pytest.raises(ValueError, match=message):
        gemm(dev, B, A, transpose_a=True, transpose_b=True, impl=impl)
    assert sum(dev.launches.values()) == launches


def test_gemm_rejects_a_bias_it_cannot_add():
    dev = device_or_skip("sim")
    A, B = dev.array(np.zeros((4, 5))), dev.array(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"bias has shape \(4,\), C \(4, 3\) needs \(3,\)"):
        gemm(dev, A, B, bias=dev.array(np.zeros(4)))
    with pytest.raises(ValueError, match="a bias needs impl='blocked' or 'tiled'"):
        gemm(dev, A, B, impl="naive", bias=dev.array(np.zeros(3)))
    with pytest.raises(ValueError, match="3 columns are not a whole number of images of 2 positions"):
        gemm(dev, A, B, bias=dev.array(np.zeros(4)), positions=2)


def test_gemm_rejects_mismatched_shapes():
    dev = device_or_skip("sim")
    A, B = dev.array(np.zeros((4, 5))), dev.array(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"op\(A\) is 4x5 but op\(B\) is 4x3"):
        gemm(dev, A, B)
    assert gemm(dev, A, B, transpose_a=True).shape == (5, 3)
    with pytest.raises(ValueError, match="same dtype"):
        gemm(dev, A, dev.array(np.zeros((5, 3), np.float32)))
    with pytest.raises(ValueError, match="stacks of different lengths"):
        gemm(dev, dev.array(np.zeros((2, 4, 5))), dev.array(np.zeros((3, 5, 3))))
    with pytest.raises(ValueError, match="impl must be one of"):
        gemm(dev, A, A, transpose_b=True, impl="cublas")


# --- construction and bad input ---------------------------------------------------------------------
def test_parameters_init_seed_and_repr():
    layer = Linear(400, 120, seed=3)
    assert layer.params["W"].shape == layer.grads["W"].shape == (400, 120)
    assert layer.params["b"].shape == (120,) and not layer.params["b"].any()
    assert layer.params["W"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["W"], Linear(400, 120, seed=3).params["W"])
    assert abs(layer.params["W"].std() / np.sqrt(2 / 400) - 1) < 0.02  # He normal, 48,000 samples
    assert repr(layer) == "Linear(400, 120)"
    assert layer.output_shape((8, 400)) == (8, 120)
    assert layer.num_params() == 400 * 120 + 120


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 3), "in_features must be a positive integer, got 0"),
        ((3, 2.5), "out_features must be a positive"),
    ],
)
def test_bad_constructor_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        Linear(*args)
