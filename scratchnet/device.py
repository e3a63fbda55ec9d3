"""Devices: where arrays live and who does the math.

==========  ===============  ==============================================================
device      arrays           layer math
==========  ===============  ==============================================================
``cpu``     NumPy            NumPy code in ``scratchnet/layers/*.py``
``gpu``     CuPy             the CUDA kernels in ``kernels/*.cu``, compiled by NVRTC (CuPy)
``sim``     NumPy            the same ``.cu`` files and launch code, run by ``scratchnet.sim``
==========  ===============  ==============================================================

Each device is a subclass of :class:`Device` (:class:`CpuDevice`, :class:`GpuDevice`, :class:`SimDevice`)
that says, in one place, how it makes arrays, copies them and compiles kernels; ``Device("gpu")`` builds
the right one. Layers never touch CuPy or the simulator directly. They ask their device for arrays
(:meth:`Device.empty`, :meth:`Device.array`) and for kernels (:meth:`Device.kernel`), and every copy between
host and device goes through :meth:`Device.array` / :meth:`Device.to_host`, which count it in
:attr:`Device.transfers` (so a test on ``sim`` can prove that a training step copies only the batch in and
the loss out). Every kernel launch is counted in :attr:`Device.launches`, by kernel name.
"""

from __future__ import annotations

import functools
import os
from collections import Counter

import numpy as np

from scratchnet import cupy_backend as _cupy
from scratchnet._cuda.launch import Kernel
from scratchnet._cuda.signature import C_NAME_OF_DTYPE
from scratchnet._cuda.sources import kernel_dir
from scratchnet.errors import DeviceError

DEVICE_NAMES = ("cpu", "gpu", "sim")


class Device:
    """One of ``cpu``, ``gpu``, ``sim``. Get the shared one with :func:`get_device`.

    ``Device(name)`` returns an instance of the subclass for ``name``; the subclasses implement the
    array methods, and :meth:`_load_module` on the two that run kernels.
    """

    name: str
    uses_kernels: bool  # True when layer math runs in the CUDA kernels (gpu and sim), False for NumPy (cpu)

    def __new__(cls, name: str | None = None, **options):
        if cls is Device:
            if name not in _DEVICE_CLASSES:
                raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_NAMES)}")
            cls = _DEVICE_CLASSES[name]
        return super().__new__(cls)

    def __init__(self, name: str | None = None):
        if name is not None and name != self.name:
            raise DeviceError(f"{type(self).__name__} is device {self.name!r}, not {name!r}")
        # Host<->device copies made through this device: {"host_to_device": n, "device_to_host": n}.
        self.transfers: Counter = Counter()
        # Kernel launches on this device, by kernel name ("relu_forward<float>": n).
        self.launches: Counter = Counter()

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    # --- arrays -------------------------------------------------------------------------------------
    def is_array(self, x) -> bool:
        """Whether ``x`` is an array that lives on this device."""
        return isinstance(x, np.ndarray)

    def array(self, host, dtype=None):
        """Copy a host array (or anything ``np.asarray`` takes) to this device, C-contiguous."""
        host = np.ascontiguousarray(host, dtype=dtype)
        self.transfers["host_to_device"] += 1
        return self._to_device(host)

    def to_host(self, x) -> np.ndarray:
        """Copy a device array back to a NumPy array (counted on gpu and sim)."""
        self.transfers["device_to_host"] += 1
        return self._to_host(x)

    def scalar(self, x) -> float:
        """A 0-d or one-element device array as a Python float (a device->host copy on gpu and sim)."""
        return float(self.to_host(x).reshape(-1)[0])

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def synchronize(self) -> None:
        """Wait until every queued kernel has finished (a no-op where kernels run synchronously)."""

    def _to_device(self, host: np.ndarray):
        return host.copy()  # a copy, so device memory never aliases the caller's array

    def _to_host(self, x) -> np.ndarray:
        return np.array(x, copy=True)

    # --- kernels ------------------------------------------------------------------------------------
    def kernel(self, filename: str, base_name: str, dtype=None) -> Kernel:
        """The kernel ``base_name`` from ``kernels/<filename>``, ready to launch.

        For a template kernel give ``dtype``: ``kernel("relu.cu", "relu_forward", np.float32)`` is
        ``relu_forward<float>``. The whole file is compiled once per device and cached.
        """
        kernels = self._module(filename)
        name = base_name if dtype is None else f"{base_name}<{_c_name(dtype)}>"
        if name not in kernels:
            raise DeviceError(
                f"kernels/{filename} has no kernel {name!r}; it has: {', '.join(sorted(kernels))}"
            )
        return kernels[name]

    @functools.cache  # noqa: B019 - one compiled module per (device, file) for the process
    def _module(self, filename: str) -> dict[str, Kernel]:
        path = kernel_dir() / filename
        if not path.is_file():
            raise DeviceError(f"no CUDA source {path}")
        return load_kernels(self, path.read_text(), functools.partial(self._load_module, filename=str(path)))

    def _load_module(self, source: str, name_expressions: list[str], filename: str):
        """Compile ``source`` and return an object whose ``get_function(name)`` gives a launchable kernel."""
        raise NotImplementedError


