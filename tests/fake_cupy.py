"""A strict stand-in for the ``cupy`` module: scratchnet's GPU code paths run, and are checked, without a GPU.

Strict means that it refuses what a real GPU refuses, or what would silently cost a real GPU dearly:

* **Device arrays are their own type** (:class:`ndarray`, not an ``np.ndarray`` subclass), holding a host
  buffer that plays the GPU memory. A NumPy array passed to a kernel, to ``matmul`` or into an arithmetic
  expression with a device array or assigned into one (CuPy would copy it silently) is refused, and so is
  an implicit device-to-host conversion (``np.asarray(device_array)``), with CuPy's own message: only
  ``.get()`` and ``cupy.asnumpy`` copy back; a ``float()`` of a device scalar works, as in CuPy, and is
  counted (:attr:`FakeCupy.implicit_transfers`).
* **Devices**: ``cuda.Device(i).use()`` and ``with cuda.Device(i):`` set the current device (per thread, as
  CUDA does); every allocation is counted on the current device (:attr:`FakeCupy.allocations`); an
  arithmetic operand on another device is refused (CuPy's peer-access check), and a kernel reading an
  array of another device fails like an illegal address.
* **Kernels run**: ``RawModule`` compiles the source with the CUDA simulator (:mod:`scratchnet.sim`) and
  a launch runs it on the arrays' host buffers, so results are real.
* **Memory pool**: ``get_default_memory_pool()`` keeps freed bytes cached, as CuPy's does, until
  ``free_all_blocks()``; a device's free memory is its capacity less what the pool holds.
* **NCCL** (``cupy.cuda.nccl``): every ``allReduce`` is checked (the communicator's device, the buffers'
  device, dtype and element count, the stream's device); across MPI ranks it sums over mpi4py. With
  ``nccl=False`` the module has only ``available = False``, as CuPy's has without ``libnccl``.

A test makes any call fail the way CuPy does by naming it in ``fail`` with an exception of CuPy's class
name and message (``fail={"getDeviceCount": CUDARuntimeError("cudaErrorNoDevice: ...")}``).

In a test, :func:`install` puts a fresh fake in ``sys.modules``. For whole processes (the command lines,
``mpiexec`` ranks, ``pytest -m gpu``), ``PYTHONPATH=tests/fake_gpu`` makes ``import cupy`` give the fake
that :func:`from_environment` describes (``tests/fake_gpu/cupy/__init__.py``).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import types
import weakref
from collections import Counter
from pathlib import Path

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin


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


class NcclError(RuntimeError):  # cupy_backends.cuda.libs.nccl
    pass


# CuPy's words when an array would be converted to NumPy implicitly (cupy/_core/core.pyx, __array__).
IMPLICIT_CONVERSION = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
    "explicitly."
)
GiB = 2**30
SHARED_BYTES_PER_BLOCK = 48 * 1024  # without opting in to more


# --- arrays and their memory -------------------------------------------------------------------------------
class _Allocation:
    """One block of device memory: a host buffer that plays it, and the device it lives on."""

    def __init__(self, cp: FakeCupy, host: np.ndarray, device: int):
        self.host, self.device = host, device
        self.address = host.ctypes.data  # the "device pointer" of byte 0
        cp.pool.allocate(self)
        weakref.finalize(self, cp.pool.release, device, host.nbytes, self.address)


class _MemoryPointer:  # cupy.cuda.MemoryPointer: .ptr and .device_id
    def __init__(self, ptr: int, device_id: int):
        self.ptr, self.device_id = ptr, device_id


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 - CuPy's name
    """A device array: a view of one :class:`_Allocation`'s host buffer. Not an ``np.ndarray``."""

    def __init__(self, cp: FakeCupy, view: np.ndarray, allocation: _Allocation):
        self._cp, self._view, self._allocation = cp, view, allocation

    # what CuPy's ndarray has
    shape = property(lambda self: self._view.shape)
    dtype = property(lambda self: self._view.dtype)
    size = property(lambda self: self._view.size)
    ndim = property(lambda self: self._view.ndim)
    nbytes = property(lambda self: self._view.nbytes)
    itemsize = property(lambda self: self._view.itemsize)
    strides = property(lambda self: self._view.strides)
    flags = property(lambda self: self._view.flags)
    device = property(lambda self: self._cp.cuda.Device(self._allocation.device))
    data = property(lambda self: _MemoryPointer(self._view.ctypes.data, self._allocation.device))

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.data.ptr, False), "version": 3}

    def __repr__(self) -> str:
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype}, device={self._allocation.device})"

    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT_CONVERSION)

    def __len__(self) -> int:
        return len(self._view)

    # scalars come back to the host, as in CuPy (a synchronising copy: counted)
    def _scalar(self):
        self._cp.implicit_transfers += 1
        return self._view.item()

    def __float__(self) -> float:
        return float(self._scalar())

    def get(self) -> np.ndarray:
        return self._cp._call("get", lambda: self._view.copy())

    # views share the allocation; anything else is a new allocation on the current device
    def _wrap(self, view: np.ndarray) -> ndarray:
        if np.shares_memory(view, self._allocation.host):
            return ndarray(self._cp, view, self._allocation)
        return self._cp._new(view)

    def __getitem__(self, key):
        return self._wrap(self._view[self._cp._host_key(key)])

    def __setitem__(self, key, value) -> None:
        self._cp._check_current(self, "the array assigned into")
        self._view[self._cp._host_key(key)] = self._cp._host_operand(value)

    def reshape(self, *shape) -> ndarray:
        return self._wrap(self._view.reshape(*shape))

    def copy(self) -> ndarray:
        self._cp._check_current(self, "the array copied")
        return self._cp._new(self._view.copy())

    def astype(self, dtype) -> ndarray:
        self._cp._check_current(self, "the array converted")
        return self._cp._new(self._view.astype(dtype))

    def fill(self, value) -> None:
        self._cp._check_current(self, "the array filled")
        self._view.fill(value)

    # reductions: the trainer's finiteness check takes max - min of every parameter
    def _reduce(self, name, *args, **kwargs):
        self._cp._check_current(self, f"the array of {name}()")
        return self._cp._new(np.asarray(getattr(self._view, name)(*args, **kwargs)))

    def max(self, *args, **kwargs):
        return self._reduce("max", *args, **kwargs)

    def min(self, *args, **kwargs):
        return self._reduce("min", *args, **kwargs)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        """Arithmetic (``a * 2``, ``a += b``, ``np.exp(a)``): on the current device, operands of it only."""
        cp = self._cp
        hosts = [cp._host_operand(x) for x in inputs]
        if out is not None:
            hosts_out = tuple(cp._host_operand(o) for o in out)
            getattr(ufunc, method)(*hosts, out=hosts_out, **kwargs)
            return out[0] if len(out) == 1 else out
        result = getattr(ufunc, method)(*hosts, **kwargs)
        return cp._new(np.asarray(result))


