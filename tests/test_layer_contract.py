"""The layer-test contract can fail: layers that break one promise each must fail that check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from scratchnet.layers import ReLU
from scratchnet.testing import LayerContract, LayerSpec

CONTRACT_FAILS = (AssertionError, pytest.fail.Exception)  # a failed assert, or "DID NOT RAISE"


def away_from_zero(shape, rng):
    x = rng.standard_normal(shape)
    return np.sign(x) * (0.1 + np.abs(x))


def contract_for(layer_class) -> LayerContract:
    """The contract's checks, bound to a spec of ``layer_class`` (a ReLU with one thing wrong)."""

    class Contract(LayerContract):
        spec = LayerSpec(make=layer_class, input_shape=(2, 3, 4), make_input=away_from_zero)

    return Contract()


def test_a_correct_layer_passes():
    contract = contract_for(ReLU)
    contract.test_gradients("cpu")
    contract.test_backward_needs_a_kept_forward("cpu")
    contract.test_batch_of_one("cpu")


class LeakyBackward(ReLU):
    def _backward_numpy(self, dy):
        return dy * (self._saved().y >= 0) + 0.1 * dy  # a stray slope where x < 0


def test_a_wrong_backward_fails_the_gradient_checks():
    with pytest.raises(CONTRACT_FAILS):
        contract_for(LeakyBackward).test_gradients("cpu")
    with pytest.raises(CONTRACT_FAILS):
        contract_for(LeakyBackward).test_gradients_in_evaluation("cpu")


class KeepsItsInputAlways(ReLU):
    """Bypasses the backward cache: keeps y after an evaluation forward too."""

    _y = None

    def _forward_numpy(self, x, training):
        self._y = np.maximum(x, 0)
        return self._y

    def backward(self, dy):
        return dy if self._y is None else dy * (self._y > 0)


def test_a_layer_that_ignores_keep_for_backward_fails():
    with pytest.raises(CONTRACT_FAILS):
        contract_for(KeepsItsInputAlways).test_backward_needs_a_kept_forward("cpu")


class MixesTheBatch(ReLU):
    """y depends on the other examples of the batch (as a forgotten axis in a mean would)."""

    def _forward_numpy(self, x, training):
        return super()._forward_numpy(x - x.mean(axis=0), training)


def test_a_layer_that_mixes_the_batch_fails_the_batch_of_one():
    with pytest.raises(CONTRACT_FAILS):
        contract_for(MixesTheBatch).test_batch_of_one("cpu")


class SkewedKernel(ReLU):
    def _forward_kernels(self, x, training):
        return super()._forward_kernels(x, training) * self.dtype.type(1.001)


class CopiesToTheHost(ReLU):
    def _forward_kernels(self, x, training):
        self.device.to_host(x)  # e.g. a debugging print of the input
        return super()._forward_kernels(x, training)


@pytest.mark.sim
def test_kernel_checks_fail_on_sim():
    with pytest.raises(CONTRACT_FAILS):
        contract_for(SkewedKernel).test_kernels_match_numpy("sim", np.float64)
    with pytest.raises(CONTRACT_FAILS):
        contract_for(CopiesToTheHost).test_kernels_copy_nothing("sim")
    contract_for(ReLU).test_kernels_copy_nothing("sim")


def test_the_guides_walkthrough_is_the_tested_file():
    """Each Python block of "How to add a layer" (docs/contributing.md) is a verbatim piece of
    tests/test_add_a_layer.py: the imports, the kernels, the layer, the spec."""
    root = Path(__file__).resolve().parent.parent
    guide = (root / "docs" / "contributing.md").read_text(encoding="utf-8")
    section = guide.split("## How to add a layer", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    tested = (root / "tests" / "test_add_a_layer.py").read_text(encoding="utf-8")
    assert len(blocks) == 4
    for block in blocks:
        assert block in tested, block[:80]