class CpuDevice(Device):
    """NumPy arrays; the layers run their NumPy code. Nothing is copied, nothing is counted."""

    name = "cpu"
    uses_kernels = False

    def array(self, host, dtype=None):
        return np.ascontiguousarray(host, dtype=dtype)

    def to_host(self, x) -> np.ndarray:
        return np.asarray(x)

    def kernel(self, filename: str, base_name: str, dtype=None) -> Kernel:
        raise DeviceError("the cpu device runs NumPy code, not kernels; use device 'gpu' or 'sim'")


class GpuDevice(Device):
    """CuPy arrays on a CUDA GPU; kernels compiled by NVRTC through :mod:`scratchnet.cupy_backend`."""

    name = "gpu"
    uses_kernels = True

    def __init__(self, name: str | None = None):
        super().__init__(name)
        _cupy.cupy()  # fail now, with a clear message, if CuPy or the GPU is missing
        _require_host_compiler()  # and the host C++ compiler, which reads the kernel signatures

    def is_array(self, x) -> bool:
        return _cupy.is_array(x)

    def empty(self, shape, dtype):
        return _cupy.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return _cupy.zeros(shape, dtype)

    def synchronize(self) -> None:
        _cupy.synchronize()

    def _to_device(self, host: np.ndarray):
        return _cupy.to_device(host)

    def _to_host(self, x) -> np.ndarray:
        return _cupy.to_host(x)

    def _load_module(self, source: str, name_expressions: list[str], filename: str):
        return _cupy.load_module(source, name_expressions, filename=filename)


def _require_host_compiler() -> None:
    """The ``gpu`` device reads each kernel's C signature with the host C++ compiler (see
    :mod:`scratchnet._cuda.signature`): without one, say that, and how to install it."""
    from scratchnet.sim.compiler import find_compiler

    try:
        find_compiler()
    except DeviceError:
        if os.environ.get("CXX"):
            raise  # the message names $CXX
        raise DeviceError(
            "device 'gpu' reads each kernel's C signature with the host C++ compiler (g++ or clang++), and "
            "found none on the PATH. Install one: sudo apt-get install g++ (Debian, Ubuntu), sudo dnf "
            "install gcc-c++ (Fedora), or xcode-select --install (macOS)."
        ) from None


class SimDevice(Device):
    """NumPy arrays; kernels compiled by the host C++ compiler and run by :mod:`scratchnet.sim`.

    ``checks`` are the simulator's checks for every kernel of this device (``"memcheck,initcheck"``,
    ``"all"``; see :mod:`scratchnet.sim.checks`), read from ``SCRATCHNET_SIM_CHECKS`` when ``None``. With
    initcheck, :meth:`empty` returns arrays from ``sim.empty``: poisoned, and tracked so that a kernel
    reading a byte of one that no kernel wrote is reported, and so is :meth:`to_host` copying such a byte
    back (the poison would reach the host as NaN); without it, plain ``np.empty`` (no cost).
    """

    name = "sim"
    uses_kernels = True

    def __init__(self, name: str | None = None, checks: str | None = None):
        super().__init__(name)
        from scratchnet import sim

        sim.check_supported()
        self.checks = sim.parse_checks(checks)

    def empty(self, shape, dtype):
        if "initcheck" in self.checks:
            from scratchnet import sim

            return sim.empty(shape, dtype)
        return np.empty(shape, dtype=dtype)

    def _to_host(self, x) -> np.ndarray:
        if "initcheck" in self.checks:
            from scratchnet import sim
            from scratchnet.sim.memory import first_unwritten

            offset = first_unwritten(x)
            if offset is not None:
                raise sim.InitcheckError(
                    f"to_host: the {x.dtype} array of shape {x.shape} holds uninitialised memory: byte "
                    f"{offset} (element {offset // x.itemsize}) was allocated by empty() and nothing has "
                    "written it",
                    buffer="to_host",
                    offset=offset,
                    access="read",
                )
        return super()._to_host(x)

    def _load_module(self, source: str, name_expressions: list[str], filename: str):
        from scratchnet import sim

        return sim.load_module(source, name_expressions, filename=filename, checks=self.checks)


_DEVICE_CLASSES: dict[str, type[Device]] = {cls.name: cls for cls in (CpuDevice, GpuDevice, SimDevice)}


def _c_name(dtype) -> str:
    try:
        return C_NAME_OF_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise DeviceError(f"kernels are compiled for float32 and float64, not {np.dtype(dtype)}") from None


def load_kernels(device: Device, source: str, loader) -> dict[str, Kernel]:
    """Compile ``source`` once with ``loader(source, name_expressions)`` and wrap each kernel.

    The signatures come from the host C++ compiler through the simulator's build, for ``gpu`` too (see
    :mod:`scratchnet._cuda.signature`); imported here, not in the toolchain, which builds on no simulator.
    """
    from scratchnet.sim import parse_kernels

    signatures = parse_kernels(source)
    name_expressions = [s.name for s in signatures.values() if not s.extern_c]
    module = loader(source, name_expressions)
    return {name: Kernel(device, module.get_function(name), sig) for name, sig in signatures.items()}


_devices: dict[str, Device] = {}


def get_device(device: str | Device = "cpu") -> Device:
    """The (shared) :class:`Device` called ``device``; a ``Device`` is returned as it is."""
    if isinstance(device, Device):
        return device
    if device not in _devices:
        _devices[device] = Device(device)
    return _devices[device]
