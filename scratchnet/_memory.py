"""Keep freed memory in the process from one training step to the next (glibc's malloc, Linux).

A NumPy training step allocates its arrays afresh (each layer's output, its gradient, temporaries) and has
freed most of them by the step's end. glibc's malloc serves an array larger than its mmap threshold with
pages of its own, handed back to the system when the array is freed, and hands back the free memory at
the top of its heap once more than its trim threshold lies there. Either way the next step's arrays land
on pages the kernel must supply again: a page fault and 4 KiB of zeros per page. ``python
tools/page_faults.py`` counts them: some five hundred per LeNet-5 step at batch 64, and the step's time
with and without them (docs/performance.md quotes its output).

:func:`keep_freed_memory` raises both thresholds, so that freed memory stays in the process for the next
step, as PyTorch's caching allocator keeps it on the GPU. The resident set then stays at the step's peak
between steps instead of falling back. The trainer and the speed benchmarks (both libraries' processes
alike) call it; lessons and tests run with the allocator's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = (
    32 << 20
)  # the largest glibc accepts on 64-bit systems; larger arrays still get their own pages
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top handed back only beyond 1 GiB


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory (see the module docstring); False, changing nothing, where
    the C library is not glibc (macOS, musl) or refuses the values."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # no C library found by that name, or no mallopt in it
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
