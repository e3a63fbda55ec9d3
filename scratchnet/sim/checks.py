"""The simulator's checks, named after compute-sanitizer's tools, and the errors they raise.

Choose them with ``sim.load_module(..., checks="memcheck,racecheck")`` or the ``SCRATCHNET_SIM_CHECKS``
environment variable (comma-separated ``memcheck``, ``racecheck``, ``initcheck``, ``synccheck``, or
``all``):

==========  ===========================================================================================
memcheck    every out-of-bounds read, write or atomic of an array argument, at any distance; out-of-bounds
            dynamic shared memory (past ``shared_mem``); a static ``__shared__`` array overrun into the
            64-byte redzones that a checked build puts around each declaration, named (runtime.cpp);
            misaligned accesses (a ``float4`` at an address that is not a multiple of 16)
racecheck   two threads of a block touching the same byte of shared memory or of an array, one of them
            writing or both updating it, one atomically and one not, with no ``__syncthreads()`` between
            them (nor ``__syncwarp()`` for one warp's lanes)
initcheck   reads of shared memory that no thread of the block has written, and reads of arrays from
            ``sim.empty`` (tracked device memory, ``memory.py``) of bytes that no kernel has written
synccheck   barrier divergence (a thread returned, or waits at another ``__syncthreads()``) and warp
            masks that are misused; always on, also without a checked build
==========  ===========================================================================================

``record`` (not a check, and not part of ``all``) keeps the access record of each launch (``record.py``).

Two patterns are warnings, not errors (:class:`SimCheckWarning`), because GPUs run them correctly though
CUDA's memory model calls them races or leaves them undefined; ``strict`` (not part of ``all``) makes them
errors:

* :class:`BenignRaceWarning` (racecheck): threads storing the *same value* to one address with no barrier
  between (a flag that many threads set, as Rodinia's BFS does; every lane writing one result);
* :class:`BarrierSitesWarning` (synccheck, every build): the threads of a block waiting at two different
  ``__syncthreads()`` lines, which GPUs from sm_70 on release together (SGEMM_CUDA's double buffering).

memcheck, racecheck and initcheck need a *checked build* (its own cache entry, Linux x86-64 only): the
kernel file compiled with ``-fsanitize=thread``, so that g++ calls the runtime before every load and store
(``runtime.cpp``, "the checks"), and with ``-g``, so that a report names the source line. memcheck also
checks alignment: an access of 2, 4, 8 or 16 bytes must lie at a multiple of its size, as on a GPU.

Every error is a :class:`SimCheckError` (a :class:`~scratchnet.errors.KernelLaunchError`) with fields a
program can read -- ``kernel``, ``block``, ``thread``, ``buffer``, ``offset``, ``line``, and for a race the
``other_thread``/``other_line`` -- one subclass per check: :class:`MemcheckError`, :class:`RacecheckError`,
:class:`InitcheckError`, :class:`SynccheckError`; plus :class:`KernelTrapError` (``assert``, ``__trap()``)
and :class:`KernelCrashError` (a fault the checks did not see coming).
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from scratchnet.errors import DeviceError, KernelLaunchError

CHECKS = ("memcheck", "racecheck", "initcheck", "synccheck")
# "record" is no check: it keeps the access record of each launch (record.py); "strict" turns the warnings
# below into errors. "all" leaves both out.
OPTIONS = ("record", "strict")
INSTRUMENTED = frozenset({"memcheck", "racecheck", "initcheck", "record"})  # what needs a checked build
_BITS = {"memcheck": 1, "racecheck": 2, "initcheck": 4, "record": 8, "strict": 16}  # kCheck* in runtime.cpp

# -fsanitize=thread makes g++ call __tsan_{read,write}{1,2,4,8,16}(address) before every load and store,
# with no exception: constant offsets into a declared array (`tile[0]`, a __shared__ scalar), both halves of
# `x += ...`, reads of arrays nothing writes. (AddressSanitizer's instrumentation, used before, leaves all
# of those out as provably in bounds.) The runtime answers the calls (runtime.cpp, "the checks"); no
# ThreadSanitizer library is linked. SIM_CHECKED makes cuda_sim.h report its atomics to the runtime too.
CHECK_FLAGS = [
    "-g",
    "-gdwarf-4",  # addr2line (binutils 2.40) names the wrong file for #line directives in DWARF 5
    "-fsanitize=thread",
    "--param",
    "tsan-instrument-func-entry-exit=0",
    "-fno-ipa-reference-addressable",  # else g++ folds the reads of a __shared__ array nothing writes to 0
    "-DSIM_CHECKED",
]


def parse_checks(checks: str | Iterable[str] | None) -> frozenset[str]:
    """The set of checks asked for: ``checks`` (a comma-separated string or names), else the environment."""
    if checks is None:
        checks = os.environ.get("SCRATCHNET_SIM_CHECKS", "")
    names = [c.strip().lower() for c in (checks.split(",") if isinstance(checks, str) else checks)]
    names = [n for n in names if n]
    if "all" in names:
        names = [*CHECKS, *(option for option in OPTIONS if option in names)]
    unknown = sorted(set(names) - {*CHECKS, *OPTIONS})
    if unknown:
        raise ValueError(
            f"unknown simulator check(s) {', '.join(map(repr, unknown))} (from checks= or "
            f"SCRATCHNET_SIM_CHECKS); choose from {', '.join(CHECKS)}, or all (and record, strict)"
        )
    selected = frozenset(names)
    if selected & INSTRUMENTED and (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        raise DeviceError(
            f"the simulator's {', '.join(sorted(selected & INSTRUMENTED))} need a checked build, which is "
            f"supported on Linux x86-64 only, not on {platform.system()} {platform.machine()}"
        )
    return selected


def check_bits(checks: frozenset[str]) -> int:
    return sum(_BITS.get(c, 0) for c in checks)


class Report(ctypes.Structure):
    """What runtime.cpp reports about a failed launch (``struct Report``)."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("block", ctypes.c_uint * 3),
        ("thread", ctypes.c_int * 3),
        ("other_thread", ctypes.c_int * 3),
        ("buffer", ctypes.c_int),
        ("offset", ctypes.c_longlong),
        ("size", ctypes.c_int),
        ("is_write", ctypes.c_int),
        ("other_is_write", ctypes.c_int),
        ("pc", ctypes.c_ulonglong),
        ("other_pc", ctypes.c_ulonglong),
        ("line", ctypes.c_int),
        ("other_line", ctypes.c_int),
        ("file", ctypes.c_char_p),
        ("other_file", ctypes.c_char_p),
    ]


