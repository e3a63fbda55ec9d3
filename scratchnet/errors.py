"""The exceptions scratchnet raises on purpose, each with a message that names the problem and a way out,
and how the command lines report them: one ``error: ...`` line on stderr and an exit code,

    0      success
    1      training failed (diverged: a NaN/inf loss or parameter)
    2      bad input (a flag, a file, a dataset, a run folder, a full disk, ranks started unalike)
    130    interrupted (Ctrl-C)
    128+N  with --processes: a rank was killed by signal N (137: SIGKILL, often the system out of memory;
           143: SIGTERM); the error line names the rank
"""

import argparse
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
            return fail(e)

    return guarded


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose bad-flag message is one line (``error: ...``) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit code argparse asked for (2 for bad flags, 0 for --help):
    a command line's ``main(argv)`` then returns it instead of raising SystemExit inside a caller."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2


def fail(message: object, code: int = 2) -> int:
    """Print the one ``error: ...`` line of a command line and return its exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
