"""The layer-test contract can fail: layers that break one promise each must fail that check. And it has no
blind spots: every exported layer has a contract with a reference forward, and every file of kernels/ runs
under all the simulator's checks (kernels/dev/, the benchmark's numbered versions, run so in
test_sim_checks.py's process-level test)."""

from __future__ import annotations

import functools
import importlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from scratchnet import layers, sim
from scratchnet._cuda.sources import kernel_dir
from scratchnet.layers import Layer, ReLU
from scratchnet.layers.linear import gemm
from scratchnet.testing import (
    KERNEL_FILES_UNDER_ALL_CHECKS,
    KernelSource,
    LayerContract,
    LayerSpec,
    LossContract,
    checked_sim_device,
    device_unavailable,
)

TESTS = Path(__file__).resolve().parent

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


# --- the two bugs that an input shape covered by its windows and no reference let through -----------------
WINDOW_MEAN_CU = KernelSource(
    """
// One thread per output element: the mean of its K x K window, from (oh*S, ow*S); no padding.
template <typename T>
__global__ void window_mean_forward(const T* x, T* y, long long n_out, int H, int W, int OH, int OW, int K,
                                    int S, T divisor) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_out) {
        return;
    }
    const T* plane = x + i / (OH * OW) * H * W;
    int oh = (int)(i / OW % OH), ow = (int)(i % OW);
    T sum = T(0);
    for (int kh = 0; kh < K; ++kh) {
        for (int kw = 0; kw < K; ++kw) {
            sum += plane[(oh * S + kh) * W + ow * S + kw];
        }
    }
    y[i] = sum / divisor;
}

// One thread per input element: dy / divisor summed over the windows that hold it (none: 0).
template <typename T>
__global__ void window_mean_backward(const T* dy, T* dx, long long n_in, int H, int W, int OH, int OW, int K,
                                     int S, T divisor) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_in) {
        return;
    }
    const T* dy_plane = dy + i / (H * W) * OH * OW;
    int h = (int)(i / W % H), w = (int)(i % W);
    T sum = T(0);
    bool covered = false;
    for (int oh = 0; oh < OH; ++oh) {
        for (int ow = 0; ow < OW; ++ow) {
            if (oh * S <= h && h < oh * S + K && ow * S <= w && w < ow * S + K) {
                sum += dy_plane[oh * OW + ow];
                covered = true;
            }
        }
    }
    dx[i] = covered ? sum / divisor : T(0);
}
""",
    filename="window_mean.cu",
)
# The first bug: a backward kernel that writes only the inputs some window covers.
UNCOVERED_LEFT_UNWRITTEN_CU = KernelSource(
    WINDOW_MEAN_CU.source.replace(
        "    dx[i] = covered ? sum / divisor : T(0);",
        "    if (covered) {\n        dx[i] = sum / divisor;\n    }",
    ),
    filename="window_mean_mutant.cu",
)
assert UNCOVERED_LEFT_UNWRITTEN_CU.source != WINDOW_MEAN_CU.source


