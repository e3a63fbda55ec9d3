"""Every CuPy-specific line of scratchnet lives here.

Array creation, host<->device copies, ``cupy.RawModule`` loading and the synchronize call. Everything else
(the layers, the launch helper in ``launch.py``) is written against :class:`scratchnet.device.Device`, so it
runs, and is tested, under the ``sim`` device on machines without a GPU.

CuPy is imported only when the ``gpu`` device is first asked for: ``import scratchnet`` never imports it.
"""

from __future__ import annotations

import numpy as np

from scratchnet.errors import DeviceError

_cupy = None
_HINT = "Use --device cpu (NumPy) or --device sim (the same CUDA kernels, simulated on the CPU) instead."


def cupy():
    """The ``cupy`` module, after checking that it imports and sees a CUDA device."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy as cp
    except ImportError as e:
        raise DeviceError(
            f"device 'gpu' needs CuPy, which is not installed ({e}). "
            "Install it with: pip install 'scratchnet[gpu]' (CuPy 14 for CUDA 12; on a machine without a "
            f"CUDA toolkit, pip install 'cupy-cuda13x[ctk]'). {_HINT}"
        ) from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError, or a missing driver library
        raise DeviceError(
            f"device 'gpu': CuPy is installed but no CUDA GPU is usable ({e}). {_HINT}"
        ) from None
    if count == 0:
        raise DeviceError(f"device 'gpu': CuPy is installed but found no CUDA GPU. {_HINT}")
    _cupy = cp
    return cp


def is_array(x) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def to_device(host: np.ndarray):
    return cupy().asarray(host)


def to_host(x) -> np.ndarray:
    return cupy().asnumpy(x)


def empty(shape, dtype):
    return cupy().empty(shape, dtype=dtype)


def zeros(shape, dtype):
    return cupy().zeros(shape, dtype=dtype)


def load_module(source: str, name_expressions: list[str], filename: str = "<source>"):
    """Compile ``source`` with NVRTC (through CuPy) and return the ``RawModule``."""
    return cupy().RawModule(code=source, options=("-std=c++17",), name_expressions=name_expressions or None)


def synchronize() -> None:
    cupy().cuda.Device().synchronize()
