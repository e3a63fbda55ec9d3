"""A checked build sees every access: bugs at constant offsets, in the store half of ``x += ...``, in shared
arrays nothing writes, in atomics, and misaligned accesses are reported with the array, thread and line
(sim_kernels/unseen_bugs.cu); the correct kernels there are not. Each kernel file is real CUDA for NVRTC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc

pytestmark = pytest.mark.sim

KERNELS = Path(__file__).resolve().parent / "sim_kernels" / "unseen_bugs.cu"
SOURCE = KERNELS.read_text()


def _line(text: str) -> str:
    """``unseen_bugs.cu:N`` of the first line containing ``text``."""
    number = next(n for n, line in enumerate(SOURCE.splitlines(), 1) if text in line)
    return f"unseen_bugs.cu:{number}"


@pytest.fixture(scope="module")
def checked():
    return sim.load_module(SOURCE, filename=KERNELS.name, checks="all")


def test_a_race_on_a_shared_scalar(checked):
    with pytest.raises(sim.RacecheckError, match="write after write") as caught:
        checked.get_function("shared_scalar_race")((1,), (32,), (np.zeros(32, np.int32),))
    assert caught.value.line == caught.value.other_line == _line("winner = threadIdx.x")


def test_a_race_on_global_memory_inside_a_block(checked):
    x = np.ones(64, np.float32)
    with pytest.raises(sim.RacecheckError, match="with no __syncthreads") as caught:
        checked.get_function("global_sum_race")((2,), (32,), (x, np.zeros(2, np.float32)))
    assert caught.value.buffer.startswith("'y'") and caught.value.line == _line("y[blockIdx.x] +=")
    assert f"on byte {4 * caught.value.block[0]} of argument 'y' (float*, 2 elements)" in str(caught.value)


def test_the_volatile_warp_tail_is_a_race_between_lanes(checked):
    x = np.ones(64, np.float32)
    with pytest.raises(sim.RacecheckError, match="with no __syncthreads") as caught:
        checked.get_function("warp_tail")((1,), (64,), (x, np.zeros(1, np.float32), np.int32(0)))
    assert caught.value.thread[0] < 32 and caught.value.other_thread[0] < 32  # two lanes of warp 0
    assert caught.value.line.startswith("unseen_bugs.cu:")


def test_an_atomic_mixed_with_a_plain_store(checked):
    with pytest.raises(sim.RacecheckError, match="atomic") as caught:
        checked.get_function("atomic_and_plain_store")((1,), (32,), (np.zeros(1, np.int32),))
    assert {caught.value.line, caught.value.other_line} == {_line("count[0] = 0"), _line("atomicAdd(count")}


def test_a_read_of_a_shared_array_nothing_writes(checked):
    with pytest.raises(sim.InitcheckError, match="uninitialised shared memory") as caught:
        checked.get_function("never_written_shared")((1,), (32,), (np.zeros(32, np.float32),))
    assert caught.value.line == _line("never[threadIdx.x]")
    assert f"wrote byte {4 * caught.value.thread[0]} of __shared__ 'never' in never_written_shared" in str(
        caught.value
    )


def test_an_atomic_past_the_end_of_a_shared_array(checked):
    with pytest.raises(
        sim.MemcheckError, match=r"write of 4 byte\(s\) at byte offset \d+ of __shared__ 'bins'"
    ) as caught:
        checked.get_function("atomic_past_shared_end")((1,), (32,), (np.zeros(16, np.int32),))
    assert caught.value.offset == 4 * caught.value.thread[0] >= 64
    assert caught.value.line == _line("atomicAdd(&bins")


@pytest.mark.parametrize(
    "which, message, text",
    [
        (0, r"misaligned read of 16 byte\(s\) at byte \d+ of argument 'x'", "(x + 1)[threadIdx.x]"),
        (1, r"misaligned read of 4 byte\(s\) at byte 1 of argument 'bytes'", "(bytes + 1)"),
        pytest.param(
            2,
            "misaligned",
            "float4 v =",
            marks=pytest.mark.xfail(
                reason="g++ splits a float4 whose parts are used one by one into four aligned float loads",
                strict=True,
            ),
        ),
    ],
)
def test_misaligned_accesses(checked, which, message, text):
    args = (np.zeros(256, np.float32), np.zeros(16, np.uint8), np.zeros(128, np.float32), np.int32(which))
    with pytest.raises(sim.MemcheckError, match=message) as caught:
        checked.get_function("misaligned")((1,), (32,), args)
    assert caught.value.offset % 16 in (1, 4) and caught.value.line == _line(text)


def test_correct_kernels_are_not_reported(checked):
    y = np.zeros(32, np.float32)
    checked.get_function("constant_index_table")((1,), (32,), (y,))
    np.testing.assert_array_equal(y, np.arange(32) % 4 + 1)
    x = np.random.default_rng(5).standard_normal(64).astype(np.float32)
    votes = np.zeros(64, np.int32)
    checked.get_function("ballot_in_branch")((1,), (64,), (x, votes))
    positive = (x > 0).reshape(2, 32)
    np.testing.assert_array_equal(votes, (positive * positive.sum(1, keepdims=True)).ravel())
    total = np.zeros(1, np.float32)
    checked.get_function("warp_tail")((1,), (64,), (x, total, np.int32(1)))
    np.testing.assert_allclose(total[0], x.sum(), rtol=1e-5)


def test_kernels_are_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    assert nvrtc.compile_source(SOURCE, [], "sm_80").log == ""
