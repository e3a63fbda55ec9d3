"""SoftmaxCrossEntropy and topk_correct: gradients, stability, devices, PyTorch reference, label checks."""

from __future__ import annotations

import numpy as np
import pytest

import scratchnet as sn
from scratchnet.gradcheck import TOLERANCE, check_loss
from scratchnet.layers.loss import topk_correct
from scratchnet.testing import DEVICES, LayerSpec, LossContract

KERNEL_DEVICES = DEVICES[1:]  # sim and gpu: compared with cpu
# (N, K): a LeNet-like batch, one row, K above the 256-thread block (strided columns), N above the
# 256-thread mean reduction (strided rows).
SHAPES = [(4, 10), (1, 3), (2, 300), (300, 3)]
GRADCHECK_SHAPES = SHAPES[:3]  # (300, 3) would take 1800 simulated launches; the agreement tests cover it


def cross_entropy_by_definition(loss, logits, labels):
    """The mean over rows of -log(softmax(row)[label]), one row at a time."""
    return np.mean(
        [-np.log(np.exp(row[label]) / np.exp(row).sum()) for row, label in zip(logits, labels, strict=True)]
    )


class TestSoftmaxCrossEntropyContract(LossContract):
    spec = LayerSpec(
        make=sn.layers.SoftmaxCrossEntropy,
        input_shape=(4, 10),
        make_input=lambda shape, rng: 3 * rng.standard_normal(shape),
        tolerance={np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13},
        reference=cross_entropy_by_definition,
        geometries={"one row, 3 classes": {"input_shape": (1, 3)}, "300 classes": {"input_shape": (3, 300)}},
    )


def batch(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) * 3, rng.integers(0, shape[1], size=shape[0])


def loss_and_grad(device, dtype, logits, labels):
    loss = sn.layers.SoftmaxCrossEntropy(device=device, dtype=dtype)
    dev = loss.device
    value = loss.forward(dev.array(logits, dtype=dtype), dev.array(labels, dtype=np.int64))
    return value, dev.to_host(loss.backward())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", GRADCHECK_SHAPES, ids=str)
def test_gradient(device, shape):
    logits, labels = batch(shape)
    errors = check_loss(sn.layers.SoftmaxCrossEntropy(device=device, dtype=np.float64), logits, labels)
    assert errors["logits"] < TOLERANCE, errors


