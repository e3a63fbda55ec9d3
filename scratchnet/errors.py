"""The exceptions scratchnet raises on purpose, each with a message that names the problem and a way out."""

import functools
import sys
from collections.abc import Callable


class DeviceError(RuntimeError):
    """A device cannot be used: no CuPy, no CUDA GPU, no C++ compiler for the simulator, unknown name."""


class KernelLaunchError(ValueError):
    """A kernel launch whose arguments do not match the kernel's C signature, or break CUDA's limits."""


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt, or cannot be downloaded; the message says where to put the files."""


def cli_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a command line's ``main``: a :class:`DeviceError` (no GPU, no NVRTC, out of GPU memory, ...)
    becomes exit status 2 and one ``error: ...`` message on stderr instead of a traceback."""

    @functools.wraps(main)
    def guarded(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except DeviceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return guarded
