"""Trust in the simulator's build cache: damaged entries are rebuilt, never loaded; a compiler that cannot
build a loadable library, a bad seed and orphaned build folders give clear errors or are cleaned up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import sources
from scratchnet.sim import compiler, launcher

pytestmark = [pytest.mark.sim, pytest.mark.slow]  # each test compiles in a fresh cache: 10-17 s

SOURCE = 'extern "C" __global__ void fill(float* y, float v) { y[threadIdx.x] = v; }\n'
OTHER = 'extern "C" __global__ void twice(float* y) { y[threadIdx.x] *= 2; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_CACHE", str(tmp_path))
    return tmp_path / "sim"


def _fill_works(module) -> None:
    y = np.zeros(4, np.float32)
    module.get_function("fill")((1,), (4,), (y, np.float32(1.5)))
    np.testing.assert_array_equal(y, 1.5)


def _damage_truncate(library: Path, info: Path, cache: Path) -> None:
    library.write_bytes(library.read_bytes()[: library.stat().st_size // 2])


def _damage_empty(library: Path, info: Path, cache: Path) -> None:
    library.write_bytes(b"")


def _damage_foreign(library: Path, info: Path, cache: Path) -> None:
    shutil.copy(sim.load_module(OTHER, []).build.library, library)  # a valid library, but another module's


def _damage_json(library: Path, info: Path, cache: Path) -> None:
    info.write_text("{not json")


def _damage_json_fields(library: Path, info: Path, cache: Path) -> None:
    info.write_text(json.dumps({"signatures": {}}))


@pytest.mark.parametrize(
    "damage", [_damage_truncate, _damage_empty, _damage_foreign, _damage_json, _damage_json_fields]
)
def test_a_damaged_cache_entry_is_rebuilt_not_loaded(cache, damage):
    # Built by another process: a library this process has loaded must not be damaged under it.
    code = f"from scratchnet import sim; print(sim.load_module({SOURCE!r}, []).build.library)"
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    library = Path(built.stdout.strip())
    damage(library, library.with_suffix(".json"), cache)
    rebuilt = sim.load_module(SOURCE, [])  # in this process: a truncated library loaded here would SIGBUS
    assert rebuilt.build.library == library
    _fill_works(rebuilt)


def test_a_c_compiler_that_cannot_link_cpp_is_a_clear_error(cache, monkeypatch):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    monkeypatch.setenv("CXX", "gcc")
    for _ in range(2):  # nothing unloadable was cached by the first try
        with pytest.raises(sim.CompileError, match=r"cannot be loaded.*set \$CXX to g\+\+ or clang\+\+"):
            sim.load_module(SOURCE, [])
    assert not list(cache.glob("*.so"))


def test_a_compiler_that_does_nothing_is_a_clear_error(cache, monkeypatch):
    monkeypatch.setenv("CXX", shutil.which("true") or "/bin/true")
    with pytest.raises(sim.CompileError, match=r"did not preprocess.*set \$CXX"):
        sim.load_module(SOURCE, [])


def test_a_bad_seed_is_a_clear_error(cache, monkeypatch):
    module = sim.load_module(SOURCE, [])
    monkeypatch.setenv("SCRATCHNET_SIM_SEED", "abc")
    monkeypatch.setattr(launcher, "_seed", {"base": None, "launches": 0})
    with pytest.raises(ValueError, match="SCRATCHNET_SIM_SEED must be an integer, got 'abc'"):
        _fill_works(module)


def test_orphan_build_folders_are_removed_but_live_ones_spared(cache):
    cache.mkdir(parents=True)
    finished = subprocess.Popen(["true"])
    finished.wait()
    orphan, live = cache / "build-orphan", cache / "build-live"
    for folder, pid in ((orphan, finished.pid), (live, os.getpid())):
        folder.mkdir()
        (folder / "pid").write_text(str(pid))
        (folder / "module.cpp").write_text("// half-written")
    sim.load_module(SOURCE, [])
    assert not orphan.exists() and live.exists()
    compiler.remove_orphan_builds(cache)
    assert live.exists()


def test_a_folder_another_process_removes_meanwhile_is_no_error(cache, monkeypatch):
    """Ranks and parallel test runs tidy the cache at once: a folder listed, then removed by another
    process before this one looks at its age, must not stop this build."""
    cache.mkdir(parents=True)
    gone = cache / "build-gone"  # listed, but no longer there when its pid and age are read
    monkeypatch.setattr(type(cache), "glob", lambda self, pattern: iter([gone]))
    compiler.remove_orphan_builds(cache)
    assert not gone.exists()


def test_an_unwritable_cache_is_named_not_blamed_on_the_run_folder(tmp_path):
    (tmp_path / "file").write_text("a regular file: nothing can be created under it")
    cache = tmp_path / "file" / "cache"
    command = [sys.executable, "-m", "scratchnet.train", "--device", "sim", "--limit-train", "70"]
    command += [
        "--limit-test",
        "32",
        "--epochs",
        "1",
        "--no-progress",
        "--no-plots",
        "--out",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "SCRATCHNET_CACHE": str(cache), "PYTHONPATH": str(Path(sim.__file__).parents[2])}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)  # (no built kernels)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"the simulator cannot write its build cache {cache}" in errors[0]
    assert "SCRATCHNET_CACHE" in errors[0] and "run folder" not in errors[0]


def test_an_edited_shared_header_rebuilds_what_includes_it(cache, tmp_path, monkeypatch):
    """The build is keyed by kernels/*.cuh too: a kernel file that did not change but includes a header
    that did is rebuilt, not served from the cache."""
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    monkeypatch.setattr(sources, "kernel_dir", lambda: kernels)
    source = '#include "common.cuh"\nextern "C" __global__ void fill(float* y) { y[threadIdx.x] = FILL; }\n'
    for value in (1.5, 2.5):
        (kernels / "common.cuh").write_text(f"#define FILL {value}f\n")
        y = np.zeros(4, np.float32)
        sim.load_module(source, []).get_function("fill")((1,), (4,), (y,))
        np.testing.assert_array_equal(y, value)