class SimCheckError(KernelLaunchError):
    """A simulated launch failed a check. Fields (``None`` when they do not apply):

    ``kernel`` name; ``block`` and ``thread`` as (x, y, z); ``buffer``: the argument name(s) of the array,
    ``"dynamic shared memory"`` or ``"static shared memory"``; ``offset``: byte offset of the access in it;
    ``access``: ``"read"`` or ``"write"``; ``line``: ``"file.cu:12"`` of the access (or barrier);
    ``other_thread``, ``other_line``, ``other_access``: the other side of a race or divergence.
    """

    def __init__(self, message: str, **fields):
        super().__init__(message)
        for name in ("kernel", "block", "thread", "buffer", "offset", "access", "line"):
            setattr(self, name, fields.get(name))
        for name in ("other_thread", "other_line", "other_access"):
            setattr(self, name, fields.get(name))


class MemcheckError(SimCheckError):
    """An access outside every array argument, or past the shared memory (memcheck)."""


class RacecheckError(SimCheckError):
    """Two threads of a block touched the same byte without a barrier between them (racecheck)."""


class InitcheckError(SimCheckError):
    """A read of shared memory that no thread of the block had written, or of a byte of an array from
    ``sim.empty`` that no kernel had written (initcheck)."""


class SynccheckError(SimCheckError):
    """Barrier divergence or a misused warp mask (synccheck)."""


class KernelTrapError(SimCheckError):
    """A failed ``assert`` or a ``__trap()`` in the kernel."""


