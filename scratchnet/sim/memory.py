"""Simulated device allocations whose bytes initcheck knows to be uninitialised.

On a GPU, ``cudaMalloc`` (``cupy.empty``) returns memory holding whatever was there before, and
compute-sanitizer's initcheck reports a kernel that reads a byte of it no one wrote. On ``sim`` device arrays
are NumPy arrays, so :func:`empty` stands in for ``cudaMalloc``: a NumPy array

* filled with a poison pattern (every byte 0xFF: NaN for floats, -1 for signed integers), so that an
  unchecked read gives obviously wrong values instead of plausible stale zeros, and
* registered here with a *written map*: one flag per byte, 0 until the byte is written.

A launch checked for initcheck (``launcher.py``) hands each array argument's piece of the map to the runtime,
which sets the flags of every byte a kernel stores and reports a load of a byte whose flag is still 0
(``InitcheckError``). A write the simulator cannot observe byte by byte -- a launch without initcheck, or
the host writing into the array with NumPy -- marks the bytes written wholesale (:func:`mark_written`).

The registry is keyed by address range, so a view, slice or reshape of a tracked array (another ndarray
over the same memory) is found too. An entry is removed when its array is garbage-collected
(``weakref.finalize``), so memory that NumPy later reuses for a plain array is never mistaken for it.
Arrays that never came from :func:`empty` are never checked: NumPy data is initialised by definition.
"""

from __future__ import annotations

import bisect
import threading
import weakref

import numpy as np

POISON_BYTE = 0xFF

# Re-entrant: a garbage collection inside a locked section may run the finalizer of another allocation.
_lock = threading.RLock()
_starts: list[int] = []  # start addresses of the tracked allocations, sorted
_allocations: dict[int, tuple[int, np.ndarray]] = {}  # start -> (end, written map: uint8, one per byte)


def empty(shape, dtype=np.float64) -> np.ndarray:
    """An uninitialised simulated device array, like ``cupy.empty``: poisoned bytes, tracked for initcheck.

    A zero-size array has nothing to read and is not tracked.
    """
    array = np.empty(shape, dtype=dtype)
    if array.nbytes == 0:
        return array
    array.reshape(-1).view(np.uint8).fill(POISON_BYTE)
    start = array.ctypes.data
    written = np.zeros(array.nbytes, np.uint8)
    entry = (start + array.nbytes, written)
    with _lock:
        _allocations[start] = entry
        bisect.insort(_starts, start)
    weakref.finalize(array, _forget, start, written)
    return array


def _forget(start: int, written: np.ndarray) -> None:
    """Drop the entry of a collected allocation (only that one: ``written`` identifies it)."""
    with _lock:
        entry = _allocations.get(start)
        if entry is not None and entry[1] is written:
            del _allocations[start]
            _starts.pop(bisect.bisect_left(_starts, start))


def any_tracked() -> bool:
    """Whether any tracked allocation is alive: launches check this first, so they pay nothing otherwise."""
    return bool(_allocations)


def written_map(start: int, nbytes: int) -> np.ndarray | None:
    """The flags of bytes ``[start, start + nbytes)`` (a view into their allocation's written map), or
    ``None`` unless that whole range lies in one tracked allocation."""
    with _lock:
        index = bisect.bisect_right(_starts, start) - 1
        if index < 0:
            return None
        allocation_start = _starts[index]
        entry = _allocations.get(allocation_start)
    if entry is None or nbytes <= 0 or start + nbytes > entry[0]:
        return None
    return entry[1][start - allocation_start : start - allocation_start + nbytes]


def is_tracked(array: np.ndarray) -> bool:
    """Whether ``array`` (or the view it is) lies in memory from :func:`empty` that is still alive."""
    return written_map(array.ctypes.data, array.nbytes) is not None


def mark_written(array: np.ndarray) -> None:
    """Record that every byte of ``array`` has been written, by something initcheck cannot observe (NumPy
    code on the host, a launch without initcheck). Does nothing for an array that is not tracked."""
    flags = written_map(array.ctypes.data, array.nbytes)
    if flags is not None:
        flags.fill(1)


def first_unwritten(array: np.ndarray) -> int | None:
    """The byte offset in ``array`` of its first byte that nothing has written, or ``None``: all written, or
    not tracked (arrays made by NumPy, and views that are not C-contiguous)."""
    if not array.flags.c_contiguous:
        return None
    flags = written_map(array.ctypes.data, array.nbytes)
    if flags is None:
        return None
    unwritten = np.flatnonzero(flags == 0)
    return int(unwritten[0]) if unwritten.size else None
