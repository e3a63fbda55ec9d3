"""A CUDA simulator: run the project's ``.cu`` kernels on the CPU, with the checks a GPU does not make.

Why
---
The ``sim`` device runs the *same* ``kernels/*.cu`` files, launched by the *same* Python code as the ``gpu``
device, on any Linux or macOS machine with a C++ compiler. So tests prove the GPU code path without a GPU,
and a learner can run, ``printf`` from and debug every kernel on a laptop.

How it works
------------
1. **Compile.** The unmodified ``.cu`` file is compiled by the host C++ compiler (g++ or clang++) with a
   forced-include header, ``cuda_sim.h``, that defines what CUDA provides without an ``#include``:
   ``threadIdx``, ``blockIdx``, ``blockDim``, ``gridDim`` (macros reading "the thread running now"),
   ``__global__``/``__device__`` (nothing: kernels become plain functions), ``__shared__``,
   ``__syncthreads()``, ``atomicAdd``, warp shuffles, ``max``/``min`` and the math functions. A generated
   wrapper adds, for each kernel, a function that runs one CUDA thread given the arguments packed as
   ``void** args`` (as ``cuLaunchKernel`` takes them). Builds are cached by a hash of everything that goes
   into them (``compiler.py``).
2. **Run.** Blocks run one after the other. The threads of a block are *fibers* (``runtime.cpp``): each
   has its own stack, runs until it returns or reaches ``__syncthreads()``, and then hands control back to
   a scheduler, which runs the next thread. When all threads of the block wait at the barrier, they are
   released for the next round. Because one block runs at a time, ``__shared__`` variables (static storage
   in the compiled code) are naturally one copy per block; ``extern __shared__`` arrays get the size the
   launch asks for (``shared_mem``).
3. **Shuffle.** The order of the blocks, and of the threads in each round, is a random permutation drawn
   from a seed (:func:`set_seed`, or the ``SCRATCHNET_SIM_SEED`` environment variable; launch *k* after
   seeding uses a seed derived from both). A kernel that forgets a ``__syncthreads()`` or depends on the
   order in which threads run gives a wrong result, reproducibly, instead of passing by luck.
4. **Check** (``launcher.py``). Each launch is refused when its arguments do not match the kernel's
   compiled C signature as CuPy would pass them (a Python ``int`` is a ``long long``, a ``float`` a
   ``double``), or when it breaks CUDA's limits (1024 threads per block, 48 KiB of shared memory per
   block). Every array is copied into a buffer with guard zones on both sides; a write past either end
   of an argument, a write to a ``const`` argument, a write past the dynamic shared memory, barrier
   divergence (some threads wait at ``__syncthreads()`` while others have returned) and crashes inside the
   kernel (a wild pointer, an integer division by zero) become a :class:`~scratchnet.errors.KernelLaunchError`
   naming the kernel, and where possible the argument, block and thread.

Usage::

    from scratchnet import sim
    module = sim.RawModule(code=source, name_expressions=["relu_forward<float>"])
    relu = module.get_function("relu_forward<float>")
    relu((blocks,), (256,), (x, y, np.int64(x.size)))        # NumPy arrays stand in for device arrays

Speed
-----
On an x86-64 laptop-class core (g++ -O2): about 10 µs of overhead per launch plus a few µs per array
argument, about 30 ns per thread for a kernel without barriers (a 10^5-thread elementwise launch takes
about 3 ms), and about 40 ns per thread for each ``__syncthreads()`` (a 256 x 256 x 256 tiled GEMM, 65,536
threads with 32 barriers each, takes about 80 ms).

What it cannot tell you
-----------------------
* Races between threads that never cross a barrier are found only if the shuffled order happens to expose
  them; two threads never run at the same time, so a non-atomic read-modify-write always "works".
* There is no warp lockstep: code relying on the 32 threads of a warp executing together (implicit warp
  synchronisation, without ``__syncwarp``) is not modelled. ``__syncwarp`` and the ``__shfl_*_sync``
  functions are, with all 32 lanes taking part (the mask is ignored).
* Out-of-bounds *reads* are not detected (reading a guard zone returns canary bytes), nor writes that land
  further than 4 KiB from the array, nor out-of-bounds accesses to static shared memory.
* Floating-point results may differ from a GPU in the last bits (contraction into FMA, ``expf`` accuracy).
* Timing means nothing: a simulated launch is orders of magnitude slower than a GPU, and its cost has
  nothing to do with coalescing, occupancy or bank conflicts.
* Shared memory is not reset between blocks (nor is it on a GPU); ``__constant__`` memory cannot be set
  from Python; static shared memory declared in ``__device__`` helpers is not counted in the 48 KiB.
* A kernel that loops forever hangs the launch, as it would hang the GPU.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

from scratchnet.errors import DeviceError
from scratchnet.sim.checks import (
    InitcheckError,
    KernelCrashError,
    KernelTrapError,
    MemcheckError,
    RacecheckError,
    SimCheckError,
    SynccheckError,
    parse_checks,
)
from scratchnet.sim.compiler import CompileError, SimCompilerWarning, build, find_compiler
from scratchnet.sim.launcher import SimKernel, SimModule, set_seed

__all__ = [
    "CompileError",
    "InitcheckError",
    "KernelCrashError",
    "KernelTrapError",
    "MemcheckError",
    "RacecheckError",
    "SimCheckError",
    "SynccheckError",
    "RawKernel",
    "RawModule",
    "SimCompilerWarning",
    "SimKernel",
    "SimModule",
    "check_supported",
    "load_module",
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
) -> SimModule:
    """Compile ``source`` (cached) and load it; like ``cupy.RawModule(code=source, name_expressions=...)``.

    ``filename`` names the file in compiler messages and error reports. ``checks``: ``"memcheck"``,
    ``"racecheck"``, ``"initcheck"``, ``"synccheck"`` (comma-separated or a list) or ``"all"``; ``None`` reads
    ``SCRATCHNET_SIM_CHECKS`` (see :mod:`scratchnet.sim.checks`). ``debug``: a ``-O0 -g`` build for gdb;
    ``None`` reads ``SCRATCHNET_SIM_DEBUG`` (``1`` for on).
    """
    check_supported()
    selected = parse_checks(checks)
    if debug is None:
        debug = _debug_from_environment()
    return SimModule(build(source, list(name_expressions), filename, selected, debug), selected)


def _debug_from_environment() -> bool:
    text = os.environ.get("SCRATCHNET_SIM_DEBUG", "0").strip()
    if text not in ("0", "1", ""):
        raise ValueError(f"SCRATCHNET_SIM_DEBUG must be 0 or 1, got {text!r}")
    return text == "1"


def RawModule(code: str, name_expressions: Sequence[str] = (), options: Sequence[str] = ()) -> SimModule:  # noqa: N802
    """Drop-in for ``cupy.RawModule``. ``options`` (NVRTC flags) are accepted and ignored."""
    del options
    return load_module(code, name_expressions)


def RawKernel(code: str, name: str, options: Sequence[str] = ()) -> SimKernel:  # noqa: N802
    """Drop-in for ``cupy.RawKernel``: one kernel, an ``extern "C"`` name or a template name expression."""
    del options
    return load_module(code, [name]).get_function(name)
