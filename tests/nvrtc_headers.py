"""For the tests' NVRTC compiles: the architectures they compile for, and where the CUDA headers of the PyPI
wheels are, for compiles that include them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
