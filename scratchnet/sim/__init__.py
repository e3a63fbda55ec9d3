"""A CUDA simulator: run the project's ``.cu`` kernels on the CPU, with the checks a GPU does not make.

Why
---
The ``sim`` device runs the *same* ``kernels/*.cu`` files, launched by the *same* Python code as the ``gpu``
device, on any Linux or macOS machine with a C++ compiler. So tests prove the GPU code path without a GPU,
and a learner can run, ``printf`` from, check and debug every kernel on a laptop.

How it works
------------
1. **Compile** (``compiler.py``). The unmodified ``.cu`` file is compiled by the host C++ compiler (g++ or
   clang++) with a forced-include header, ``cuda_sim.h``, that defines what CUDA provides without an
   ``#include``; ``#include <cooperative_groups.h>`` finds the simulator's own (``include/``). A generated
   wrapper adds, per kernel, a function that runs one CUDA thread given the arguments packed as
   ``void** args`` (as ``cuLaunchKernel`` takes them) and one that describes its parameter types as the
   compiler deduced them: the source of every kernel signature, on ``sim`` and ``gpu``
   (:mod:`scratchnet._cuda.signature`). The scheduler, ``runtime.cpp``, is its own translation unit, so
   that no macro of a kernel file (``#define T 16``) reaches it. Builds are cached by a hash of everything
   that goes into them, verified (size and SHA-256) before each load and rebuilt when damaged.
2. **Run** (``runtime.cpp``). Independent blocks run at the same time on a small pool of OS threads
   (``SCRATCHNET_SIM_THREADS``, default one per CPU core; a checked or debug build uses one), each OS
   thread running one block at a time. The threads of a block are *fibers* on that one OS thread: each
   runs until it returns or reaches a barrier, and then hands over to the next thread of the round. A new
   thread starts as a plain function call on a "runner" fiber, which goes on to the next new thread when it
   returns, so a kernel without barriers pays no context switch per thread; a thread that waits at a
   barrier keeps its runner's stack (at least 512 KiB, committed page by page as it is touched), and the
   next new thread gets another. Each stack lies in a 1 MiB-aligned region whose header points to its OS
   thread's scheduler, so ``threadIdx`` is found from the stack pointer, without a thread-local lookup
   (``python -m scratchnet.bench sim`` measures what a thread and a barrier cost). When all threads of the
   block wait at the same
   ``__syncthreads()``, they are released; when all lanes named in a warp mask wait at ``__syncwarp(mask)``
   (or a shuffle or vote with that mask), those lanes are. ``__shared__`` variables have one copy per OS
   thread (``thread_local``), which is one per running block; ``extern __shared__`` arrays get the size the
   launch asks for (``shared_mem``). Global atomics are real atomic instructions, since blocks overlap;
   ``printf`` lines stay whole (the C library locks ``stdout`` per call).
3. **Shuffle.** Blocks are taken in a random order, and the threads of a block run in each round in a
   random order, drawn from a seed (:func:`set_seed`, or ``SCRATCHNET_SIM_SEED``; launch *k* after seeding
   uses a seed derived from both). A block's thread order depends only on that seed and the block's index,
   never on which OS thread runs it, so a kernel whose blocks are independent gives the same result with
   any number of OS threads. A kernel that forgets a ``__syncthreads()`` or depends on the order in which
   threads run gives a wrong result, reproducibly, instead of passing by luck. What may vary from run to run
   with more than one OS thread: how blocks interleave (a kernel whose blocks write the same place without
   atomics, or read what other blocks write), and the order of atomic updates from different blocks, hence
   the rounding of a float ``atomicAdd`` sum. When several blocks fail, the error reported is the one of
   the earliest block in the shuffled order, whatever the number of OS threads.
4. **Check** (``launcher.py``, ``checks.py``). Each launch is refused when its arguments do not match the
   kernel's compiled signature as CuPy would pass them, or when it breaks CUDA's limits
   (:mod:`scratchnet._cuda.limits`). Every array runs on a copy between guard bytes and, beyond them, 1 MiB of
   inaccessible guard pages. Always checked: writes up to 4 KiB past either end of an array, any access that
   lands in the guard pages (a fault, named, instead of a write into other memory), writes to an array passed
   as ``const``, writes past the end of the dynamic shared memory, barrier divergence (a thread returned while
   others wait at a ``__syncthreads()``), warp masks that cannot complete, ``assert``/ ``__trap()``, and
   crashes; barriers and warp functions are reported with their ``file:line``. An out-of-bounds write found
   so, without its thread and line, makes the launch run again in a build checked for memcheck, which names
   them. Threads waiting at two different ``__syncthreads()`` lines are released together, as GPUs from sm_70
   on do, with a :class:`BarrierSitesWarning`. With ``checks=`` (or ``SCRATCHNET_SIM_CHECKS``), a *checked
   build* adds compute-sanitizer's classes: ``memcheck`` (every out-of-bounds read, write or atomic at any
   distance, and misaligned accesses), ``racecheck`` (atomics included: an atomic and a plain access race, two
   atomics do not; threads storing the same value race benignly, a :class:`BenignRaceWarning`), ``initcheck``
   (shared memory, and device memory from :func:`empty`: see :mod:`.memory`); see :mod:`.checks`. ``strict``
   turns the two warnings into errors. A checked build sees every load and store, constant offsets and both
   halves of ``x += ...`` included. Each error is a :class:`SimCheckError` subclass whose fields name the
   kernel, block, thread, buffer, byte offset and source line (and the other thread of a race).
   ``checks="record"`` (alone or with checks) keeps every launch's access record instead, or as well:
   ``module.last_record``, an :class:`AccessRecord` that counts loads, stores, atomics and barriers and the
   bank conflicts of the warps' shared-memory accesses (:mod:`.record`).
5. **Debug.** ``SCRATCHNET_SIM_DEBUG=1`` (or ``debug=True``) builds with ``-O0 -g`` and runs the blocks on
   the calling OS thread only; gdb can then stop in one thread of one block: ``break relu.cu:12 if
   sim_rt::current_state().block_idx.x == 1 && sim_rt::current_state().thread_idx.x == 5`` (docs/simulator.md,
   "Debugging with gdb").

Usage::

    from scratchnet import sim
    module = sim.RawModule(code=source, name_expressions=["relu_forward<float>"])
    relu = module.get_function("relu_forward<float>")
    relu((blocks,), (256,), (x, y, np.int64(x.size)))        # NumPy arrays stand in for device arrays
    sim.load_module(source, ["relu_forward<float>"], checks="memcheck,racecheck")   # a checked build
    y = sim.empty(x.shape, np.float32)   # like cupy.empty: poisoned; initcheck reports reads never written

What it supports
----------------
The index variables, ``dim3``, ``__syncthreads()`` and its ``_count/_and/_or`` forms, ``__syncwarp(mask)``;
``__shfl_sync``/``_up``/``_down``/``_xor`` with partial masks and widths, ``__ballot_sync``, ``__any_sync``,
``__all_sync``, the sm_80 ``__reduce_{add,min,max,and,or,xor}_sync``, ``__match_any_sync``,
``__match_all_sync``; ``__activemask()``: the lanes of the warp that reach that call together (each waits
there until every lane of its warp has arrived or stopped elsewhere); cooperative groups
(``this_thread_block``, ``sync``, ``thread_rank``, ``tiled_partition<32>`` and smaller tiles with ``shfl*``,
``any``, ``all``, ``ballot``, ``cg::reduce`` with ``plus``/``greater``/``less``; ``thread_group`` and
``tiled_partition(group, n)``; ``coalesced_threads()``, ``labeled_partition``, ``binary_partition``;
``this_grid()``'s ranks, sizes and ``sync()``, under a cooperative launch: ``load_module(...,
enable_cooperative_groups=True)``, whose blocks take turns on one OS thread); ``clock()``/``clock64()``
(host time), ``memcpy``/``memset`` in device
code; ``extern __shared__`` arrays of any type but a template parameter, the type written before or after
``__shared__``; ``cuda_fp16.h``/``cuda_bf16.h`` as storage types with their conversions (a ``__half*``
parameter takes a float16 array, a ``__nv_bfloat16*`` one the uint16 bits); ``__constant__`` and
``__device__`` variables, read and written from Python with :meth:`SimModule.get_global` (CuPy's
``RawModule.get_global``); vector types (``float2/3/4``, ``int2/3/4``, ``uint2/4``, ``double2``, ...
with ``make_*``); CUDA's atomic overloads for int, unsigned, long long, unsigned long long, float, double
(``atomicAdd/Sub/Exch/Min/Max/Inc/Dec/And/Or/Xor/CAS`` and their ``_block``/``_system`` forms); bit and
rounding intrinsics (``__popc``, ``__clz``, ``__ffs``, ``__brev``, ``__fmaf_rn``, ``__float2int_rn``,
``__float_as_uint``, ...); cache-hinted loads and stores (``__ldg``, ``__ldcs``, ``__stcs``, ...); the
fast-math functions (``__expf``, ``__sinf``, ...); ``assert``; templates with any parameters (looked up by
name expression), typedefs, struct and vector parameters. ``__CUDACC__`` is defined and ``__CUDA_ARCH__`` is
800: the simulator presents itself as a compute capability 8.0 device.

What it still cannot do
-----------------------
* Warp lockstep is not modelled: code relying on the 32 threads of a warp executing together without
  ``__syncwarp`` (implicit warp synchronisation, the ``volatile`` warp tail of old reductions) gives wrong
  results silently without a checked build; racecheck reports it (the lanes, the lines), as
  compute-sanitizer does on Volta and later.
* Without a checked build, out-of-bounds *reads*, and writes further than 4 KiB from an array that miss
  its guard pages, go unseen. With
  one, an access to a static ``__shared__`` array that lands more than 64 bytes past its end, inside another
  array, is not seen (64-byte redzones surround each declaration; the arrays of one declaration share
  them), nor are declarations written inside macros given redzones; racecheck compares accesses of
  different sizes only by 4-byte granule or byte, ``memcpy``/``memset`` calls inside kernels are not
  checked, and a ``float4`` loaded into registers and used part by part is checked as four ``float`` loads
  (g++ splits it), so its misalignment goes unseen. A checked launch is much slower: every load and store
  calls the runtime.
* initcheck sees device memory only when it comes from :func:`empty` (as the ``sim`` device's ``empty()``
  does with initcheck on): arrays made by NumPy are initialised by definition and never checked. Writes it
  cannot observe byte by byte count as writing the whole array: a launch without initcheck marks each of
  its non-``const`` array arguments written in full (even where its grid left bytes unwritten), and NumPy
  code writing into a tracked array must call :func:`mark_written`. On the host only the ``sim`` device's
  ``to_host`` is checked; NumPy code reading a tracked array directly is not.
* Two threads of one block never run at the same time, so a non-atomic read-modify-write between barriers
  is found by racecheck, not by a wrong result; racecheck compares threads of one block only (a checked
  build runs its blocks one after the other).
* Floating-point results may differ from a GPU in the last bits (FMA contraction, the fast-math functions
  are computed accurately, half-precision arithmetic is computed in float and rounded when stored); tensor
  cores and dynamic parallelism are missing; a cooperative launch holds at most 16384 threads.
* Timing means nothing: a simulated launch is orders of magnitude slower than a GPU, and its cost has
  nothing to do with coalescing, occupancy or bank conflicts.
* Shared memory is not reset between blocks (nor is it on a GPU; initcheck reports reads of it).
* A kernel that loops forever hangs the launch, as it would hang the GPU.

Speed
-----
Blocks run on every core; within a block, a new thread is a plain function call on a runner fiber, a
barrier costs one context switch, and ``threadIdx`` is read through the fiber's stack header. ``python -m
scratchnet.bench sim`` prints the cost per thread and per barrier; docs/simulator.md gives the training
speed, measured, and why the register-blocked GEMMs keep the thread count, and so the cost, down.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

from scratchnet.errors import DeviceError
from scratchnet.sim.checks import (
    BarrierSitesWarning,
    BenignRaceWarning,
    InitcheckError,
    KernelCrashError,
    KernelTrapError,
    MemcheckError,
    RacecheckError,
    SimCheckError,
    SimCheckWarning,
    SynccheckError,
    parse_checks,
)
from scratchnet.sim.compiler import CompileError, SimCompilerWarning, build, find_compiler, parse_kernels
from scratchnet.sim.launcher import SimKernel, SimModule, set_seed
from scratchnet.sim.memory import empty, mark_written
from scratchnet.sim.record import AccessRecord

__all__ = [
    "AccessRecord",
    "BarrierSitesWarning",
    "BenignRaceWarning",
    "CompileError",
    "InitcheckError",
    "KernelCrashError",
    "KernelTrapError",
    "MemcheckError",
    "RacecheckError",
    "SimCheckError",
    "SimCheckWarning",
    "SynccheckError",
    "RawKernel",
    "RawModule",
    "SimCompilerWarning",
    "SimKernel",
    "SimModule",
    "check_supported",
    "empty",
    "load_module",
    "parse_kernels",
    "mark_written",
    "set_seed",
]


def check_supported() -> None:
    """Raise :class:`DeviceError` unless this machine can run the simulator (Linux or macOS, x86-64 or
    arm64, with a C++ compiler)."""
    system = platform.system()
    if system not in ("Linux", "Darwin"):
        raise DeviceError(f"the CUDA simulator runs on Linux and macOS only, not on {system}")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "arm64", "aarch64"):
        raise DeviceError(f"the CUDA simulator supports x86-64 and arm64 processors, not {machine}")
    find_compiler()


def load_module(
    source: str,
    name_expressions: Sequence[str] = (),
    filename: str | None = None,
    checks: str | Sequence[str] | None = None,
    debug: bool | None = None,
    enable_cooperative_groups: bool = False,
) -> SimModule:
    """Compile ``source`` (cached) and load it; like ``cupy.RawModule(code=source, name_expressions=...)``.

    ``filename`` names the file in compiler messages and error reports. ``checks``: ``"memcheck"``,
    ``"racecheck"``, ``"initcheck"``, ``"synccheck"`` (comma-separated or a list) or ``"all"``; ``None`` reads
    ``SCRATCHNET_SIM_CHECKS`` (see :mod:`scratchnet.sim.checks`). ``debug``: a ``-O0 -g`` build for gdb;
    ``None`` reads ``SCRATCHNET_SIM_DEBUG`` (``1`` for on). ``enable_cooperative_groups``: launch every kernel
    cooperatively, all blocks resident at once, so that ``this_grid().sync()`` works (as CuPy's ``RawModule``
    takes it); the blocks then take turns on one OS thread.
    """
    check_supported()
    selected = parse_checks(checks)
    if debug is None:
        debug = _debug_from_environment()
    return SimModule(
        build(source, list(name_expressions), filename, selected, debug),
        selected,
        serial=debug,
        checked_variant=lambda checks: load_module(
            source, name_expressions, filename, checks, False, enable_cooperative_groups
        ),
        cooperative=enable_cooperative_groups,
    )


def _debug_from_environment() -> bool:
    text = os.environ.get("SCRATCHNET_SIM_DEBUG", "0").strip()
    if text not in ("0", "1", ""):
        raise ValueError(f"SCRATCHNET_SIM_DEBUG must be 0 or 1, got {text!r}")
    return text == "1"


def RawModule(  # noqa: N802
    code: str,
    name_expressions: Sequence[str] = (),
    options: Sequence[str] = (),
    enable_cooperative_groups: bool = False,
) -> SimModule:
    """Drop-in for ``cupy.RawModule``. ``options`` (NVRTC flags) are accepted and ignored."""
    del options
    return load_module(code, name_expressions, enable_cooperative_groups=enable_cooperative_groups)


def RawKernel(code: str, name: str, options: Sequence[str] = ()) -> SimKernel:  # noqa: N802
    """Drop-in for ``cupy.RawKernel``: one kernel, an ``extern "C"`` name or a template name expression."""
    del options
    return load_module(code, [name]).get_function(name)
