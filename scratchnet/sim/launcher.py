"""Launch simulated kernels the way CuPy launches real ones, checking what CuPy does not.

``kernel(grid, block, args, shared_mem=0)`` here

1. converts each argument as CuPy would (Python ``int`` -> ``long long``, ``float`` -> ``double``, ``bool``
   -> ``bool``, a NumPy scalar by its own dtype, an array -> a pointer to its data) and refuses the launch
   when that does not match the kernel's compiled C signature: on a GPU the kernel would read garbage;
2. enforces CUDA's limits: 1024 threads per block, block sizes (1024, 1024, 64), grid sizes
   (2^31 - 1, 65535, 65535), 48 KiB of shared memory (static plus dynamic) per block;
3. has every array copied into a buffer with guard zones (4 KiB of canary bytes) on both sides, runs the
   kernel on the copies, and checks the guards (runtime.cpp): a write past either end of an array is
   reported with the argument's name. Results are then copied back; arrays passed as ``const T*`` must
   come back unchanged;
4. runs the blocks on :func:`simulator_threads` OS threads (a checked or debug build: one);
5. keeps the written maps of tracked allocations (:mod:`.memory`) up to date: a launch checked for
   initcheck hands each array argument that lies in one to the runtime, which marks the bytes the kernel
   stores and reports loads of bytes never written; any other launch cannot be observed byte by byte, so
   afterwards every non-``const`` array argument counts as written in full.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from collections.abc import Callable

import numpy as np

from scratchnet._cuda.limits import check_launch, dim3
from scratchnet._cuda.signature import C_NAME_OF_KIND, Param
from scratchnet.errors import KernelLaunchError
from scratchnet.sim import memory
from scratchnet.sim.checks import (
    INSTRUMENTED,
    WARNINGS,
    KernelCrashError,
    MemcheckError,
    Report,
    check_bits,
    launch_error,
)
from scratchnet.sim.compiler import Build
from scratchnet.sim.record import EVENT, AccessRecord

# A cooperative launch keeps every thread of the grid alive at once (each on its own fiber stack): at most
# this many. A GPU fits as many blocks as its SMs hold at once (an A100: 108 SMs of 2048 threads).
MAX_COOPERATIVE_THREADS = 16384
COOPERATIVE_LAUNCH = 32  # kCooperativeLaunch in runtime.cpp
MAX_SIMULATED_BLOCKS = 2**26  # more would take hours to simulate, and the block order needs 8 bytes each

# One launch at a time in the whole process: a module's launch state and its thread pool serve one launch.
_launch_lock = threading.Lock()


def _c_name(dtype: np.dtype) -> str:
    return C_NAME_OF_KIND.get(f"{dtype.kind}{dtype.itemsize}", str(dtype))


# --- the launch seed ---------------------------------------------------------------------------------------
def _seed_from_environment() -> int:
    text = os.environ.get("SCRATCHNET_SIM_SEED", "0")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"SCRATCHNET_SIM_SEED must be an integer, got {text!r}") from None


_seed: dict[str, int | None] = {"base": None, "launches": 0}  # base None: read the environment first


def set_seed(seed: int) -> None:
    """Seed the order in which blocks and threads run. Launch k after this call uses a seed made of
    (``seed``, k), so a run is reproducible while successive launches still see different orders."""
    _seed["base"], _seed["launches"] = int(seed), 0


def _next_launch_seed() -> int:
    if _seed["base"] is None:  # read at the first launch, so that a bad value is an error there
        _seed["base"] = _seed_from_environment()
    _seed["launches"] += 1
    return (_seed["base"] * 0x9E3779B97F4A7C15 + _seed["launches"] * 0xBF58476D1CE4E5B9) % 2**64


# --- the OS threads that run the blocks ----------------------------------------------------------------
def simulator_threads() -> int:
    """How many OS threads run a launch's blocks: ``SCRATCHNET_SIM_THREADS``, else one per CPU core."""
    text = os.environ.get("SCRATCHNET_SIM_THREADS", "").strip()
    if not text:
        return os.cpu_count() or 1
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if not 1 <= threads <= 256:
        raise ValueError(f"SCRATCHNET_SIM_THREADS must be an integer from 1 to 256, got {text!r}")
    return threads