class _Pool:
    """CuPy's memory pool, per device: arrays in use, and freed blocks it keeps until free_all_blocks()."""

    def __init__(self, cp: FakeCupy):
        self.cp = cp
        self.used, self.cached = Counter(), Counter()  # bytes, by device
        self.live: dict[int, weakref.ref] = {}  # allocation address -> allocation (for NCCL's pointers)

    def allocate(self, allocation: _Allocation) -> None:
        device, nbytes = allocation.device, allocation.host.nbytes
        if nbytes > self.cp.capacity - self.used[device]:  # CuPy frees its cached blocks before giving up
            raise OutOfMemoryError(f"Out of memory allocating {nbytes:,} bytes (allocated so far: ...)")
        reused = min(nbytes, self.cached[device])  # a freed block of the pool is handed out again
        self.cached[device] -= reused
        self.used[device] += nbytes
        self.live[allocation.address] = weakref.ref(allocation)

    def release(self, device: int, nbytes: int, address: int) -> None:
        self.used[device] -= nbytes
        self.cached[device] += nbytes
        self.live.pop(address, None)

    # what CuPy's MemoryPool has (for the current device)
    def used_bytes(self) -> int:
        return self.used[self.cp.current_device()]

    def total_bytes(self) -> int:
        device = self.cp.current_device()
        return self.used[device] + self.cached[device]

    def free_all_blocks(self) -> None:
        self.cached[self.cp.current_device()] = 0

    def find(self, ptr: int) -> tuple[_Allocation, int]:
        """The live allocation that holds device pointer ``ptr``, and the offset of ``ptr`` in it."""
        for address, ref in self.live.items():
            allocation = ref()
            if allocation is not None and address <= ptr < address + allocation.host.nbytes:
                return allocation, ptr - address
        raise CUDARuntimeError(f"cudaErrorInvalidValue: pointer {ptr:#x} is not device memory")


