"""The layer-test contract: what every scratchnet layer promises, checked the same way for each layer.

A test module says how to build its layer and what to feed it (a :class:`LayerSpec`) and subclasses
:class:`LayerContract`; pytest then runs the whole contract on it, on every device (as Chainer's
``FunctionTestCase`` with ``inject_backend_tests``)::

    from scratchnet.layers import ReLU
    from scratchnet.testing import LayerContract, LayerSpec

    def away_from_zero(shape, rng):         # ReLU has a kink at 0: keep finite differences off it
        x = rng.uniform(0.1, 1.0, shape)
        return x * rng.choice([-1.0, 1.0], shape)

    class TestReLU(LayerContract):
        spec = LayerSpec(make=ReLU, input_shape=(2, 3, 4, 4), make_input=away_from_zero)

=======================================  ====================================================================
contract test                            the promise
=======================================  ====================================================================
``test_gradients``                       float64: dL/dx and every dL/dparam from backward agree with finite
                                         differences, error < ``gradcheck.TOLERANCE`` (1e-7, DESIGN's measure)
``test_gradients_in_evaluation``         the same for ``forward(x, training=False, keep_for_backward=True)``
                                         and the backward after it (a saliency map)
``test_kernels_match_numpy``             gpu/sim: y, dx and every gradient equal the NumPy path's within the
                                         spec's tolerance, in float32 and float64
``test_kernels_copy_nothing``            gpu/sim: no host<->device copy inside forward and backward
``test_backward_needs_a_kept_forward``   backward before any forward, or after an evaluation forward, is a
                                         RuntimeError naming the layer
``test_bad_inputs_are_named``            a list: TypeError; wrong dtype, wrong shape (``spec.bad_shapes``),
                                         wrong dy shape: ValueError; each names the layer
``test_batch_of_one``                    x[:1] gives y[:1] and dx[:1] of the whole batch
``test_batch_of_zero``                   an empty batch: empty y and dx, zero parameter gradients
``test_non_contiguous_input``            strided x and dy give exactly what contiguous ones give
``test_forward_matches_the_reference``   every device, every geometry: float64 y equals ``spec.reference``,
                                         a forward written apart from the layer (a loop, a NumPy expression)
``test_under_every_simulator_check``     every geometry: one float32 forward and backward on a sim device
                                         with all its checks (memcheck, racecheck, initcheck, synccheck)
                                         reports nothing and gives NumPy's y, dx and gradients
=======================================  ====================================================================

Geometries: ``spec.geometries`` names more layers and inputs (``{"stride 3 > kernel 2": {"make": ...,
"input_shape": ...}}``, changes to the spec) for the two checks above: windows that leave inputs
uncovered, padding, C != F, odd sizes. The gradient checks run on the spec's own geometry (finite
differences are slow on sim, and much slower under every check).

Losses (``forward(logits, labels)``, ``backward()``) have :class:`LossContract`, whose ``reference`` is
``reference(loss, logits, labels) -> mean loss``.

Every kernel file a contract loads under every check is recorded in :data:`KERNEL_FILES_UNDER_ALL_CHECKS`,
so that a test at the end of the run can show that each file of ``kernels/`` ran so.

Devices: :data:`DEVICES` parametrises a test over ``cpu``, ``sim`` and ``gpu`` (marked ``sim``/``gpu``); a
device that is not available here is skipped with the reason. :func:`forward_backward` runs one forward
and backward from host arrays and returns host arrays; inside :func:`split_batches` the element-wise
and per-channel layers split even a small batch over threads. :class:`KernelSource` compiles a new
layer's CUDA source before it has a file in ``kernels/``. Needs pytest (the ``dev`` extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import threadpoolctl

from scratchnet._cuda.launch import Kernel
from scratchnet._cuda.signature import C_NAME_OF_DTYPE
from scratchnet.device import Device, SimDevice, get_device, load_kernels
from scratchnet.errors import DeviceError
from scratchnet.gradcheck import TOLERANCE, check_layer, check_loss
from scratchnet.layers import batch_threads
from scratchnet.layers.base import Layer

# Every device a layer runs on: ``@pytest.mark.parametrize("device", DEVICES)``.
DEVICES = [
    "cpu",
    pytest.param("sim", marks=pytest.mark.sim),
    pytest.param("gpu", marks=pytest.mark.gpu),
]
KERNEL_DEVICES = DEVICES[1:]  # the devices that run kernels, compared with cpu's NumPy
FLOAT_DTYPES = [np.float32, np.float64]
# How far, relatively and absolutely, a float64 forward may be from its reference (rounding only)
REFERENCE_TOLERANCE = 1e-10
# The kernel files (paths) compiled by this process under every simulator check: see checked_sim_device().
KERNEL_FILES_UNDER_ALL_CHECKS: set[Path] = set()


@functools.cache
def device_unavailable(name: str) -> str | None:
    """Why device ``name`` cannot be used on this machine, or None when it can."""
    try:
        Device(name)
    except DeviceError as e:
        return str(e)
    return None


def skip_unavailable_devices(items) -> None:
    """For a ``pytest_collection_modifyitems`` hook: skip the tests marked ``sim``/``gpu`` when that device
    is not available, with the reason."""
    for item in items:
        for name in ("gpu", "sim"):
            reason = device_unavailable(name) if item.get_closest_marker(name) is not None else None
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"no {name} device: {reason}"))


def device_or_skip(name: str) -> Device:
    """The device called ``name``; skips the calling test when it is not available here."""
    reason = device_unavailable(name)
    if reason is not None:
        pytest.skip(f"no {name} device: {reason}")
    return get_device(name)


class _CheckedSimDevice(SimDevice):
    """A sim device with every check on, recording each kernel file it compiles."""

    def _load_module(self, source: str, name_expressions: list[str], filename: str):
        KERNEL_FILES_UNDER_ALL_CHECKS.add(Path(filename))
        return super()._load_module(source, name_expressions, filename)


@functools.cache
def checked_sim_device() -> Device:
    """The sim device that runs kernels under every check (its own, apart from ``get_device("sim")``); skips
    the calling test when the simulator is not available here."""
    device_or_skip("sim")
    return _CheckedSimDevice(checks="all")


class KernelSource:
    """CUDA C source kept outside ``kernels/`` (a new layer's first kernels, or a test's), compiled on first
    use, once per device, and launched through the same checked launch code as :meth:`Device.kernel`.

    ``KernelSource(code).kernel(device, "leaky_relu_forward", np.float64)`` is
    ``leaky_relu_forward<double>``, compiled as ``device`` compiles ``kernels/`` (on sim, with its checks).
    Once the layer is done, its kernels move to ``kernels/<family>.cu`` and the layer asks
    ``self.device.kernel("<family>.cu", ...)`` instead.
    """

    def __init__(self, source: str, filename: str = "<source>"):
        self.source, self.filename = source, filename
        self._compiled: dict[Device, dict[str, Kernel]] = {}  # device -> {kernel name: kernel}

    def kernel(self, device: str | Device, base_name: str, dtype=None) -> Kernel:
        device = get_device(device)
        if device not in self._compiled:
            if not device.uses_kernels:
                raise DeviceError("the cpu device runs NumPy code, not kernels; use device 'gpu' or 'sim'")
            loader = functools.partial(device._load_module, filename=self.filename)
            self._compiled[device] = load_kernels(device, self.source, loader)
        kernels = self._compiled[device]
        name = base_name if dtype is None else f"{base_name}<{C_NAME_OF_DTYPE[np.dtype(dtype)]}>"
        if name not in kernels:
            raise DeviceError(f"{self.filename} has no kernel {name!r}; it has: {', '.join(sorted(kernels))}")
        return kernels[name]


class Run(NamedTuple):
    """One forward and backward, as host arrays: ``y``, ``dx`` and ``grads`` (``{"W": ..., "b": ...}``)."""

    y: np.ndarray
    dx: np.ndarray | None
    grads: dict

    def arrays(self) -> dict[str, np.ndarray]:
        """Every result by the legend's names: ``{"y": ..., "dx": ..., "dweight": ..., "dbias": ...}`` (other
        parameters: ``"d" + key``, e.g. BatchNorm's ``"dgamma"``)."""
        named = {"W": "dweight", "b": "dbias"}  # the keys of params are short; the legend's names are not
        return {"y": self.y, "dx": self.dx} | {named.get(k, "d" + k): g for k, g in self.grads.items()}


