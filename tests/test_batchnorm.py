"""BatchNorm1D and BatchNorm2D: gradient checks in training, a mutant, PyTorch parity (training, evaluation,
running statistics), the kernels against NumPy at any block size, buffers, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_layer
from scratchnet.layers import batchnorm
from scratchnet.testing import (
    DEVICES,
    KERNEL_DEVICES,
    LayerContract,
    LayerSpec,
    device_or_skip,
    forward_backward,
    split_batches,
)

SHAPES = {"BatchNorm2D": (4, 3, 3, 2), "BatchNorm1D": (6, 5)}


class BatchNormContract(LayerContract):
    """The layer contract for layers that hold a BatchNorm. A batch of one gives the first rows of the whole
    batch only in evaluation: training normalises with each batch's own statistics (tested below)."""

    @pytest.mark.parametrize("device", DEVICES)
    def test_batch_of_one(self, device):
        dev = device_or_skip(device)
        x = self.spec.input()
        dy = self.spec.output_gradient(self.spec.layer("cpu"), x)
        evaluation = {"training": False, "keep_for_backward": True}
        whole = forward_backward(self.spec.layer(dev), x, dy, **evaluation)
        first = forward_backward(self.spec.layer(dev), x[:1], dy[:1], **evaluation)
        np.testing.assert_allclose(first.y, whole.y[:1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(first.dx, whole.dx[:1], rtol=1e-12, atol=1e-12)


def batch_norm_by_definition(layer, x):
    """Training: each channel of x (axis 1) normalised by the mean and the biased variance of its values."""
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        values = x[:, c]
        mean = values.sum() / values.size
        variance = ((values - mean) ** 2).sum() / values.size
        y[:, c] = (
            layer.params["gamma"][c] * (values - mean) / np.sqrt(variance + layer.eps)
            + layer.params["beta"][c]
        )
    return y


class TestBatchNorm2DContract(BatchNormContract):
    spec = LayerSpec(
        make=functools.partial(sn.layers.BatchNorm2D, 3),
        input_shape=SHAPES["BatchNorm2D"],
        bad_shapes=((2, 4, 3, 2), (2, 3, 3)),
        reference=batch_norm_by_definition,
        geometries={"odd sizes": {"input_shape": (3, 3, 5, 1)}},
    )


class TestBatchNorm1DContract(BatchNormContract):
    spec = LayerSpec(
        make=functools.partial(sn.layers.BatchNorm1D, 5),
        input_shape=SHAPES["BatchNorm1D"],
        bad_shapes=((6, 4), (6, 5, 2)),
        reference=batch_norm_by_definition,
        geometries={"batch of 3": {"input_shape": (3, 5)}},
    )


def make(kind: str, device="cpu", dtype=np.float64, seed=0, **kwargs):
    """A BatchNorm layer of ``kind`` with random γ and β (so that neither 1 nor 0 hides a mistake)."""
    shape = SHAPES[kind]
    layer = getattr(sn.layers, kind)(shape[1], device=device, dtype=dtype, **kwargs)
    rng = np.random.default_rng(seed)
    dev = layer.device
    layer.params["gamma"][...] = dev.array(rng.uniform(0.5, 2.0, shape[1]), dtype=dtype)
    layer.params["beta"][...] = dev.array(rng.standard_normal(shape[1]), dtype=dtype)
    return layer


def batch(kind: str, seed=1, dtype=np.float64):
    """A batch whose channels have different means and scales, as real activations do."""
    shape = SHAPES[kind]
    rng = np.random.default_rng(seed)
    channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, channel) + rng.uniform(-2, 2, channel)
    return x.astype(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["BatchNorm2D", "BatchNorm1D"])
def test_gradients_in_training_with_shifted_channels(device, kind):
    """Beyond the contract's standard normal input: channels of different means and scales."""
    errors = check_layer(make(kind, device), batch(kind))
    assert set(errors) == {"x", "gamma", "beta"}
    assert max(errors.values()) < TOLERANCE, errors


def test_gradcheck_catches_a_backward_that_ignores_the_batch_statistics():
    """The classic mistake: dx = γ/s · dy, as if μ and σ² did not depend on x. It must fail the check."""

    class ConstantStatisticsMutant(sn.layers.BatchNorm2D):
        def _backward_numpy(self, dy):
            saved = self._saved()
            saved.batch_stats = False  # treat μ and σ² as constants
            return super()._backward_numpy(dy)

    errors = check_layer(make("BatchNorm2D"), batch("BatchNorm2D"))
    assert errors["x"] < TOLERANCE
    mutant = ConstantStatisticsMutant(3, dtype=np.float64)
    errors = check_layer(mutant, batch("BatchNorm2D"))
    assert errors["x"] > 1e-2, errors
    assert errors["gamma"] < TOLERANCE and errors["beta"] < TOLERANCE  # only dx is wrong


def train_then_evaluate(layer, x, dy) -> dict:
    """y, dx, dγ and dβ of two training steps and of an evaluation forward and backward, and the running
    statistics after each training step: everything the layer computes from a batch."""
    arrays = {}
    for step, kwargs in enumerate([{}, {}, {"training": False, "keep_for_backward": True}]):
        run = forward_backward(layer, x * (step + 1), dy, **kwargs)
        arrays |= {f"{name} {step}": value for name, value in run.arrays().items()}
        arrays |= {f"{name} {step}": value.copy() for name, value in layer.buffers.items()}
    return arrays


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("kind", ["BatchNorm2D", "BatchNorm1D"])
def test_batch_split_over_threads_gives_the_one_thread_result(kind, threads, monkeypatch):
    """Seven images as parts of 3+4 or 2+2+3, each part's partial sums (Σx, Σ(x − μ)², Σdy, Σdy x̂) added
    up, each part writing its slice of y and dx: the same numbers as the whole batch on one thread."""
    x = np.concatenate([batch(kind, seed=1), batch(kind, seed=2)])[:7]
    dy = np.random.default_rng(3).standard_normal(x.shape)
    expected = train_then_evaluate(make(kind), x, dy)
    with split_batches(threads, monkeypatch) as splits:
        got = train_then_evaluate(make(kind), x, dy)
    bounds = {2: [0, 3, 7], 3: [0, 2, 4, 7]}[threads]
    parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert len(splits) >= 3 and all(sorted(split, key=lambda s: s.start) == parts for split in splits)
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


# --- PyTorch ---------------------------------------------------------------------------------------------
def relative(a, b) -> float:
    """‖a − b‖ / ‖b‖ (the float32 tolerance is relative to the size of the values)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["BatchNorm2D", "BatchNorm1D"])
def test_matches_pytorch_in_training_and_evaluation(device, dtype, kind):
    """Three training steps (y, dx, dγ, dβ and the running statistics after each), then evaluation."""
    torch = pytest.importorskip("torch")
    tolerance = 1e-10 if dtype == np.float64 else 1e-5
    layer = make(kind, device, dtype, momentum=0.3)
    module = layer.torch_equivalent(torch)  # the layer's own declaration, as the benchmarks use it
    dev = layer.device
    rng = np.random.default_rng(5)
    for step in range(4):
        training = step < 3
        module.train(training)
        x = batch(kind, seed=10 + step, dtype=dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        y = layer.forward(dev.array(x), training=training, keep_for_backward=True)
        dx = layer.backward(dev.array(dy))
        x_t = torch.from_numpy(x).requires_grad_(True)
        y_t = module(x_t)
        y_t.backward(torch.from_numpy(dy))
        pairs = {
            "y": (y, y_t),
            "dx": (dx, x_t.grad),
            "dgamma": (layer.grads["gamma"], module.weight.grad),
            "dbeta": (layer.grads["beta"], module.bias.grad),
            "running_mean": (layer.buffers["running_mean"], module.running_mean),
            "running_var": (layer.buffers["running_var"], module.running_var),
        }
        for name, (ours, theirs) in pairs.items():
            error = relative(dev.to_host(ours), theirs.detach().numpy())
            assert error < tolerance, (
                f"step {step} ({'training' if training else 'evaluation'}): {name} {error}"
            )
        module.weight.grad = module.bias.grad = None


@pytest.mark.parametrize("device", DEVICES)
def test_running_statistics_follow_the_rule(device):
    """running ← (1 − m) running + m · statistic, with the unbiased variance n / (n − 1) · σ²."""
    layer = make("BatchNorm2D", device, momentum=0.25)
    x = batch("BatchNorm2D")
    layer.forward(layer.device.array(x))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    host = {k: layer.device.to_host(v) for k, v in layer.buffers.items()}
    np.testing.assert_allclose(host["running_mean"], 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(host["running_var"], 0.75 + 0.25 * var * n / (n - 1), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_uses_the_running_statistics_and_changes_nothing(device):
    layer = make("BatchNorm2D", device)
    dev = layer.device
    layer.buffers["running_mean"][...] = dev.array([0.5, -1.0, 2.0])
    layer.buffers["running_var"][...] = dev.array([4.0, 0.25, 1.0])
    x = batch("BatchNorm2D")
    y = dev.to_host(layer.forward(dev.array(x), training=False))
    gamma, beta = (dev.to_host(layer.params[k])[None, :, None, None] for k in ("gamma", "beta"))
    mean = np.array([0.5, -1.0, 2.0])[None, :, None, None]
    var = np.array([4.0, 0.25, 1.0])[None, :, None, None]
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta, rtol=1e-12)
    np.testing.assert_array_equal(dev.to_host(layer.buffers["running_var"]), [4.0, 0.25, 1.0])
    with pytest.raises(RuntimeError, match="keep_for_backward=True"):
        layer.backward(dev.array(np.ones_like(x)))


# --- the kernels -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 7, 96, 256, 1024])
def test_kernels_match_numpy_at_any_block_size(device, dtype, threads, monkeypatch):
    """The per-channel sums read blockDim.x: any number of threads (a power of two or not) gives NumPy's
    result, to rounding (the order of the additions differs)."""
    x = np.random.default_rng(2).standard_normal((5, 3, 7, 6)) * 3 + 1
    dy = np.random.default_rng(3).standard_normal(x.shape)
    results = {}
    for dev_name in ("cpu", device):
        monkeypatch.setattr(batchnorm, "REDUCE_THREADS", threads)
        layer = make("BatchNorm2D", dev_name, dtype)
        dev = layer.device
        y = layer.forward(dev.array(x, dtype=dtype))
        dx = layer.backward(dev.array(dy, dtype=dtype))
        arrays = {"y": y, "dx": dx, **layer.grads, **layer.buffers}
        results[dev_name] = {k: dev.to_host(v) for k, v in arrays.items()}
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    for name, expected in results["cpu"].items():
        assert relative(results[device][name], expected) < tolerance, name


# --- sizes, buffers, bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_one_value_per_channel_cannot_train(device):
    layer = sn.layers.BatchNorm1D(4, device=device)
    x = layer.device.array(np.ones((1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        layer.forward(x, training=True)
    layer.forward(x, training=False)  # evaluation normalises a single image fine


@pytest.mark.parametrize("device", DEVICES)
def test_an_empty_batch_leaves_the_running_statistics_alone(device):
    layer = make("BatchNorm2D", device)
    dev = layer.device
    before = {k: dev.to_host(v).copy() for k, v in layer.buffers.items()}
    assert layer.forward(dev.array(np.zeros((0, 3, 4, 4)))).shape == (0, 3, 4, 4)
    for k, v in layer.buffers.items():
        np.testing.assert_array_equal(dev.to_host(v), before[k])


def test_running_statistics_are_buffers_not_parameters():
    layer = sn.layers.BatchNorm2D(8)
    assert set(layer.params) == set(layer.grads) == {"gamma", "beta"}
    assert set(layer.buffers) == {"running_mean", "running_var"}
    assert layer.num_params() == 16
    np.testing.assert_array_equal(layer.params["gamma"], np.ones(8))
    np.testing.assert_array_equal(layer.buffers["running_var"], np.ones(8))
    moved = layer.to("cpu", np.float64)
    assert moved.buffers["running_mean"].dtype == np.float64


def test_bad_arguments_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="num_features"):
        sn.layers.BatchNorm2D(0)
    with pytest.raises(ValueError, match="momentum"):
        sn.layers.BatchNorm2D(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        sn.layers.BatchNorm1D(3, eps=0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        sn.layers.BatchNorm2D(3).forward(np.zeros((2, 4, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        sn.layers.BatchNorm1D(3).forward(np.zeros((2, 3, 5, 5), dtype=np.float32))


# --- the exercise of lesson 14 ---------------------------------------------------------------------------
SOLUTION = "lessons/exercises/solutions/14_batchnorm_vgg_resnet/batchnorm-backward.py"


def _solution():
    from pathlib import Path

    namespace = {"np": np}
    exec((Path(__file__).resolve().parent.parent / SOLUTION).read_text(), namespace)
    return namespace["batchnorm_backward"]


def _normalised(x, eps, ddof=0):
    s = np.sqrt(x.var(axis=0, ddof=ddof) + eps)
    return (x - x.mean(axis=0)) / s, s


def _constant_statistics(dy, x, gamma, eps):
    x_hat, s = _normalised(x, eps)
    return gamma / s * dy, (dy * x_hat).sum(axis=0), dy.sum(axis=0)


def _without_eps(dy, x, gamma, eps):
    return _solution()(dy, x, gamma, 0.0)


def _without_the_mean_path(dy, x, gamma, eps):
    x_hat, s = _normalised(x, eps)
    dgamma = (dy * x_hat).sum(axis=0)
    return gamma / s * (dy - x_hat * dgamma / len(x)), dgamma, dy.sum(axis=0)


def _unbiased_variance(dy, x, gamma, eps):
    x_hat, s = _normalised(x, eps, ddof=1)
    dgamma = (dy * x_hat).sum(axis=0)
    return gamma / s * (dy - dy.sum(axis=0) / len(x) - x_hat * dgamma / (len(x) - 1)), dgamma, dy.sum(axis=0)


def _dbeta_as_a_mean(dy, x, gamma, eps):
    dx, dgamma, dbeta = _solution()(dy, x, gamma, eps)
    return dx, dgamma, dbeta / len(x)


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        (_constant_statistics, "treats μ and σ² as constants"),
        (_without_eps, "without eps"),
        (_without_the_mean_path, "misses the path through the mean"),
        (_unbiased_variance, "unbiased variance"),
        (_dbeta_as_a_mean, "a mean where a sum is needed"),
    ],
)
def test_the_exercise_checker_names_the_mistake(wrong, named):
    from scratchnet.exercises import run

    assert run("batchnorm-backward", _solution()).passed
    report = run("batchnorm-backward", wrong)
    assert not report.passed
    assert named in "\n".join(report.lines), report.render()
