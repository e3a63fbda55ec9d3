"""Compile CUDA sources with NVRTC, the runtime compiler CuPy uses, without a GPU or a CUDA toolkit.

NVRTC ships on PyPI (``pip install "nvidia-cuda-nvrtc==13.*"``, CUDA 13) as a shared library, which this
module finds under ``site-packages/nvidia/`` and calls through ctypes. Compiling needs no GPU, so tests check
on any machine that every kernel file compiles for real GPU architectures (``sm_75`` ... ``sm_120``)
without warnings::

    from scratchnet._cuda import nvrtc
    result = nvrtc.compile_source(source, ["relu_forward<float>"], arch="sm_80")
    result.log              # the compiler's messages ("" when clean)
    result.lowered_names    # {"relu_forward<float>": "_Z12relu_forwardIfEvPKT_PS0_x"}
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from scratchnet._cuda import sources
from scratchnet.errors import DeviceError

# The wheels' layouts: nvidia-cuda-nvrtc 13 (nvidia/cu13/lib) and 12 (nvidia/cuda_nvrtc/lib).
_LIBRARY_PATTERNS = ("nvidia/cu*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*")


class NvrtcError(DeviceError):
    """NVRTC is missing, or rejected a source (the message holds the compiler log)."""


@dataclass(frozen=True)
class CompileResult:
    log: str  # warnings (and notes) printed by the compiler; "" for a clean compile
    lowered_names: dict[str, str]  # name expression -> mangled symbol name in the compiled code


_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)'.*?Used (\d+) registers", re.S)


def registers(source: str, name_expressions: Sequence[str], arch: str, filename: str = "kernel.cu"):
    """Registers per thread of each kernel, as the assembler (ptxas) allocates them for ``arch``:
    ``{"gemm_v1_naive<double>": 64, ...}``. A block of B threads needs B times as many registers, and a
    multiprocessor offers 64K per block: more and the launch fails ("too many resources requested")."""
    result = compile_source(
        source, name_expressions, arch=arch, options=("-std=c++17", "--ptxas-options=-v"), filename=filename
    )
    used = dict(_PTXAS_ENTRY.findall(result.log))
    return {name: int(used[mangled]) for name, mangled in result.lowered_names.items()}


def find_library() -> str | None:
    """The path of ``libnvrtc.so`` from the PyPI wheel on ``sys.path``, or ``None``."""
    for root in sys.path:
        for pattern in _LIBRARY_PATTERNS:
            # The plain "libnvrtc.so.13", not "libnvrtc.so.13.0.88" nor the builtins library.
            candidates = sorted(
                path for path in glob.glob(os.path.join(root, pattern)) if "builtins" not in path
            )
            if candidates:
                return min(candidates, key=len)
    return None


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    path = find_library()
    if path is None:
        raise NvrtcError('NVRTC is not installed: pip install "nvidia-cuda-nvrtc==13.*"')
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(_library().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def supported_archs() -> list[int]:
    """The compute capabilities this NVRTC can compile for, e.g. ``[75, 80, 86, ..., 120]``."""
    lib = _library()
    count = ctypes.c_int()
    _check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)), "nvrtcGetNumSupportedArchs")
    archs = (ctypes.c_int * count.value)()
    _check(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
    return list(archs)


def _check(status: int, call: str, log: str = "") -> None:
    if status != 0:
        message = _library().nvrtcGetErrorString(status).decode()
        raise NvrtcError(f"{call} failed: {message}" + (f"\n{log}" if log else ""))


def compile_source(
    source: str,
    name_expressions: Sequence[str] = (),
    arch: str = "sm_80",
    options: Sequence[str] = ("-std=c++17",),
    filename: str = "kernel.cu",
) -> CompileResult:
    """Compile ``source`` for ``arch`` (e.g. ``"sm_75"``), with ``kernels/`` on the include path (the
    shared ``common.cuh``); raise :class:`NvrtcError` with the log on error."""
    lib = _library()
    program = ctypes.c_void_p()
    _check(
        lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), filename.encode(), 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        for expression in name_expressions:
            _check(lib.nvrtcAddNameExpression(program, expression.encode()), "nvrtcAddNameExpression")
        flags = [f"--gpu-architecture={arch}", f"--include-path={sources.kernel_dir()}", *options]
        argv = (ctypes.c_char_p * len(flags))(*[f.encode() for f in flags])
        status = lib.nvrtcCompileProgram(program, len(flags), argv)
        log = _program_log(lib, program)
        _check(status, f"compiling {filename} for {arch}", log)
        lowered = {}
        for expression in name_expressions:
            name = ctypes.c_char_p()
            _check(
                lib.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)),
                "nvrtcGetLoweredName",
            )
            lowered[expression] = name.value.decode()
        return CompileResult(log=log, lowered_names=lowered)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def _program_log(lib: ctypes.CDLL, program: ctypes.c_void_p) -> str:
    size = ctypes.c_size_t()
    _check(lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
    buffer = ctypes.create_string_buffer(size.value + 1)
    _check(lib.nvrtcGetProgramLog(program, buffer), "nvrtcGetProgramLog")
    return buffer.value.decode(errors="replace").strip()
