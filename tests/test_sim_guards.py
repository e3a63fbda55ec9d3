"""A launch without checks still reports out-of-bounds writes (sim_kernels/unchecked_writes.cu): near an
array by its guard bytes, further away by the guard pages, which fault instead of letting the write corrupt
other memory (the Python heap). Each report is made precise, with thread, line and size, by running the
launch again under memcheck; without that, the message says what an unchecked launch cannot see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc

pytestmark = pytest.mark.sim

KERNELS = Path(__file__).resolve().parent / "sim_kernels" / "unchecked_writes.cu"
SOURCE = KERNELS.read_text()
LINE = f"unchecked_writes.cu:{next(n for n, t in enumerate(SOURCE.splitlines(), 1) if 'y[reach' in t)}"


@pytest.fixture
def unchecked():
    return sim.load_module(SOURCE, filename=KERNELS.name, checks="")


@pytest.mark.parametrize(
    "reach, offset",
    [(3, 4 * 66), (-2, -8), (100_000, 4 * 100_063), (-100_000, -400_000)],
    ids=["guard bytes after", "guard bytes before", "guard pages after", "guard pages before"],
)
def test_an_unchecked_write_outside_is_reported_with_thread_line_and_size(unchecked, reach, offset):
    y = np.zeros(64, np.float32)
    with pytest.raises(sim.MemcheckError, match=r"out-of-bounds write of 4 byte\(s\)") as caught:
        unchecked.get_function("write_outside")((1,), (32,), (y, np.int32(64), np.int64(reach)))
    error = caught.value
    assert (error.thread, error.line, error.offset) == ((5, 0, 0), LINE, offset)
    assert error.buffer.startswith("'y'") and 'running the launch again with checks="memcheck"' in str(error)
    assert not y.any()  # the failed launch left the array as it was


def test_without_the_rerun_the_message_says_what_it_cannot_see(unchecked):
    unchecked.checked_variant = None
    y = np.zeros(64, np.float32)
    with pytest.raises(sim.KernelCrashError) as caught:
        unchecked.get_function("write_outside")((1,), (32,), (y, np.int32(64), np.int64(100_000)))
    message = str(caught.value)
    assert "in the guard pages 399996 byte(s) past the end of argument 'y' (float*, 64 elements)" in message
    assert "reads nearer, and accesses elsewhere, go unseen" in message and 'checks="memcheck"' in message
    assert caught.value.buffer.startswith("'y'")
    with pytest.raises(sim.MemcheckError, match="reaching 12 byte") as caught:
        unchecked.get_function("write_outside")((1,), (32,), (y, np.int32(64), np.int64(3)))
    assert caught.value.thread is None
    unchecked.get_function("write_outside")(
        (1,), (32,), (y, np.int32(64), np.int64(0))
    )  # the process lives on
    assert y[63] == 1


def test_kernels_are_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    assert nvrtc.compile_source(SOURCE, [], "sm_80").log == ""