def test_gradcheck_catches_a_backward_without_the_mean():
    class SumMutant(sn.layers.SoftmaxCrossEntropy):
        def _backward_numpy(self, probs, labels):
            return super()._backward_numpy(probs, labels) * probs.shape[0]  # forgets the 1/N

    logits, labels = batch((4, 5))
    assert check_loss(SumMutant(dtype=np.float64), logits, labels)["logits"] > 1e-2


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernels_match_numpy(device, dtype, shape):
    logits, labels = batch(shape)
    loss_cpu, grad_cpu = loss_and_grad("cpu", dtype, logits, labels)
    loss_dev, grad_dev = loss_and_grad(device, dtype, logits, labels)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert loss_dev == pytest.approx(loss_cpu, rel=tol)
    np.testing.assert_allclose(grad_dev, grad_cpu, rtol=tol, atol=tol / shape[0])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_pytorch(shape):
    torch = pytest.importorskip("torch")
    logits, labels = batch(shape)
    zt = torch.tensor(logits, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    lt.backward()
    loss, grad = loss_and_grad("cpu", np.float64, logits, labels)
    assert loss == pytest.approx(lt.item(), rel=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_huge_logits_are_stable(device):
    """exp(1000) overflows; subtracting the row maximum first keeps everything finite and exact."""
    logits, labels = batch((3, 4))
    small = loss_and_grad(device, np.float32, logits, labels)
    huge = loss_and_grad(device, np.float32, logits + 1000.0, labels)
    assert np.isfinite(huge[0]) and huge[0] == pytest.approx(small[0], rel=1e-3)
    np.testing.assert_allclose(huge[1], small[1], atol=1e-3)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_forward_copies_one_number_to_the_host(device):
    loss = sn.layers.SoftmaxCrossEntropy(device=device)
    dev = loss.device
    logits, labels = dev.array(batch((5, 7))[0], dtype=np.float32), dev.array(batch((5, 7))[1])
    before = dev.transfers["device_to_host"]
    value = loss.forward(logits, labels)
    assert isinstance(value, float) and dev.transfers["device_to_host"] == before + 1
    assert dev.is_array(loss.backward()) and dev.transfers["device_to_host"] == before + 1


@pytest.mark.parametrize("device", DEVICES)
def test_bad_labels_are_named(device):
    loss = sn.layers.SoftmaxCrossEntropy(device=device)
    dev = loss.device
    logits = dev.array(np.zeros((3, 4)), dtype=np.float32)
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\), got 4"):
        loss.forward(logits, dev.array([0, 4, 1], dtype=np.int64))
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\), got -1 and 1 more"):
        loss.forward(logits, dev.array([-1, 0, 9], dtype=np.int64))
    with pytest.raises(ValueError, match="integer class ids, got dtype float32"):
        loss.forward(logits, dev.array([0, 1, 2], dtype=np.float32))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\) for logits \(3, 4\), got \(2,\)"):
        loss.forward(logits, dev.array([0, 1], dtype=np.int64))
    with pytest.raises(ValueError, match=r"logits of shape \(N, K\), K >= 1, got \(12,\)"):
        loss.forward(logits.reshape(12), dev.array([0, 1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="dtype float32, got float64"):
        loss.forward(dev.array(np.zeros((3, 4))), dev.array([0, 1, 2], dtype=np.int64))
    with pytest.raises(TypeError, match="SoftmaxCrossEntropy: labels must be an array on device"):
        loss.forward(logits, [0, 1, 2])
    with pytest.raises(ValueError, match="a batch of 0 rows has no mean loss"):
        loss.forward(dev.array(np.zeros((0, 4), np.float32)), dev.array(np.zeros(0, np.int64)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8])
def test_any_integer_labels_on_every_device(device, label_dtype):
    """int32 labels (and others) give the same loss, gradient and top-k counts as int64 ones."""
    logits, labels = batch((5, 4))
    results = {}
    for dtype in (np.int64, label_dtype):
        loss = sn.layers.SoftmaxCrossEntropy(device=device, dtype=np.float64)
        dev = loss.device
        labels_dev, logits_dev = dev.array(labels, dtype=dtype), dev.array(logits)
        value = loss.forward(logits_dev, labels_dev)
        counts = topk_correct(logits_dev, labels_dev, ks=(1, 2), device=device)
        results[dtype] = (value, dev.to_host(loss.backward()), counts)
    assert results[np.int64][0] == results[label_dtype][0]
    np.testing.assert_array_equal(results[np.int64][1], results[label_dtype][1])
    assert results[np.int64][2] == results[label_dtype][2]


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_logits_and_labels(device):
    logits, labels = batch((6, 4))
    loss = sn.layers.SoftmaxCrossEntropy(device=device, dtype=np.float64)
    dev = loss.device
    wide_logits, wide_labels = dev.array(np.repeat(logits, 2, axis=0)), dev.array(np.repeat(labels, 2))
    expected = loss.forward(dev.array(logits), dev.array(labels))
    expected_grad = dev.to_host(loss.backward())
    assert loss.forward(wide_logits[::2], wide_labels[::2]) == expected  # every other row: strided views
    np.testing.assert_array_equal(dev.to_host(loss.backward()), expected_grad)


def test_interface():
    loss = sn.layers.SoftmaxCrossEntropy(dtype=np.float64)
    assert loss.params == {} and loss.grads == {} and loss.dtype == np.float64 and loss.device.name == "cpu"
    with pytest.raises(RuntimeError, match="SoftmaxCrossEntropy.backward needs a forward"):
        loss.backward()
    logits, labels = batch((3, 4))
    loss.forward(logits, labels, keep_for_backward=False)  # an evaluation loss keeps no softmax
    with pytest.raises(RuntimeError, match="SoftmaxCrossEntropy.backward needs a forward"):
        loss.backward()
    loss.forward(logits, labels)
    assert loss.backward().shape == (3, 4)


def test_the_loss_is_a_layer():
    """Layer's constructor and to(); what a forward kept belongs to the old device and dtype."""
    loss = sn.layers.SoftmaxCrossEntropy(dtype=np.float64)
    assert isinstance(loss, sn.layers.Layer) and repr(loss) == "SoftmaxCrossEntropy()"
    loss.forward(*batch((3, 4)))
    assert loss.to("cpu", np.float32) is loss and loss.dtype == np.float32
    with pytest.raises(RuntimeError, match="SoftmaxCrossEntropy.backward needs a forward"):
        loss.backward()


def reference_topk(logits, labels, k):
    """Sort each row by decreasing logit, ties by increasing index (a stable sort of -logits)."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((order == labels[:, None]).any(axis=1).sum())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ties", [False, True])
def test_topk_correct(device, ties):
    dev = sn.get_device(device)
    logits, labels = batch((40, 10), seed=5)
    if ties:
        logits = np.round(logits / 3)  # many equal logits: ties must go to the lower class index
    counts = topk_correct(
        dev.array(logits, dtype=np.float32), dev.array(labels), ks=(1, 3, 5, 10), device=device
    )
    assert counts == {k: reference_topk(logits, labels, k) for k in (1, 3, 5, 10)}
    assert counts[1] == int((logits.argmax(axis=1) == labels).sum()) and counts[10] == 40


@pytest.mark.parametrize("device", DEVICES)
def test_topk_correct_rejects_bad_labels(device):
    dev = sn.get_device(device)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\), got 3"):
        topk_correct(dev.array(np.zeros((2, 3)), dtype=np.float32), dev.array([0, 3]), device=device)
    with pytest.raises(ValueError, match="ks must be positive integers"):
        topk_correct(dev.array(np.zeros((2, 3)), dtype=np.float32), dev.array([0, 1]), ks=(0,), device=device)