# --- the module -------------------------------------------------------------------------------------------
class FakeCupy(types.ModuleType):
    """``import cupy``. ``devices`` GPUs of ``capacity`` bytes; ``fail`` maps a call name ("getDeviceCount",
    "RawModule", "get_function", "launch", "empty", "asarray", "matmul", "synchronize", "nvrtc", ...) to the
    exception it raises; ``driver``/``runtime`` are CUDA versions (13000), ``nvrtc`` NVRTC's (13, 0),
    ``compute_capability`` the GPUs' ("75"), ``nccl`` whether NCCL loads."""

    ndarray = ndarray

    def __init__(
        self,
        fail: dict | None = None,
        devices: int = 1,
        *,
        capacity: int = 16 * GiB,
        driver: int = 13000,
        runtime: int = 13000,
        nvrtc: tuple[int, int] = (13, 0),
        compute_capability: str = "75",
        nccl: bool = True,
    ):
        super().__init__("cupy")
        self.fail = dict(fail or {})
        self.devices, self.capacity, self.compute_capability = devices, capacity, compute_capability
        self.launches: list[tuple] = []  # (kernel name, grid, block), in order
        self.log: list[str] = []  # launches and event records, in order
        self.elapsed_ms: list[float] = []  # what get_elapsed_time returns, one value per call (then 1.0)
        self.events_done: list[bool] = []  # what Event.done returns, one value per query (then False)
        self.module_options: list[tuple] = []  # the compiler options of each RawModule, in order
        self.allocations: Counter = Counter()  # allocations made, by device
        self.implicit_transfers = 0  # device scalars read back by float()/int()/bool()/item()
        self.__version__ = "14.2.0"
        self._thread = threading.local()  # the current device, per thread as in CUDA
        self.pool = _Pool(self)
        self.cuda = _Cuda(self, driver, runtime, nvrtc, nccl)

    def _call(self, name, action):
        if name in self.fail:
            raise self.fail[name]
        return action()

    # the current device
    def current_device(self) -> int:
        return getattr(self._thread, "device", 0)

    def _set_current(self, device: int) -> None:
        self._thread.device = device

    def _check_current(self, array: ndarray, what: str) -> None:
        """CuPy refuses an operand on another device than the current one (no peer access assumed)."""
        current = self.current_device()
        if array._allocation.device != current:
            raise ValueError(
                f"The device where the array resides ({array._allocation.device}) is different from the "
                f"current device ({current}). Peer access is unavailable between these devices. ({what})"
            )

    def _host_operand(self, x):
        """The host buffer behind a device operand; scalars pass; a host array is refused."""
        if isinstance(x, ndarray):
            self._check_current(x, "an operand")
            return x._view
        if isinstance(x, np.ndarray) and x.ndim > 0:
            raise TypeError(f"Unsupported type {type(x)} (a host array where a device array is needed)")
        return x

    def _host_key(self, key):
        if isinstance(key, tuple):
            return tuple(self._host_operand(k) for k in key)
        return self._host_operand(key)

    def _new(self, host: np.ndarray) -> ndarray:
        """A new allocation on the current device holding (a C-contiguous copy of) ``host``."""
        device = self.current_device()
        host = np.ascontiguousarray(host)
        if host.base is not None or not host.flags.owndata:
            host = host.copy()
        allocation = _Allocation(self, host, device)
        self.allocations[device] += 1
        return ndarray(self, host, allocation)

    # arrays
    def asarray(self, a, dtype=None):
        if isinstance(a, ndarray):
            if a._allocation.device == self.current_device() and dtype in (None, a.dtype):
                return a
            return self._new(a._view.astype(dtype or a.dtype))  # a copy to the current device
        return self._call("asarray", lambda: self._new(np.array(a, dtype=dtype, copy=True)))

    def asnumpy(self, a) -> np.ndarray:
        if not isinstance(a, ndarray):
            return np.asarray(a)
        return a.get()

    def empty(self, shape, dtype=float):
        return self._call("empty", lambda: self._new(np.empty(shape, dtype)))

    def zeros(self, shape, dtype=float):
        return self._call("zeros", lambda: self._new(np.zeros(shape, dtype)))

    def empty_like(self, a):
        return self.empty(a.shape, a.dtype)

    def copyto(self, dst, src):
        self.log.append("copy")
        self._check_current(dst, "copyto's destination")
        np.copyto(dst._view, self._host_operand(src))

    def matmul(self, a, b, out=None):
        def product():
            result = np.matmul(self._host_operand(a), self._host_operand(b))
            if out is None:
                return self._new(result)
            out[...] = self._new(result)
            return out

        return self._call("matmul", product)

    def get_default_memory_pool(self) -> _Pool:
        return self.pool

    def RawModule(self, code, options=(), name_expressions=None):  # noqa: N802 - CuPy's name
        self.module_options.append(tuple(options))
        return self._call("RawModule", lambda: _Module(self, code, name_expressions or ()))

    # processes
    def write_report(self, path: Path) -> None:
        """This process's allocations by device, as JSON (read by tests of processes)."""
        path.write_text(json.dumps({str(k): v for k, v in self.allocations.items()}))