# --- parameters ---------------------------------------------------------------------------------------------
class _Param:
    """One kernel parameter as compiled, with the ctypes type a scalar is passed as."""

    def __init__(self, param: Param):
        self.pointer, self.const, self.name, self.c_type = (
            param.pointer,
            param.const,
            param.name,
            param.c_type,
        )
        self.dtype = param.dtype
        if not self.pointer:
            self.ctypes_type = (
                ctypes.c_char * param.dtype.itemsize
                if param.dtype.kind == "V"
                else (np.ctypeslib.as_ctypes_type(self.dtype))
            )


def _passed_dtype(value) -> np.dtype | None:
    """The dtype CuPy passes ``value`` as, or ``None`` when it cannot pass it."""
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT64
    if isinstance(value, float):
        return _FLOAT64
    if isinstance(value, np.generic):
        return value.dtype
    return None


_BOOL, _INT64, _FLOAT64 = np.dtype(np.bool_), np.dtype(np.int64), np.dtype(np.float64)


def _describe(value) -> str:
    """Words for ``value`` and how CuPy passes it, for messages."""
    if isinstance(value, bool):
        return "a Python bool, which CuPy passes as bool"
    if isinstance(value, int):
        return "a Python int, which CuPy passes as long long"
    if isinstance(value, float):
        return "a Python float, which CuPy passes as double"
    if isinstance(value, np.generic):
        return f"a NumPy {value.dtype} scalar ({_c_name(value.dtype)})"
    return f"a {type(value).__name__}"