def forward_backward(layer: Layer, x, dy, **forward_kwargs) -> Run:
    """``layer.forward(x)`` then ``layer.backward(dy)``. ``x``, ``dy``: host arrays (copied to the layer's
    device in its dtype) or arrays already there; ``forward_kwargs`` go to ``forward`` (``training=...``)."""
    dev = layer.device

    def on_device(a):
        return a if dev.is_array(a) and a.dtype == layer.dtype else dev.array(a, dtype=layer.dtype)

    y = dev.to_host(layer.forward(on_device(x), **forward_kwargs))
    dx = layer.backward(on_device(dy))
    grads = {name: dev.to_host(g) for name, g in layer.grads.items()}
    return Run(y, None if dx is None else dev.to_host(dx), grads)


@contextlib.contextmanager
def split_batches(threads: int, monkeypatch):
    """Inside, NumPy's BLAS has ``threads`` threads and the element-wise and per-channel layers split every
    batch, however small, into that many parts (``batch_threads.batch_parts``). Yields a list that gets,
    for each split, the list of the parts' image slices, so a test can see that its layer did split."""
    splits = []
    split_over_threads = batch_threads.over_batch_parts

    def recording(work, N, workspace=None):
        parts = []
        splits.append(parts)

        def recorded_work(images, part_workspace):
            parts.append(images)
            return work(images, part_workspace)

        return split_over_threads(recorded_work, N, workspace)

    monkeypatch.setattr(batch_threads, "SPLIT_MIN_VALUES", 0)
    monkeypatch.setattr(batch_threads, "over_batch_parts", recording)
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        yield splits