class _Cuda(types.ModuleType):
    """``cupy.cuda``: devices, runtime, NVRTC, events, streams and ``nccl``."""

    def __init__(self, cp: FakeCupy, driver: int, runtime: int, nvrtc: tuple[int, int], nccl: bool):
        super().__init__("cupy.cuda")
        self.cp = cp
        self.runtime = types.SimpleNamespace(
            getDeviceCount=lambda: cp._call("getDeviceCount", lambda: cp.devices),
            driverGetVersion=lambda: driver,
            runtimeGetVersion=lambda: runtime,
            getDeviceProperties=lambda i: {"name": b"Fake GPU"},
            CUDARuntimeError=CUDARuntimeError,
        )
        self.nvrtc = types.SimpleNamespace(getVersion=lambda: cp._call("nvrtc", lambda: nvrtc))
        self.nccl = _Nccl(cp) if nccl else _NcclMissing()
        self.Device = lambda device=None: _Device(cp, device)

    def Event(self):  # noqa: N802 - CuPy's name
        return _Event(self.cp)

    def get_elapsed_time(self, start, stop) -> float:
        return self.cp.elapsed_ms.pop(0) if self.cp.elapsed_ms else 1.0

    def get_current_stream(self):
        return types.SimpleNamespace(ptr=0, device_id=self.cp.current_device())  # the null stream


class _Device:
    """``cupy.cuda.Device(i)``: ``use()``, or ``with`` for a block; ``Device()`` is the current one."""

    def __init__(self, cp: FakeCupy, device: int | None = None):
        self.cp = cp
        self.id = cp.current_device() if device is None else int(device)
        self.compute_capability = cp.compute_capability
        self.attributes = {"L2CacheSize": 4 * 2**20, "MaxThreadsPerBlock": 1024}
        self._previous: list[int] = []

    def _check(self) -> None:
        if not 0 <= self.id < self.cp.devices:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def use(self) -> None:
        self._check()
        self.cp._set_current(self.id)

    def __enter__(self):
        self._previous.append(self.cp.current_device())
        self.use()
        return self

    def __exit__(self, *exc) -> None:
        self.cp._set_current(self._previous.pop())

    @property
    def mem_info(self) -> tuple[int, int]:
        held = self.cp.pool.used[self.id] + self.cp.pool.cached[self.id]
        return self.cp.capacity - held, self.cp.capacity

    def synchronize(self) -> None:
        self.cp._call("synchronize", lambda: None)


class _Event:
    def __init__(self, cp: FakeCupy):
        self.cp = cp

    def record(self):
        self.cp.log.append("record")

    def synchronize(self):
        pass

    @property
    def done(self) -> bool:  # cudaEventQuery: False, the work before the event still runs
        return self.cp.events_done.pop(0) if self.cp.events_done else False


