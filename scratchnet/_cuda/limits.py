"""CUDA's launch limits and launch arithmetic, in one place for the ``gpu`` launch helper and the simulator.

The limits hold on every GPU from compute capability 3.0 up (CUDA C++ Programming Guide, "Compute
Capabilities", table "Technical Specifications per Compute Capability"):

* at most 1024 threads in a block, with ``blockDim`` at most (1024, 1024, 64);
* ``gridDim`` at most (2^31 - 1, 65535, 65535);
* 48 KiB of shared memory per block (static plus dynamic) unless a kernel opts in to more.

A launch that breaks one of them fails on a GPU with a terse driver error ("invalid configuration
argument"); :func:`check_launch` names the kernel, the axis and the limit instead.
"""

from __future__ import annotations

import numpy as np

from scratchnet.errors import KernelLaunchError

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED_BYTES = 48 * 1024


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for a >= 0, b > 0: the number of blocks of ``b`` threads that cover ``a`` elements."""
    return (a + b - 1) // b


def dim3(dims, what: str) -> tuple[int, int, int]:
    """``dims`` as CUDA's ``dim3``: 1 to 3 positive integers, padded with 1s to ``(x, y, z)``.

    ``what`` names the value in the error, e.g. ``"relu_forward<float>: grid"``.
    """
    values = dims if isinstance(dims, tuple | list) else (dims,)
    if not 1 <= len(values) <= 3 or not all(isinstance(d, int | np.integer) for d in values):
        raise KernelLaunchError(f"{what} must be 1 to 3 integers, got {dims!r}")
    values = tuple(int(d) for d in values) + (1,) * (3 - len(values))
    if min(values) < 1:
        raise KernelLaunchError(f"{what} sizes must be >= 1, got {values}")
    return values


def check_launch(kernel_name: str, grid, block, shared_bytes: int = 0, static_shared_bytes: int = 0) -> None:
    """Raise :class:`KernelLaunchError` naming the broken limit if ``grid``/``block`` (dim3 tuples) or the
    shared memory per block exceed what CUDA allows: ``static_shared_bytes`` (the kernel's ``__shared__``
    arrays, from the compiled kernel) plus ``shared_bytes`` (dynamic, asked for at the launch)."""
    threads = block[0] * block[1] * block[2]
    if threads > MAX_THREADS_PER_BLOCK:
        raise KernelLaunchError(
            f"{kernel_name}: block {tuple(block)} has {threads} threads, more than {MAX_THREADS_PER_BLOCK} "
            "(CUDA's limit per block)"
        )
    for what, dims, limits in (("block", block, MAX_BLOCK), ("grid", grid, MAX_GRID)):
        for axis, size, limit in zip("xyz", dims, limits, strict=True):
            if size > limit:
                raise KernelLaunchError(f"{kernel_name}: {what}.{axis} = {size} exceeds CUDA's limit {limit}")
    total = static_shared_bytes + shared_bytes
    if total > MAX_SHARED_BYTES:
        raise KernelLaunchError(
            f"{kernel_name} asks for {total} bytes of shared memory per block (static {static_shared_bytes} "
            f"+ dynamic {shared_bytes}); CUDA allows {MAX_SHARED_BYTES} bytes (48 KiB)"
        )