def gaussian(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Standard normal numbers: the default input of a layer without kinks."""
    return rng.standard_normal(shape)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """What the contract needs to know about a layer.

    ``make``: builds the layer, called as ``make(device=..., dtype=...)``; it must be deterministic (seed
    any random initialisation), as the contract compares layers built on different devices.
    ``input_shape``: a small input, batch axis first, with a batch of at least 2.
    ``make_input(shape, rng)``: a float64 host array of that shape; keep it away from kinks (ReLU at 0,
    max-pool ties), where finite differences straddle two slopes.
    ``tolerance``: for each dtype, how far (relative and absolute) the kernels may be from NumPy.
    ``bad_shapes``: input shapes the layer must refuse with a ValueError naming them.
    ``random_params``: replace the initial parameters by random ones (e.g. a nonzero bias, so that the
    checks see it).
    ``reference(layer, x)``: the training forward's y, float64, written apart from the layer's code (a
    loop over the definition, a NumPy expression); it reads the layer's settings and its ``params``
    (NumPy arrays: the contract passes a cpu float64 layer). A loss's takes ``(loss, logits, labels)``.
    ``geometries``: more layers and inputs for the reference and all-checks tests, by name: each a dict of
    fields to change (``{"make": ..., "input_shape": ...}``).
    """

    make: Callable[..., Layer]
    input_shape: tuple
    make_input: Callable[[tuple, np.random.Generator], np.ndarray] = gaussian
    tolerance: dict = dataclasses.field(
        default_factory=lambda: {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
    )
    bad_shapes: tuple = ()
    random_params: bool = True
    reference: Callable[..., np.ndarray] | None = None
    geometries: dict = dataclasses.field(default_factory=dict)

    def variants(self) -> dict[str, LayerSpec]:
        """This spec (named "spec") and one per geometry, by name."""
        changed = {name: dataclasses.replace(self, geometries={}, **c) for name, c in self.geometries.items()}
        return {"spec": self, **changed}

    def layer(self, device, dtype=np.float64) -> Layer:
        """A fresh layer (the same one every time for the same arguments)."""
        layer = self.make(device=device, dtype=dtype)
        if self.random_params:
            rng = np.random.default_rng(7)
            for value in layer.params.values():
                value[...] = layer.device.array(rng.standard_normal(value.shape), dtype=layer.dtype)
        return layer

    def input(self, shape: tuple | None = None, seed: int = 1) -> np.ndarray:
        """A float64 host input of ``shape`` (default: ``input_shape``)."""
        return np.asarray(self.make_input(tuple(shape or self.input_shape), np.random.default_rng(seed)))

    def output_gradient(self, layer: Layer, x: np.ndarray, seed: int = 2) -> np.ndarray:
        """A random dy (host, float64) of the layer's output shape for input ``x``."""
        return np.random.default_rng(seed).standard_normal(layer.output_shape(tuple(x.shape)))


class _GeometryChecks:
    """The checks that run on every geometry of the spec, for layers and losses alike."""

    spec: LayerSpec

    def pytest_generate_tests(self, metafunc):
        """pytest calls it for each test of the class: ``geometry`` takes the names of ``spec.variants()``."""
        if "geometry" in metafunc.fixturenames:
            metafunc.parametrize("geometry", list(self.spec.variants()))

    def _run(self, spec: LayerSpec, device, dtype) -> Run:
        """One forward and backward of ``spec``'s layer and input on ``device``."""
        raise NotImplementedError

    def _reference(self, spec: LayerSpec) -> np.ndarray:
        """``spec.reference`` for the spec's input."""
        raise NotImplementedError

    @pytest.mark.parametrize("device", DEVICES)
    def test_forward_matches_the_reference(self, device, geometry):
        spec = self.spec.variants()[geometry]
        if spec.reference is None:
            pytest.skip("the spec has no reference forward")
        y = self._run(spec, device_or_skip(device), np.float64).y
        expected = self._reference(spec)
        np.testing.assert_allclose(y, expected, rtol=REFERENCE_TOLERANCE, atol=REFERENCE_TOLERANCE)

    @pytest.mark.parametrize("dtype", FLOAT_DTYPES)
    @pytest.mark.parametrize("device", KERNEL_DEVICES)
    def test_kernels_match_numpy(self, device, dtype):
        self._assert_kernels_match_numpy(self.spec, device_or_skip(device), dtype)

    @pytest.mark.sim
    def test_under_every_simulator_check(self, geometry):
        """Memcheck, racecheck, initcheck, synccheck: a report is an error; an array that a kernel left
        partly unwritten is one too, when it is copied to the host (initcheck)."""
        spec = self.spec.variants()[geometry]
        self._assert_kernels_match_numpy(spec, checked_sim_device(), np.float32)

    def _assert_kernels_match_numpy(self, spec: LayerSpec, device, dtype) -> None:
        expected, got = self._run(spec, "cpu", dtype).arrays(), self._run(spec, device, dtype).arrays()
        tol = spec.tolerance[np.dtype(dtype)]
        for name, value in expected.items():
            assert got[name].dtype == dtype, name
            np.testing.assert_allclose(got[name], value, rtol=tol, atol=tol, err_msg=name)


class LayerContract(_GeometryChecks):
    """Subclass it as ``Test<Layer>`` with a class attribute ``spec = LayerSpec(...)``: pytest collects the
    checks below (see the module docstring) for that layer."""

    def _run(self, spec, device, dtype):
        layer = spec.layer(device, dtype)
        x = spec.input()
        return forward_backward(layer, x, spec.output_gradient(layer, x))

    def _reference(self, spec):
        return spec.reference(spec.layer("cpu", np.float64), spec.input())

    # --- gradients ------------------------------------------------------------------------------------
    @pytest.mark.parametrize("device", DEVICES)
    def test_gradients(self, device):
        layer = self.spec.layer(device_or_skip(device))
        errors = check_layer(layer, self.spec.input())
        assert set(errors) == {"x", *layer.params}
        assert max(errors.values()) < TOLERANCE, errors

    @pytest.mark.parametrize("device", DEVICES)
    def test_gradients_in_evaluation(self, device):
        layer = self.spec.layer(device_or_skip(device))
        errors = check_layer(layer, self.spec.input(), training=False)
        assert max(errors.values()) < TOLERANCE, errors

    # --- kernels ----------------------------------------------------------------------------------------
    @pytest.mark.parametrize("device", KERNEL_DEVICES)
    def test_kernels_copy_nothing(self, device):
        layer = self.spec.layer(device_or_skip(device))
        dev, x = layer.device, self.spec.input()
        x_dev, dy_dev = dev.array(x), dev.array(self.spec.output_gradient(layer, x))
        before = dict(dev.transfers)
        layer.forward(x_dev)
        layer.backward(dy_dev)
        assert dict(dev.transfers) == before, "forward or backward copied between host and device"

    # --- the backward cache -------------------------------------------------------------------------------
    @pytest.mark.parametrize("device", DEVICES)
    def test_backward_needs_a_kept_forward(self, device):
        layer = self.spec.layer(device_or_skip(device))
        dev, x = layer.device, self.spec.input()
        dy = dev.array(self.spec.output_gradient(layer, x))
        refused = (
            rf"{type(layer).__name__}\.backward needs a forward with training=True or keep_for_backward=True"
        )
        with pytest.raises(RuntimeError, match=refused):
            layer.backward(dy)  # no forward yet
        layer.forward(dev.array(x), training=False)
        with pytest.raises(RuntimeError, match=refused):
            layer.backward(dy)  # an evaluation forward keeps nothing
        layer.forward(dev.array(x), training=False, keep_for_backward=True)
        assert layer.backward(dy).shape == x.shape

    # --- the boundary ---------------------------------------------------------------------------------------
    @pytest.mark.parametrize("device", DEVICES)
    def test_bad_inputs_are_named(self, device):
        layer = self.spec.layer(device_or_skip(device), np.float32)
        dev, x = layer.device, self.spec.input()
        name = type(layer).__name__
        with pytest.raises(TypeError, match=rf"{name}: x must be an array on device '{dev.name}'.*got list"):
            layer.forward(x.tolist())
        with pytest.raises(ValueError, match=rf"{name}: x must have dtype float32, got float64"):
            layer.forward(dev.array(x))
        for shape in self.spec.bad_shapes:
            shape_text = str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")
            with pytest.raises(ValueError, match=rf"{name}.*{shape_text}"):
                layer.forward(dev.array(np.zeros(shape), dtype=np.float32))
        y = layer.forward(dev.array(x, dtype=np.float32))
        wrong_dy = dev.zeros((y.shape[0] + 1, *y.shape[1:]), np.float32)
        with pytest.raises(ValueError, match=rf"{name}\.backward: dy must have the output's shape"):
            layer.backward(wrong_dy)

    @pytest.mark.parametrize("device", DEVICES)
    def test_batch_of_one(self, device):
        dev = device_or_skip(device)
        x = self.spec.input()
        dy = self.spec.output_gradient(self.spec.layer("cpu"), x)
        whole = forward_backward(self.spec.layer(dev), x, dy)
        first = forward_backward(self.spec.layer(dev), x[:1], dy[:1])
        tol = self.spec.tolerance[np.dtype(np.float64)]
        np.testing.assert_allclose(first.y, whole.y[:1], rtol=tol, atol=tol)
        np.testing.assert_allclose(first.dx, whole.dx[:1], rtol=tol, atol=tol)

    @pytest.mark.parametrize("dtype", FLOAT_DTYPES)
    @pytest.mark.parametrize("device", DEVICES)
    def test_batch_of_zero(self, device, dtype):
        layer = self.spec.layer(device_or_skip(device), dtype)
        x = np.zeros((0, *self.spec.input_shape[1:]))
        out_shape = layer.output_shape(x.shape)
        run = forward_backward(layer, x, np.zeros(out_shape))
        assert run.y.shape == out_shape and run.y.dtype == dtype
        assert run.dx.shape == x.shape and run.dx.dtype == dtype
        for name, grad in run.grads.items():
            assert grad.shape == layer.params[name].shape and not grad.any(), name

    @pytest.mark.parametrize("device", DEVICES)
    def test_non_contiguous_input(self, device):
        dev = device_or_skip(device)
        x = self.spec.input()
        dy = self.spec.output_gradient(self.spec.layer("cpu"), x)
        expected = forward_backward(self.spec.layer(dev), x, dy)
        # every other element along the last axis of arrays twice as wide: strided views on the device
        x_view, dy_view = (dev.array(np.repeat(a, 2, axis=-1))[..., ::2] for a in (x, dy))
        assert not x_view.flags.c_contiguous
        got = forward_backward(self.spec.layer(dev), x_view, dy_view).arrays()
        for name, value in expected.arrays().items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def labels_for(logits_shape: tuple, seed: int = 3) -> np.ndarray:
    """Random class ids (int64), one per row of logits (N, K)."""
    N, K = logits_shape
    return np.random.default_rng(seed).integers(0, K, size=N)


class LossContract(_GeometryChecks):
    """The contract of a loss (``loss.forward(logits, labels)`` -> the mean loss, ``loss.backward()`` ->
    dL/dlogits): the gradient check, the reference and the all-checks run on every geometry, the kernels
    against NumPy. ``spec.input_shape`` is the logits' (N, K); the labels come from :func:`labels_for`."""

    def _run(self, spec, device, dtype):
        loss = spec.make(device=device, dtype=dtype)
        dev, logits = loss.device, spec.input()
        value = loss.forward(dev.array(logits, dtype=dtype), dev.array(labels_for(logits.shape)))
        return Run(np.array(value, dtype=dtype), dev.to_host(loss.backward()), {})

    def _reference(self, spec):
        logits = spec.input()
        return spec.reference(spec.make(dtype=np.float64), logits, labels_for(logits.shape))

    @pytest.mark.parametrize("device", DEVICES)
    def test_gradients(self, device):
        loss = self.spec.make(device=device_or_skip(device), dtype=np.float64)
        logits = self.spec.input()
        errors = check_loss(loss, logits, labels_for(logits.shape))
        assert max(errors.values()) < TOLERANCE, errors