# --- kernels, run by the simulator -----------------------------------------------------------------------
class _Module:
    """``cupy.RawModule``: compiled (by the simulator's build) when a kernel is first asked for."""

    def __init__(self, cp: FakeCupy, code: str, name_expressions):
        self.cp, self.code, self.name_expressions = cp, code, list(name_expressions)
        self._sim_module = None

    def get_function(self, name):
        def load():
            if self._sim_module is None:
                from scratchnet import sim

                self._sim_module = sim.load_module(self.code, self.name_expressions)
            return _Kernel(self.cp, name, self._sim_module.get_function(name))

        return self.cp._call("get_function", load)


class _Kernel:
    """``cupy.RawKernel``: launched on the current device, with device arrays of that device only."""

    def __init__(self, cp: FakeCupy, name: str, sim_kernel):
        self.cp, self.name, self.sim_kernel = cp, name, sim_kernel
        self.attributes = {
            "num_regs": 32,
            "max_threads_per_block": 1024,
            "shared_size_bytes": sim_kernel.static_shared_bytes,
        }

    @property
    def shared_size_bytes(self) -> int:
        return self.attributes["shared_size_bytes"]

    def __call__(self, grid, block, args, shared_mem=0):
        def launch():
            if self.shared_size_bytes + shared_mem > SHARED_BYTES_PER_BLOCK:  # the driver's check, unnamed
                raise CUDADriverError("CUDA_ERROR_INVALID_VALUE: invalid argument")
            device = self.cp.current_device()
            hosts = []
            for index, arg in enumerate(args):
                if isinstance(arg, np.ndarray):
                    raise TypeError(f"Unsupported type {type(arg)} (argument {index} is a host array)")
                if isinstance(arg, ndarray):
                    if arg._allocation.device != device:
                        raise CUDADriverError(
                            "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered "
                            f"(argument {index} lives on device {arg._allocation.device}, the kernel runs "
                            f"on device {device})"
                        )
                    arg = arg._view
                hosts.append(arg)
            self.sim_kernel(grid, block, tuple(hosts), shared_mem=shared_mem)
            self.cp.launches.append((self.name, tuple(grid), tuple(block)))

        self.cp._call("launch", launch)
        self.cp.log.append(f"launch {self.name}")


# --- NCCL ---------------------------------------------------------------------------------------------------
class _NcclMissing(types.ModuleType):
    """``cupy.cuda.nccl`` without libnccl: importable, with ``available = False`` and nothing else."""

    available = False

    def __init__(self):
        super().__init__("cupy.cuda.nccl")


class _Nccl(types.ModuleType):
    available = True
    NCCL_SUM = 0  # ncclSum
    NCCL_FLOAT32 = 7  # ncclFloat32
    NCCL_FLOAT64 = 8  # ncclFloat64
    NcclError = NcclError
    DTYPES = {NCCL_FLOAT32: np.dtype(np.float32), NCCL_FLOAT64: np.dtype(np.float64)}

    def __init__(self, cp: FakeCupy):
        super().__init__("cupy.cuda.nccl")
        self.cp = cp

    def get_unique_id(self) -> tuple:
        return tuple(range(128))

    def NcclCommunicator(self, ndev: int, commId, rank: int):  # noqa: N802, N803 - CuPy's names
        return _Communicator(self, ndev, commId, rank)


