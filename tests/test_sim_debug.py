"""The simulator's debug build (-O0 -g, its own cache entry) and the documented gdb recipe: stop in one
thread of one block, print its locals, see the kernel in the backtrace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim

pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parent.parent
KERNEL = """\
extern "C" __global__ void scale(const float* x, float* y, float alpha, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float value = alpha * x[i];
    if (i < n) y[i] = value;
}
"""
SCRIPT = """\
import sys
import numpy as np
from scratchnet import sim
path = sys.argv[1]
module = sim.load_module(open(path).read(), [], filename=path)
x = np.arange(256, dtype=np.float32)
y = np.zeros_like(x)
module.get_function("scale")((4,), (64,), (x, y, np.float32(2.0), np.int32(256)))
print("y[133] =", y[133])
"""


def test_debug_build_is_its_own_cache_entry_and_runs(monkeypatch):
    plain = sim.load_module(KERNEL, [], debug=False)
    debug = sim.load_module(KERNEL, [], debug=True)
    assert debug.build.library != plain.build.library
    x, y = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    debug.get_function("scale")((1,), (64,), (x, y, np.float32(3.0), np.int32(64)))
    np.testing.assert_array_equal(y, 3 * x)
    monkeypatch.setenv("SCRATCHNET_SIM_DEBUG", "yes")
    with pytest.raises(ValueError, match="SCRATCHNET_SIM_DEBUG must be 0 or 1"):
        sim.load_module(KERNEL, [])


@pytest.mark.slow  # gdb runs a fresh interpreter
def test_gdb_stops_in_one_thread_of_one_block(tmp_path):
    """The recipe of docs/simulator.md: a conditional breakpoint on a line of the .cu file."""
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.skip("gdb is not installed")
    kernel, script = tmp_path / "scale.cu", tmp_path / "run.py"
    kernel.write_text(KERNEL)
    script.write_text(SCRIPT)
    condition = "sim_rt::current_state().block_idx.x == 2 && sim_rt::current_state().thread_idx.x == 5"
    command = [
        gdb,
        "-q",
        "-batch",
        "-ex",
        "set breakpoint pending on",
        "-ex",
        f"break scale.cu:4 if {condition}",
    ]
    command += ["-ex", "run", "-ex", "print i", "-ex", "print value", "-ex", "bt 1", "-ex", "kill"]
    command += ["--args", sys.executable, str(script), str(kernel)]
    env = {**os.environ, "SCRATCHNET_SIM_DEBUG": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert "hit Breakpoint 1, scale (" in result.stdout, result.stdout + result.stderr
    assert "$1 = 133" in result.stdout and "$2 = 266" in result.stdout  # block 2, thread 5: i = 2 * 64 + 5
