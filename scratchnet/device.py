"""Devices: where arrays live and who does the math.

==========  ===============  ==============================================================
device      arrays           layer math
==========  ===============  ==============================================================
``cpu``     NumPy            NumPy code in ``scratchnet/layers/*.py``
``gpu``     CuPy             the CUDA kernels in ``kernels/*.cu``, compiled by NVRTC (CuPy)
``sim``     NumPy            the same ``.cu`` files and launch code, run by ``scratchnet.sim``
==========  ===============  ==============================================================

Layers never touch CuPy or the simulator directly. They ask their device for arrays
(:meth:`Device.empty`, :meth:`Device.array`) and for kernels (:meth:`Device.kernel`), and every copy between
host and device goes through :meth:`Device.array` / :meth:`Device.to_host`, which count it in
:attr:`Device.transfers` (so a test on ``sim`` can prove that a training step copies only the batch in and
the loss out).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np

from scratchnet._cuda import cupy_backend as _cupy
from scratchnet._cuda.launch import Kernel, load_kernels
from scratchnet._cuda.signature import C_NAME_OF_DTYPE
from scratchnet.errors import DeviceError

DEVICE_NAMES = ("cpu", "gpu", "sim")


def kernel_dir() -> Path:
    """The folder holding the ``.cu`` sources: inside the installed package, or ``kernels/`` in a checkout."""
    installed = Path(__file__).resolve().parent / "kernels"
    if installed.is_dir():
        return installed
    checkout = Path(__file__).resolve().parent.parent / "kernels"
    if checkout.is_dir():
        return checkout
    raise DeviceError(f"cannot find the CUDA sources: looked in {installed} and {checkout}")


class Device:
    """One of ``cpu``, ``gpu``, ``sim``. Get it with :func:`get_device`."""

    def __init__(self, name: str):
        if name not in DEVICE_NAMES:
            raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_NAMES)}")
        self.name = name
        # True when layer math runs in the CUDA kernels (gpu and sim), False for the NumPy code (cpu).
        self.uses_kernels = name != "cpu"
        # Host<->device copies made through this device: {"host_to_device": n, "device_to_host": n}.
        self.transfers: Counter = Counter()
        if name == "gpu":
            _cupy.cupy()  # fail now, with a clear message, if CuPy or the GPU is missing
        elif name == "sim":
            from scratchnet import sim

            sim.check_supported()

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    # --- arrays -------------------------------------------------------------------------------------
    def is_array(self, x) -> bool:
        """Whether ``x`` is an array that lives on this device."""
        if self.name == "gpu":
            return _cupy.is_array(x)
        return isinstance(x, np.ndarray)

    def array(self, host, dtype=None):
        """Copy a host array (or anything ``np.asarray`` takes) to this device, C-contiguous."""
        host = np.ascontiguousarray(host, dtype=dtype)
        if self.name == "cpu":
            return host
        self.transfers["host_to_device"] += 1
        if self.name == "gpu":
            return _cupy.to_device(host)
        return host.copy()  # sim: a copy, so device memory never aliases the caller's array

    def to_host(self, x) -> np.ndarray:
        """Copy a device array back to a NumPy array (counted on gpu and sim)."""
        if self.name == "cpu":
            return np.asarray(x)
        self.transfers["device_to_host"] += 1
        if self.name == "gpu":
            return _cupy.to_host(x)
        return np.array(x, copy=True)

    def scalar(self, x) -> float:
        """A 0-d or one-element device array as a Python float (a device->host copy on gpu and sim)."""
        return float(self.to_host(x).reshape(-1)[0])

    def empty(self, shape, dtype):
        if self.name == "gpu":
            return _cupy.empty(shape, dtype)
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        if self.name == "gpu":
            return _cupy.zeros(shape, dtype)
        return np.zeros(shape, dtype=dtype)

    def synchronize(self) -> None:
        if self.name == "gpu":
            _cupy.synchronize()

    # --- kernels ------------------------------------------------------------------------------------
    def kernel(self, filename: str, base_name: str, dtype=None) -> Kernel:
        """The kernel ``base_name`` from ``kernels/<filename>``, ready to launch.

        For a template kernel give ``dtype``: ``kernel("relu.cu", "relu_forward", np.float32)`` is
        ``relu_forward<float>``. The whole file is compiled once per device and cached.
        """
        if not self.uses_kernels:
            raise DeviceError("the cpu device runs NumPy code, not kernels; use device 'gpu' or 'sim'")
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
        if self.name == "gpu":
            loader = _cupy.load_module
        else:
            from scratchnet import sim

            loader = functools.partial(sim.load_module, filename=str(path))
        return load_kernels(self, path.read_text(), loader)


def _c_name(dtype) -> str:
    try:
        return C_NAME_OF_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise DeviceError(f"kernels are compiled for float32 and float64, not {np.dtype(dtype)}") from None


_devices: dict[str, Device] = {}


def get_device(device: str | Device = "cpu") -> Device:
    """The (shared) :class:`Device` called ``device``; a ``Device`` is returned as it is."""
    if isinstance(device, Device):
        return device
    if device not in _devices:
        _devices[device] = Device(device)
    return _devices[device]