# --- arrays -----------------------------------------------------------------------------------------------
class _HostBuffer(ctypes.Structure):
    """A run of host memory holding one or more array arguments (``HostBuffer`` in runtime.cpp)."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("bytes", ctypes.c_ulonglong),
        ("read_only", ctypes.c_int),
        ("names", ctypes.c_char_p),
        ("written", ctypes.c_void_p),  # initcheck: the buffer's flags in a written map (memory.py), or NULL
    ]


def _group_overlapping(arrays: list[tuple[int, _Param, np.ndarray]]):
    """Group the array arguments by overlapping memory, so that an in-place kernel given y = x sees one
    buffer. Returns the buffers and, per argument index, ``(buffer index, byte offset)``."""
    spans = sorted((array.ctypes.data, index, param, array) for index, param, array in arrays)
    groups: list[list] = []  # [start, end, members]
    for start, index, param, array in spans:
        if groups and start < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], start + array.nbytes)
        else:
            groups.append([start, start + array.nbytes, []])
        groups[-1][2].append((start, index, param, array))
    buffers, placement = [], {}
    for number, (start, end, members) in enumerate(groups):
        names = ", ".join(f"'{p.name}' ({p.c_type}, {a.size} elements)" for _, _, p, a in members)
        read_only = all(p.const for _, _, p, _ in members)
        buffers.append(_HostBuffer(start, end - start, read_only, names.encode(), None))
        for address, index, _, _ in members:
            placement[index] = (number, address - start)
    return buffers, placement


def _point_at_written_maps(buffers: list[_HostBuffer]) -> None:
    """Give each buffer that lies in a tracked allocation its flags in the allocation's written map (kept
    alive by the registry as long as the arrays of the launch are)."""
    for buffer in buffers:
        flags = memory.written_map(buffer.data, buffer.bytes)
        if flags is not None:
            buffer.written = flags.ctypes.data


# --- modules and kernels ------------------------------------------------------------------------------------
class SimModule:
    """A compiled ``.cu`` source: ``get_function(name)`` gives a launchable :class:`SimKernel`."""

    def __init__(
        self,
        build: Build,
        checks: frozenset[str] = frozenset(),
        serial: bool = False,
        checked_variant: Callable[[frozenset[str]], SimModule] | None = None,
        cooperative: bool = False,
    ):
        self.build = build
        # The same source built with other checks (load_module passes it): for a launch to run again under
        # memcheck when an unchecked one finds an out-of-bounds write without its thread and line.
        self.checked_variant = checked_variant
        self.cooperative = cooperative  # enable_cooperative_groups: every launch has all its blocks at once
        self.checks = checks  # the checks this module's launches make (checks.py)
        # All blocks on the calling OS thread: a debug build, so that gdb follows one thread (and gdb 13
        # fails an internal assertion on conditional breakpoints while other threads run).
        self.serial = serial
        self.library = ctypes.CDLL(str(build.library))
        # memcheck names static shared arrays from the symbol table; a cooperative launch keeps each block's
        if checks & INSTRUMENTED or cooperative:
            self.library.sim_read_shared_arrays(str(build.library).encode())
        self.library.sim_launch.restype = ctypes.c_int
        self.library.sim_launch.argtypes = [
            ctypes.c_int,  # kernel
            ctypes.POINTER(ctypes.c_void_p),  # args
            ctypes.POINTER(ctypes.c_int),  # arg_buffer
            ctypes.POINTER(ctypes.c_ulonglong),  # arg_offset
            ctypes.c_int,  # arg_count
            ctypes.POINTER(_HostBuffer),  # buffers
            ctypes.c_int,  # buffer_count
            ctypes.POINTER(ctypes.c_uint),  # grid
            ctypes.POINTER(ctypes.c_uint),  # block
            ctypes.c_uint,  # dynamic_shared_bytes
            ctypes.c_ulonglong,  # seed
            ctypes.c_int,  # checks
            ctypes.c_int,  # threads
            ctypes.POINTER(Report),  # report
            ctypes.c_char_p,  # error
            ctypes.c_int,  # error_size
        ]
        self.library.sim_global_variable.restype = ctypes.c_void_p
        self.library.sim_global_variable.argtypes = [
            ctypes.c_char_p,  # path
            ctypes.c_char_p,  # name
            ctypes.POINTER(ctypes.c_ulonglong),  # size
            ctypes.POINTER(ctypes.c_int),  # writable
        ]
        self._kernels: dict[str, SimKernel] = {}
        self.last_record: AccessRecord | None = None  # checks="record": the last launch's (record.py)

    def read_record(self, buffer_names: list[str]) -> AccessRecord:
        """The access record of the launch that just ran (a module loaded with ``checks="record"``)."""
        self.library.sim_record_size.restype = ctypes.c_ulonglong
        self.library.sim_record_barriers.restype = ctypes.c_ulonglong
        events = np.zeros(self.library.sim_record_size(), EVENT)
        self.library.sim_record_copy(ctypes.c_void_p(events.ctypes.data))
        return AccessRecord(events, int(self.library.sim_record_barriers()), buffer_names)

    def emit_warnings(self, kernel: str) -> None:
        """The last launch's warnings (benign races, two barrier sites: :mod:`.checks`) as Python warnings."""
        text = ctypes.create_string_buffer(2048)
        for index in range(self.library.sim_warning_count()):
            kind = self.library.sim_warning(index, text, len(text))
            warnings.warn(f"{kernel}: {text.value.decode(errors='replace')}", WARNINGS[kind], stacklevel=3)

    def get_global(self, name: str) -> np.ndarray:
        """The bytes of the module's ``__constant__`` or ``__device__`` variable ``name``, as a ``uint8``
        array that reads and writes the variable itself: the simulator's version of CuPy's
        ``RawModule.get_global``. As with CuPy (``cupy.ndarray(shape, dtype, module.get_global(name))``),
        view it with a shape and type::

            coef = np.ndarray((4,), np.float32, module.get_global("coef"))
            coef[:] = [1, 2, 3, 4]          # the kernels of this module now read these

        ``name`` is spelled as in C++ (``"ns::coef"`` inside a namespace).
        """
        size, writable = ctypes.c_ulonglong(), ctypes.c_int()
        path = str(self.build.library).encode()
        address = self.library.sim_global_variable(
            path, name.encode(), ctypes.byref(size), ctypes.byref(writable)
        )
        if not address:
            raise KernelLaunchError(
                f"no __constant__ or __device__ variable {name!r} in this module (a variable that no kernel "
                "uses may have been left out by the compiler)"
            )
        variable = np.frombuffer((ctypes.c_ubyte * size.value).from_address(address), np.uint8)
        variable.flags.writeable = bool(writable)  # a `const` variable lies in read-only memory
        return variable

    def get_function(self, name: str) -> SimKernel:
        if name not in self.build.kernel_names:
            raise KernelLaunchError(
                f"no kernel {name!r} in this module; it has {', '.join(self.build.kernel_names)} "
                "(template kernels must be listed in name_expressions)"
            )
        if name not in self._kernels:
            self._kernels[name] = SimKernel(self, self.build.kernel_names.index(name), name)
        return self._kernels[name]