class KernelCrashError(SimCheckError):
    """The kernel crashed (an invalid address, a stack overflow, an integer division by zero)."""


class SimCheckWarning(UserWarning):
    """A pattern that GPUs run correctly though CUDA calls it a race or leaves it undefined; ``strict``
    makes it an error."""


class BenignRaceWarning(SimCheckWarning):
    """Threads of a block stored the same value to one address with no barrier between (racecheck)."""


class BarrierSitesWarning(SimCheckWarning):
    """The threads of a block waited at two different ``__syncthreads()`` lines, released together."""


WARNINGS = {1: BenignRaceWarning, 2: BarrierSitesWarning}  # WarningKind in runtime.cpp


_CLASSES = {
    1: MemcheckError,
    2: RacecheckError,
    3: InitcheckError,
    4: SynccheckError,
    5: KernelTrapError,
    6: KernelCrashError,
}


_SIMULATOR_SOURCES = str(Path(__file__).resolve().parent)  # cuda_sim.h and include/: not the kernel's lines


def source_line(library: Path, pc: int) -> str | None:
    """``file:line`` of the code at offset ``pc`` of ``library`` (a return address), from its debug info: the
    innermost of the functions inlined there that is not the simulator's own (an atomicAdd's caller)."""
    addr2line = shutil.which("addr2line")
    if not pc or addr2line is None:
        return None
    result = subprocess.run(
        [addr2line, "-i", "-e", str(library), hex(pc - 1)], capture_output=True, text=True
    )
    frames = [text.split(" (discriminator")[0] for text in result.stdout.split("\n") if text.strip()]
    frames = [text for text in frames if not text.startswith("??")]
    text = next((f for f in frames if not f.startswith(_SIMULATOR_SOURCES)), frames[0] if frames else "")
    return os.path.basename(text.split(":")[0]) + ":" + text.split(":")[-1] if text else None


def _file_line(file: bytes | None, line: int) -> str | None:
    """``file.cu:12`` of a line the runtime knows without debug information (a barrier, a warp function)."""
    if not line:
        return None
    return f"{os.path.basename(file.decode())}:{line}" if file else f"line {line}"


def _point(values) -> tuple[int, int, int] | None:
    point = tuple(int(v) for v in values)
    return None if point[0] < 0 else point


INTERRUPTED = 7  # the report kind of a launch stopped by Ctrl-C


def launch_error(kernel: str, message: str, report: Report, library: Path, buffer_names: list[str]):
    """The exception for a failed launch: one :class:`SimCheckError` subclass per kind of report, and
    ``KeyboardInterrupt`` for a launch that Ctrl-C stopped (a kernel that loops forever)."""
    if report.kind == INTERRUPTED:
        return KeyboardInterrupt(f"{kernel} {message}")
    cls = _CLASSES.get(report.kind)
    if cls is None:
        return KernelLaunchError(f"{kernel} {message}")
    line = source_line(library, report.pc) or _file_line(report.file, report.line)
    other_line = source_line(library, report.other_pc) or _file_line(report.other_file, report.other_line)
    buffer = {-1: None, -2: "dynamic shared memory", -3: "static shared memory"}.get(report.buffer)
    if report.buffer >= 0:
        buffer = buffer_names[report.buffer]
        message = message.replace("an array argument", f"argument {buffer}", 1)
    text = f"{kernel} {message}"
    if line and report.pc:
        text += f" at {line}"
    if other_line and report.other_pc:
        text += f" (the other access at {other_line})"
    access = None if report.kind not in (1, 2, 3) else ("write" if report.is_write else "read")
    other_access = ("write" if report.other_is_write else "read") if report.kind == 2 else None
    return cls(
        text,
        kernel=kernel,
        block=tuple(int(v) for v in report.block),
        thread=_point(report.thread),
        buffer=buffer,
        offset=int(report.offset) if buffer is not None else None,
        access=access,
        line=line,
        other_thread=_point(report.other_thread),
        other_line=other_line,
        other_access=other_access,
    )
