"""For the tests' NVRTC compiles: the architectures they compile for, the options CuPy compiles the kernel
files with, and where the CUDA headers of the PyPI wheels are, for compiles that include them."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest

from scratchnet import cupy_backend

ARCHS = ["sm_75", "sm_80", "sm_90", "sm_120"]
# The contributor loop (-m "not slow") compiles every kernel for one architecture; the whole suite for all.
ARCH_PARAMS = [arch if arch == "sm_80" else pytest.param(arch, marks=pytest.mark.slow) for arch in ARCHS]


def cuda_include_options() -> list[str]:
    """``-I`` options for the ``nvidia-cuda-runtime`` headers (``cooperative_groups.h``) and the
    ``nvidia-cuda-cccl`` ones (``cuda/std/...``, which they include); empty when the wheels are missing."""
    options = []
    for root in map(Path, sys.path):
        for folder in sorted(root.glob("nvidia/cu*/include")):
            if (folder / "cooperative_groups.h").is_file():
                options.append(f"-I{folder}")
                if (folder / "cccl").is_dir():
                    options.append(f"-I{folder / 'cccl'}")
        if options:
            return options
    return options


# What CuPy adds to a RawModule's own options before NVRTC compiles it, read in the cupy-cuda13x 14.2.0
# wheel (the same source as cupy-cuda12x's):
#   cupy/cuda/compiler.py, _compile_with_cache_cuda:          -ftz=true (float denormals flushed to zero)
#   cupy/cuda/compiler.py, _compile_using_nvrtc_no_warning:   -arch=sm_XX (a cubin for the device's compute
#       capability, capped at NVRTC's newest) and --device-as-default-execution-space; --pch only when
#       CUPY_NVRTC_USE_PCH=1
#   cupy/_core/core.pyx, assemble_cupy_compiler_options:      -I paths of CuPy's bundled CCCL (before the
#       module's options), of its own headers and of the CUDA toolkit's include folder (after them);
#       --std=c++14 only for a module that names no -std (scratchnet's name -std=c++17).
# -arch is compile_source's --gpu-architecture. No kernel here includes CuPy's headers or CCCL, so the
# compile puts the nvidia wheels' CUDA headers (cuda_include_options) where CuPy puts the toolkit's.
# Re-read those functions when the pin in pyproject.toml moves (test_nvrtc.py checks it says CUPY_PIN).
CUPY_PIN = "14.2"
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


def module_options() -> tuple[str, ...]:
    """The options scratchnet's gpu device gives ``cupy.RawModule`` (cupy_backend.load_module: -std, the
    kernels/ include path, the headers' digest), captured from a stand-in for CuPy."""
    captured = []

    class RecordingCupy:
        def RawModule(self, code, options=(), name_expressions=None):  # noqa: N802 - CuPy's name
            captured.append(tuple(options))

    with mock.patch.object(cupy_backend, "cupy", RecordingCupy):
        cupy_backend.load_module("", [], "options.cu")
    return captured[0]


def cupy_nvrtc_options() -> list[str]:
    """Every option NVRTC gets when the gpu device compiles a kernel file through CuPy 14.2, but -arch (which
    compile_source sets): the module's own, CuPy's, and the CUDA headers' include paths."""
    return [*module_options(), *CUPY_OPTIONS, *cuda_include_options()]
