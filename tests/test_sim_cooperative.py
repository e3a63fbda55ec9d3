"""Cooperative launches: ``this_grid().sync()`` works in a module loaded with
``enable_cooperative_groups=True`` on ``sim`` (sim_kernels/real_cuda.cu's grid_sum), and the flag reaches
CuPy's ``RawModule`` on ``gpu``; without it, grid.sync() is a clear error naming the flag."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from scratchnet import cupy_backend, sim
from scratchnet.errors import KernelLaunchError

pytestmark = pytest.mark.sim

KERNELS = Path(__file__).resolve().parent / "sim_kernels" / "real_cuda.cu"
SOURCE = KERNELS.read_text()
SYNC_LINE = next(n for n, line in enumerate(SOURCE.splitlines(), 1) if "grid.sync();" in line)


def _grid_sum(module, blocks: int = 4, threads: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(7).standard_normal(blocks * threads).astype(np.float32)
    partial, total = np.zeros(blocks, np.float32), np.zeros(1, np.float32)
    module.get_function("grid_sum")((blocks,), (threads,), (x, partial, total))
    return x, total


@pytest.mark.parametrize("checks", ["", "all"])
def test_grid_sync_under_a_cooperative_launch(checks):
    module = sim.load_module(SOURCE, filename=KERNELS.name, checks=checks, enable_cooperative_groups=True)
    x, total = _grid_sum(module)
    np.testing.assert_allclose(total[0], x.sum(), rtol=1e-5)
    x, total = _grid_sum(module, blocks=12, threads=32)  # launches do not share their blocks' state
    np.testing.assert_allclose(total[0], x.sum(), rtol=1e-5)


def test_grid_sync_without_a_cooperative_launch_names_the_flag():
    module = sim.load_module(SOURCE, filename=KERNELS.name)
    with pytest.raises(sim.KernelTrapError, match="enable_cooperative_groups=True") as caught:
        _grid_sum(module)
    assert f"real_cuda.cu:{SYNC_LINE}" in str(caught.value)


def test_a_cooperative_grid_too_large_to_be_resident_is_refused():
    module = sim.load_module(SOURCE, filename=KERNELS.name, enable_cooperative_groups=True)
    with pytest.raises(KernelLaunchError, match="needs every block resident at once"):
        _grid_sum(module, blocks=1024, threads=32)


def test_the_gpu_passes_the_flag_to_cupy(monkeypatch):
    made = []

    class RawModule:  # a stand-in for cupy.RawModule that remembers how it was made
        def __init__(self, **kwargs):
            made.append(kwargs)

    monkeypatch.setattr(cupy_backend, "cupy", lambda: types.SimpleNamespace(RawModule=RawModule))
    cupy_backend.load_module(SOURCE, [], "real_cuda.cu", enable_cooperative_groups=True)
    cupy_backend.load_module(SOURCE, [], "real_cuda.cu")
    assert made[0]["enable_cooperative_groups"] is True and "enable_cooperative_groups" not in made[1]