def _mpi_world():
    """mpi4py's COMM_WORLD when this process is one of several MPI ranks, else None."""
    if not any(int(os.environ.get(v, "1") or 1) > 1 for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


class _Communicator:
    def __init__(self, nccl: _Nccl, ndev: int, comm_id, rank: int):
        self.nccl, self.cp = nccl, nccl.cp
        self.ndev, self.rank = ndev, rank
        self.device = self.cp.current_device()  # NCCL binds a communicator to the current device
        self.mpi = _mpi_world()
        size, mpi_rank = (1, 0) if self.mpi is None else (self.mpi.Get_size(), self.mpi.Get_rank())
        self.cp._call("NcclCommunicator", lambda: None)
        # Outside MPI, one process stands in for rank `rank` of `ndev` (its sums are its own values), and
        # has no rank 0 to send it the unique id.
        if self.mpi is None:
            wrong = not 0 <= rank < ndev
        else:
            wrong = comm_id != nccl.get_unique_id() or (ndev, rank) != (size, mpi_rank)
        if wrong:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: rank {rank} of {ndev} in a world of {size}")
        if self.mpi is not None:  # NCCL refuses two ranks on one GPU of one machine
            devices = self.mpi.allgather(
                (os.uname().nodename, os.environ.get("CUDA_VISIBLE_DEVICES"), self.device)
            )
            if len(set(devices)) < len(devices):
                raise NcclError("NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected")
        self.calls: list[tuple] = []

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int):  # noqa: N802
        cp = self.cp
        cp._call("allReduce", lambda: None)
        if cp.current_device() != self.device and stream == 0:
            raise NcclError(
                f"NCCL_ERROR_INVALID_ARGUMENT: the null stream of device {cp.current_device()}, "
                f"the communicator's is device {self.device}"
            )
        if datatype not in self.nccl.DTYPES or op != self.nccl.NCCL_SUM:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: datatype {datatype}, op {op}")
        dtype = self.nccl.DTYPES[datatype]
        views = []
        for name, ptr in (("sendbuf", sendbuf), ("recvbuf", recvbuf)):
            allocation, offset = cp.pool.find(ptr)
            if allocation.device != self.device:
                raise NcclError(
                    f"NCCL_ERROR_INVALID_ARGUMENT: {name} lives on device {allocation.device}, the "
                    f"communicator on device {self.device}"
                )
            if offset + count * dtype.itemsize > allocation.host.nbytes or allocation.host.dtype != dtype:
                raise NcclError(
                    f"NCCL_ERROR_INVALID_ARGUMENT: {name} holds {allocation.host.dtype}, "
                    f"{allocation.host.nbytes - offset} bytes; asked for {count} of {dtype}"
                )
            views.append(allocation.host.view(np.uint8)[offset : offset + count * dtype.itemsize].view(dtype))
        send, receive = views
        self.calls.append((count, dtype, stream))
        if self.mpi is None:
            receive[...] = send
        else:
            from mpi4py import MPI

            self.mpi.Allreduce(send.copy(), receive, op=MPI.SUM)


# --- installing it ---------------------------------------------------------------------------------------
def _register(modules: dict, fake: FakeCupy, setitem) -> None:
    setitem(modules, "cupy", fake)
    setitem(modules, "cupy.cuda", fake.cuda)
    setitem(modules, "cupy.cuda.nccl", fake.cuda.nccl)


def install(monkeypatch, fail: dict | None = None, devices: int = 1, **options) -> FakeCupy:
    """Make ``import cupy`` give a new FakeCupy for the rest of the test, and forget any CuPy loaded (and any
    ``gpu`` device built on it: ``get_device`` keeps devices for the process, and a later test must not find
    this fake GPU there). ``options``: see :class:`FakeCupy`."""
    from scratchnet import cupy_backend, device

    fake = FakeCupy(fail, devices, **options)
    _register(sys.modules, fake, monkeypatch.setitem)
    monkeypatch.setattr(cupy_backend, "_cupy", None)
    monkeypatch.setattr(device, "_devices", {})
    return fake


# Environment variables of :func:`from_environment`, for processes.
ENVIRONMENT = {
    "FAKE_CUPY_DEVICES": "GPUs of the machine (1)",
    "FAKE_CUPY_NCCL": "0: no libnccl",
    "FAKE_CUPY_DRIVER": "the driver's CUDA version (13000)",
    "FAKE_CUPY_REPORT": "a folder: each process writes its allocations by device to <rank>.json at exit",
}


def from_environment() -> FakeCupy:
    """The fake a process gets from ``import cupy`` under ``PYTHONPATH=tests/fake_gpu`` (see ENVIRONMENT);
    CUDA_VISIBLE_DEVICES, when set, limits the GPUs it sees as CUDA does."""
    env = os.environ
    devices = int(env.get("FAKE_CUPY_DEVICES", "1"))
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        devices = min(devices, len([d for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]))
    fake = FakeCupy(
        devices=devices,
        driver=int(env.get("FAKE_CUPY_DRIVER", "13000")),
        nccl=env.get("FAKE_CUPY_NCCL") != "0",
    )
    _register(sys.modules, fake, dict.__setitem__)
    if env.get("FAKE_CUPY_REPORT"):
        rank = env.get("PMI_RANK", env.get("OMPI_COMM_WORLD_RANK", "0"))
        atexit.register(fake.write_report, Path(env["FAKE_CUPY_REPORT"]) / f"{rank}.json")
    return fake
