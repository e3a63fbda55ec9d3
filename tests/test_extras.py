"""The package extras never mix CUDA majors: CuPy loads whichever libnvrtc it finds first."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def cuda_majors(requirements: list[str]) -> set[int]:
    """The CUDA major versions that requirement strings pull in: cupy-cudaNNx, nvidia-*-cuNN, and the
    unsuffixed nvidia-cuda-* wheels of CUDA 13 (whose version, >=13, is the major)."""
    majors = set()
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        if m := re.fullmatch(r"cupy-cuda(\d+)x", name):
            majors.add(int(m.group(1)))
        elif m := re.fullmatch(r"nvidia-[a-z-]+-cu(\d+)", name):
            majors.add(int(m.group(1)))
        elif name.startswith("nvidia-cuda-") and (m := re.search(r">=\s*(\d+)", requirement)):
            majors.add(int(m.group(1)))
    return majors


def test_the_parser_sees_each_spelling():
    assert cuda_majors(["cupy-cuda12x[ctk]>=14.2"]) == {12}
    assert cuda_majors(["nvidia-cuda-nvrtc-cu12>=12.4"]) == {12}
    assert cuda_majors(["nvidia-cuda-nvrtc>=13,<14", "pytest>=7"]) == {13}
    assert cuda_majors(["cupy-cuda12x>=14", "nvidia-cuda-nvrtc>=13"]) == {12, 13}  # the old, mixed setup


def test_each_extra_and_the_gpu_dev_pair_name_one_cuda_major():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for name, requirements in extras.items():
        assert len(cuda_majors(requirements)) <= 1, f"extra {name!r} mixes CUDA majors: {requirements}"
    assert cuda_majors(extras["gpu"] + extras["dev"]) == {13}
    assert cuda_majors(extras["gpu12"]) == {12}
