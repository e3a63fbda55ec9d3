"""keep_freed_memory: freed memory stays in the process, so a step's arrays reuse the last step's pages."""

import platform
import subprocess
import sys

import pytest

# A training step in miniature: forty 1 MiB arrays made (and touched), then all freed, round after round.
# Prints the page faults of the last three rounds. Run in a fresh process: malloc's settings last as long
# as the process does.
ROUNDS = """
import resource, sys
import numpy as np
from scratchnet._memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def one_round():
    arrays = [np.ones(2**20 // 8) for _ in range(40)]
    del arrays
for _ in range(2):
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc")
def test_kept_memory_spares_the_page_faults_of_fresh_pages():
    default, kept = _page_faults("default"), _page_faults("keep")
    # 3 rounds x 40 MiB = 30720 pages of 4 KiB: the default malloc hands the memory back after each round
    # and faults it in again; kept, the rounds reuse it
    assert default > 10_000, default
    assert kept < 1_000, kept


@pytest.mark.slow  # four fresh processes
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc")
def test_the_page_fault_tool_counts_fewer_faults_with_memory_kept():
    from pathlib import Path

    tool = Path(__file__).parents[1] / "tools" / "page_faults.py"
    command = [sys.executable, str(tool), "--rounds", "1", "--steps", "3"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[-2:]}
    assert set(rows) == {"default", "kept"}, done.stdout
    assert float(rows["kept"][1]) < float(rows["default"][1]) / 10, done.stdout  # faults per step