class WindowMean(Layer):
    """Average pooling over K x K windows with stride S, no padding (x (N, C, H, W) -> y (N, C, OH, OW)): a
    small layer on which to plant the bugs."""

    kernels = WINDOW_MEAN_CU

    def __init__(self, K: int, S: int, *, device="cpu", dtype=np.float32):
        super().__init__(device=device, dtype=dtype)
        self.K, self.S = K, S

    def divisor(self) -> int:
        return self.K * self.K

    def output_shape(self, input_shape: tuple) -> tuple:
        N, C, H, W = input_shape
        return (N, C, (H - self.K) // self.S + 1, (W - self.K) // self.S + 1)

    def _window_views(self, a, out_hw):
        """For each offset (kh, kw), the view a[:, :, oh*S + kh, ow*S + kw] over every output (oh, ow)."""
        K, S, (OH, OW) = self.K, self.S, out_hw
        rows, cols = S * (OH - 1) + 1, S * (OW - 1) + 1
        return [a[:, :, kh : kh + rows : S, kw : kw + cols : S] for kh in range(K) for kw in range(K)]

    def _forward_numpy(self, x, training):
        self._save_for_backward(input_shape=tuple(x.shape))
        return sum(self._window_views(x, self.output_shape(x.shape)[2:])) / self.divisor()

    def _backward_numpy(self, dy):
        dx = np.zeros(self._saved().input_shape, dy.dtype)
        for view in self._window_views(dx, dy.shape[2:]):
            view += dy / self.divisor()
        return dx

    def _sizes(self, input_shape):
        (H, W), (OH, OW) = input_shape[2:], self.output_shape(input_shape)[2:]
        return (H, W, OH, OW, self.K, self.S, self.divisor())

    def _forward_kernels(self, x, training):
        self._save_for_backward(input_shape=tuple(x.shape))
        y = self.device.empty(self.output_shape(x.shape), self.dtype)
        kernel = self.kernels.kernel(self.device, "window_mean_forward", self.dtype)
        kernel.launch_1d(y.size, (x, y, y.size, *self._sizes(x.shape)))
        return y

    def _backward_kernels(self, dy):
        dx = self.device.empty(self._saved().input_shape, self.dtype)
        kernel = self.kernels.kernel(self.device, "window_mean_backward", self.dtype)
        kernel.launch_1d(dx.size, (dy, dx, dx.size, *self._sizes(dx.shape)))
        return dx


def window_mean_by_definition(layer, x):
    """y[n, c, oh, ow] = mean of x[n, c, oh*S : oh*S + K, ow*S : ow*S + K], one output at a time."""
    K, S = layer.K, layer.S
    N, C, H, W = x.shape
    y = np.empty((N, C, (H - K) // S + 1, (W - K) // S + 1))
    for n, c, oh, ow in np.ndindex(y.shape):
        y[n, c, oh, ow] = x[n, c, oh * S : oh * S + K, ow * S : ow * S + K].mean()
    return y


def window_mean_spec(layer_class=WindowMean) -> LayerSpec:
    return LayerSpec(
        make=functools.partial(layer_class, 2, 2),
        input_shape=(2, 3, 4, 6),  # every input in exactly one window
        reference=window_mean_by_definition,
        geometries={
            "stride 3 > kernel 2": {
                "make": functools.partial(layer_class, 2, 3),
                "input_shape": (2, 2, 7, 8),
            },
            "odd, overlapping": {
                "make": functools.partial(layer_class, 3, 2),
                "input_shape": (1, 3, 7, 5),
            },
        },
    )


class TestWindowMeanContract(LayerContract):
    spec = window_mean_spec()


class UncoveredLeftUnwritten(WindowMean):
    kernels = UNCOVERED_LEFT_UNWRITTEN_CU


class DividesByOneMore(WindowMean):
    """Forward and backward divide by K*K + 1 on every device: consistent with each other, wrong."""

    def divisor(self) -> int:
        return self.K * self.K + 1


@pytest.mark.sim
def test_an_input_no_window_covers_must_get_its_gradient_written():
    class Contract(LayerContract):
        spec = window_mean_spec(UncoveredLeftUnwritten)

    Contract().test_under_every_simulator_check("spec")  # every input covered: the bug does not show
    with pytest.raises(sim.InitcheckError, match="uninitialised memory"):
        Contract().test_under_every_simulator_check("stride 3 > kernel 2")


@pytest.mark.parametrize("device", ["cpu", pytest.param("sim", marks=pytest.mark.sim)])
def test_a_forward_and_backward_wrong_alike_fail_the_reference(device):
    class Contract(LayerContract):
        spec = window_mean_spec(DividesByOneMore)

    Contract().test_gradients("cpu")  # backward agrees with the wrong forward: the gradients cannot tell
    with pytest.raises(AssertionError):
        Contract().test_forward_matches_the_reference(device, "spec")


# --- no blind spots -------------------------------------------------------------------------------------
def contract_classes() -> list[type]:
    """Every ``Test*`` contract class of the test files, imported afresh from tests/."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        if "Contract" in path.read_text(encoding="utf-8"):
            module = importlib.import_module(f"tests.{path.stem}")
            found += [
                value
                for name, value in vars(module).items()
                if name.startswith("Test")
                and isinstance(value, type)
                and issubclass(value, LayerContract | LossContract)
                and value.__module__ == module.__name__
            ]
    return found


def test_every_exported_layer_has_a_contract_with_a_reference():
    exported = {getattr(layers, name) for name in layers.__all__ if name != "Layer"}
    covered = {
        type(contract.spec.make(device="cpu", dtype=np.float64))
        for contract in contract_classes()
        if contract.spec.reference is not None
    }
    missing = sorted(cls.__name__ for cls in exported - covered)
    assert not missing, f"no contract with a reference forward for {missing}"


KERNELS_TEST = "test_the_kernels_no_layer_launches_run_under_all_checks"


@pytest.mark.sim
def test_the_kernels_no_layer_launches_run_under_all_checks():
    """The lessons' GEMMs (gemm.cu, gemm_bias.cu) and the optimizer's update (sgd.cu), against NumPy."""
    device = checked_sim_device()
    rng = np.random.default_rng(0)
    A, B, bias = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3)
    on_device = [device.array(a) for a in (A, B, bias)]
    for impl, with_bias in (("naive", False), ("tiled", False), ("tiled", True)):
        C = gemm(device, *on_device[:2], impl=impl, bias=on_device[2] if with_bias else None)
        np.testing.assert_allclose(device.to_host(C), A @ B + with_bias * bias, rtol=1e-12, err_msg=impl)
    p, grad = rng.standard_normal(10), rng.standard_normal(10)
    p_dev = device.array(p)
    lr, weight_decay = 0.1, 0.01
    args = (p_dev, device.array(grad), p_dev, p.size, lr, 0.0, weight_decay, 0, 1)  # momentum 0: no velocity
    device.kernel("sgd.cu", "sgd_update", np.float64).launch_1d(p.size, args)
    np.testing.assert_allclose(device.to_host(p_dev), p - lr * (grad + weight_decay * p), rtol=1e-12)


@pytest.mark.session_end
def test_every_kernel_file_ran_under_all_checks(request):
    """Runs after every other test (conftest): each kernels/*.cu was compiled by the all-checks sim device of
    some contract or of the test above. Skipped when this run did not select all of those tests."""
    if device_unavailable("sim"):
        pytest.skip(f"no sim device: {device_unavailable('sim')}")
    if "PYTEST_XDIST_WORKER" in os.environ:
        pytest.skip("pytest -n: the kernel files are recorded in each worker process, none sees them all")
    all_checks_tests = {
        (item.path, item.cls.__name__ if item.cls else None)
        for item in request.session.items
        if getattr(item, "originalname", None) in ("test_under_every_simulator_check", KERNELS_TEST)
    }
    needed = {(TESTS / f"{c.__module__.split('.')[-1]}.py", c.__name__) for c in contract_classes()}
    needed.add((Path(__file__).resolve(), None))
    left_out = sorted(name or KERNELS_TEST for _, name in needed - all_checks_tests)
    if left_out:
        pytest.skip(f"this run did not select the all-checks tests of {', '.join(left_out)}")
    not_run = sorted(p.name for p in kernel_dir().glob("*.cu") if p not in KERNEL_FILES_UNDER_ALL_CHECKS)
    assert not not_run, f"kernel files no test ran under every simulator check: {not_run}"
