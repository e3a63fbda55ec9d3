"""A stand-in for the ``cupy`` module, enough for scratchnet's GPU code paths to run without a GPU.

Arrays are NumPy arrays; kernels record their launches. A test makes any call fail the way CuPy does by
naming it in ``fail`` with an exception of CuPy's class name and message (see ``raise_like``).
"""

from __future__ import annotations

import sys
import types

import numpy as np


class CUDARuntimeError(RuntimeError):  # cupy_backends.cuda.api.runtime
    pass


class CUDADriverError(RuntimeError):  # cupy_backends.cuda.api.driver
    pass


class CompileException(Exception):  # cupy.cuda.compiler
    pass


class OutOfMemoryError(MemoryError):  # cupy.cuda.memory
    pass


class DynamicLibNotFoundError(RuntimeError):  # cuda.pathfinder
    pass


class FakeCupy(types.ModuleType):
    """``fail`` maps a call name ("getDeviceCount", "RawModule", "get_function", "launch", "empty",
    "matmul", ...) to the exception it raises."""

    ndarray = np.ndarray

    def __init__(self, fail: dict | None = None, devices: int = 1):
        super().__init__("cupy")
        self.fail = dict(fail or {})
        self.launches: list[tuple] = []
        self.log: list[str] = []  # launches and event records, in order
        self.elapsed_ms: list[float] = []  # what get_elapsed_time returns, one value per call (then 1.0)
        self.events_done: list[bool] = []  # what Event.done returns, one value per query (then False)
        self.module_options: list[tuple] = []  # the compiler options of each RawModule, in order
        self.__version__ = "14.2.0"
        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: self._call("getDeviceCount", lambda: devices),
            driverGetVersion=lambda: 13000,
            runtimeGetVersion=lambda: 13000,
            getDeviceProperties=lambda i: {"name": b"Fake GPU"},
        )
        device = types.SimpleNamespace(
            id=0,
            compute_capability="75",
            mem_info=(15 * 2**30, 16 * 2**30),
            attributes={"L2CacheSize": 4 * 2**20, "MaxThreadsPerBlock": 1024},
            synchronize=lambda: self._call("synchronize", lambda: None),
        )
        self.cuda = types.SimpleNamespace(
            runtime=runtime,
            Device=lambda *a: device,
            nvrtc=types.SimpleNamespace(getVersion=lambda: self._call("nvrtc", lambda: (13, 0))),
            Event=lambda: _FakeEvent(self),
            get_elapsed_time=lambda start, stop: self.elapsed_ms.pop(0) if self.elapsed_ms else 1.0,
        )

    def _call(self, name, action):
        if name in self.fail:
            raise self.fail[name]
        return action()

    def asarray(self, host):
        return self._call("asarray", lambda: np.array(host, copy=True))

    def asnumpy(self, x):
        return np.array(x, copy=True)

    def empty(self, shape, dtype):
        return self._call("empty", lambda: np.empty(shape, dtype))

    def zeros(self, shape, dtype):
        return self._call("zeros", lambda: np.zeros(shape, dtype))

    def get_default_memory_pool(self):
        return types.SimpleNamespace(used_bytes=lambda: 0)

    def empty_like(self, x):
        return np.empty_like(x)

    def copyto(self, dst, src):
        self.log.append("copy")
        np.copyto(dst, src)

    def matmul(self, a, b, out=None):
        return self._call("matmul", lambda: np.matmul(a, b, out=out))

    def RawModule(self, code, options=(), name_expressions=None):  # noqa: N802 - CuPy's name
        self.module_options.append(tuple(options))
        return self._call("RawModule", lambda: _FakeModule(self))


class _FakeEvent:
    def __init__(self, cp: FakeCupy):
        self.cp = cp

    def record(self):
        self.cp.log.append("record")

    def synchronize(self):
        pass

    @property
    def done(self) -> bool:  # cudaEventQuery: False, the work before the event still runs
        return self.cp.events_done.pop(0) if self.cp.events_done else False


class _FakeModule:
    def __init__(self, cp: FakeCupy):
        self.cp = cp

    def get_function(self, name):
        return self.cp._call("get_function", lambda: _FakeKernel(self.cp, name))


class _FakeKernel:
    def __init__(self, cp: FakeCupy, name: str):
        self.cp, self.name = cp, name
        self.attributes = {"num_regs": 32, "max_threads_per_block": 1024, "shared_size_bytes": 0}

    def __call__(self, grid, block, args, shared_mem=0):
        self.cp._call("launch", lambda: self.cp.launches.append((self.name, grid, block)))
        self.cp.log.append(f"launch {self.name}")


def install(monkeypatch, fail: dict | None = None, devices: int = 1) -> FakeCupy:
    """Make ``import cupy`` give a new FakeCupy for the rest of the test, and forget any CuPy loaded (and any
    ``gpu`` device built on it: ``get_device`` keeps devices for the process, and a later test must not find
    this fake GPU there)."""
    from scratchnet import cupy_backend, device

    fake = FakeCupy(fail, devices)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cupy_backend, "_cupy", None)
    monkeypatch.setattr(device, "_devices", {})
    return fake