class SimKernel:
    """One kernel of a :class:`SimModule`, called like ``cupy.RawKernel``: ``k(grid, block, args)``."""

    def __init__(self, module: SimModule, index: int, name: str):
        self.module, self.index, self.name = module, index, name
        self.params = [_Param(p) for p in module.build.signatures[name].params]
        self.static_shared_bytes = module.build.static_shared_bytes.get(name, 0)

    def __repr__(self) -> str:
        return f"<simulated kernel {self.name}({', '.join(f'{p.c_type} {p.name}' for p in self.params)})>"

    def __call__(self, grid, block, args, shared_mem: int = 0) -> None:
        seed = _next_launch_seed()
        try:
            self._launch(grid, block, args, shared_mem, seed)
        except (MemcheckError, KernelCrashError) as error:
            precise = self._rerun_under_memcheck(error, grid, block, args, shared_mem, seed)
            if precise is None:
                raise
            raise precise from None

    def _rerun_under_memcheck(self, error, grid, block, args, shared_mem, seed) -> MemcheckError | None:
        """An unchecked launch sees an out-of-bounds write only afterwards (a changed guard byte) or when it
        faults (a guard page): no thread, no line. The same launch, with the same seed, in a build checked
        for memcheck names them. The failed launch left the arrays as they were, so it can run again; its
        error is returned, or ``None`` when it finds nothing (what the launch does depends on something the
        rerun cannot repeat: ``__constant__`` values set in this module, another block's timing)."""
        memory_fault = isinstance(error, KernelCrashError) and "memory fault" in str(error)
        guard_zone = (
            isinstance(error, MemcheckError) and error.thread is None and "declared const" not in str(error)
        )
        if (
            "memcheck" in self.module.checks
            or self.module.checked_variant is None
            or not (memory_fault or guard_zone)
        ):
            return None
        checked = self.module.checked_variant(frozenset({"memcheck"}))
        try:
            checked.get_function(self.name)._launch(grid, block, args, shared_mem, seed)
        except MemcheckError as precise:
            precise.args = (
                f'{precise}; found by running the launch again with checks="memcheck", after: {error}',
            )
            return precise
        return None

    def _launch(self, grid, block, args, shared_mem: int, seed: int) -> None:
        grid, block = dim3(grid, f"{self.name}: grid"), dim3(block, f"{self.name}: block")
        shared_mem = int(shared_mem)
        self._check_limits(grid, block, shared_mem)
        if not isinstance(args, tuple | list):
            raise KernelLaunchError(
                f"{self.name}: args must be a tuple of arguments, got {type(args).__name__}"
            )
        if len(args) != len(self.params):
            raise KernelLaunchError(
                f"{self.name} takes {len(self.params)} arguments "
                f"({', '.join(p.name for p in self.params)}), got {len(args)}"
            )
        # The scalars by value (ctypes objects the C side reads through args[i]); the arrays by place.
        values, arrays = [], []
        for index, (param, value) in enumerate(zip(self.params, args, strict=True)):
            if param.pointer:
                arrays.append((index, param, self._check_array(param, value)))
                values.append(None)
            else:
                scalar = self._check_scalar(param, value)
                values.append(
                    param.ctypes_type.from_buffer_copy(scalar)
                    if isinstance(scalar, bytes)
                    else param.ctypes_type(scalar)
                )
        count = len(self.params)
        buffers, placement = _group_overlapping(arrays)
        argv = (ctypes.c_void_p * count)(*[None if v is None else ctypes.addressof(v) for v in values])
        arg_buffer = (ctypes.c_int * count)(*[placement.get(i, (-1, 0))[0] for i in range(count)])
        arg_offset = (ctypes.c_ulonglong * count)(*[placement.get(i, (-1, 0))[1] for i in range(count)])
        error, report = ctypes.create_string_buffer(2048), Report()
        threads = 1 if self.module.serial else simulator_threads()
        tracked = memory.any_tracked()  # nothing to do (and nothing to pay) when no allocation is tracked
        initcheck = "initcheck" in self.module.checks
        if tracked and initcheck:
            _point_at_written_maps(buffers)
        with _launch_lock:
            status = self.module.library.sim_launch(
                self.index,
                argv,
                arg_buffer,
                arg_offset,
                count,
                (_HostBuffer * max(1, len(buffers)))(*buffers),
                len(buffers),
                (ctypes.c_uint * 3)(*grid),
                (ctypes.c_uint * 3)(*block),
                shared_mem,
                seed,
                check_bits(self.module.checks) | (COOPERATIVE_LAUNCH if self.module.cooperative else 0),
                threads,
                ctypes.byref(report),
                error,
                len(error),
            )
        if tracked and not initcheck:
            for _, param, array in arrays:
                if not param.const:
                    memory.mark_written(array)
        names = [buffer.names.decode() for buffer in buffers]
        self.module.emit_warnings(self.name)
        if "record" in self.module.checks:
            self.module.last_record = self.module.read_record(names)
        if status != 0:
            message = error.value.decode(errors="replace")
            raise launch_error(self.name, message, report, self.module.build.library, names)

    def _where(self, param: _Param) -> str:
        return f"argument '{param.name}' of {self.name} is '{param.c_type}'"

    def _check_array(self, param: _Param, value) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise KernelLaunchError(
                f"{self._where(param)} (a pointer) but got {_describe(value)}; pass a NumPy array"
            )
        if param.dtype is not None and value.dtype != param.dtype:
            raise KernelLaunchError(
                f"{self._where(param)} but got an array of {value.dtype} ({_c_name(value.dtype)}); "
                f"pass an array of {param.dtype}"
            )
        if not value.flags.c_contiguous:
            raise KernelLaunchError(
                f"{self._where(param)} but got a non-C-contiguous array (kernels ignore strides); "
                "pass np.ascontiguousarray(...)"
            )
        if not param.const and not value.flags.writeable:
            raise KernelLaunchError(
                f"{self._where(param)} (the kernel may write it) but got a read-only array"
            )
        return value

    def _check_scalar(self, param: _Param, value) -> bool | int | float | bytes:
        if isinstance(value, np.ndarray):
            raise KernelLaunchError(
                f"{self._where(param)} (a scalar) but got an array of shape {value.shape}"
            )
        if param.dtype.kind == "V":  # a struct by value: a NumPy structured scalar of the same size
            if not isinstance(value, np.void) or value.dtype.itemsize != param.dtype.itemsize:
                raise KernelLaunchError(
                    f"{self._where(param)} ({param.dtype.itemsize} bytes) but got {_describe(value)}; pass "
                    "a NumPy structured scalar of the same layout, e.g. np.array((1.0, 2.0), 'f4,f4')[()]"
                )
            return value.tobytes()
        dtype = _passed_dtype(value)
        if dtype is None:
            raise KernelLaunchError(
                f"{self._where(param)} but got {_describe(value)}, which CuPy cannot pass"
            )
        if dtype != param.dtype:
            fix = f"np.{param.dtype.name}({param.name})" if param.dtype is not None else "the right type"
            raise KernelLaunchError(f"{self._where(param)} but got {_describe(value)}; pass {fix}")
        return value.item() if isinstance(value, np.generic) else value

    def _check_limits(self, grid, block, shared_mem: int) -> None:
        if shared_mem < 0:
            raise KernelLaunchError(f"{self.name}: shared_mem must be >= 0, got {shared_mem}")
        check_launch(self.name, grid, block, shared_mem, self.static_shared_bytes)
        blocks = grid[0] * grid[1] * grid[2]
        threads = blocks * block[0] * block[1] * block[2]
        if self.module.cooperative and threads > MAX_COOPERATIVE_THREADS:
            raise KernelLaunchError(
                f"{self.name}: a cooperative launch needs every block resident at once; grid {grid} of "
                f"block {block} has {threads} threads, and the simulator holds at most "
                f"{MAX_COOPERATIVE_THREADS} (a GPU as many blocks as its SMs fit: "
                "cudaOccupancyMaxActiveBlocksPerMultiprocessor x SMs)"
            )
        if blocks > MAX_SIMULATED_BLOCKS:
            raise KernelLaunchError(
                f"{self.name}: grid {grid} has {blocks} blocks; the simulator runs at most "
                f"{MAX_SIMULATED_BLOCKS} per launch (use a grid-stride loop, or the gpu device)"
            )
