"""Fewer false alarms, better named reports (sim_kernels/false_alarms.cu): same-value stores and two barrier
sites are warnings that ``checks="strict"`` turns into errors, constant-index shared writes satisfy
initcheck, and racecheck and initcheck reports name the array."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc

pytestmark = pytest.mark.sim

KERNELS = Path(__file__).resolve().parent / "sim_kernels" / "false_alarms.cu"
SOURCE = KERNELS.read_text()


def _line(text: str) -> str:
    """``false_alarms.cu:N`` of the first line containing ``text``."""
    return f"false_alarms.cu:{next(n for n, line in enumerate(SOURCE.splitlines(), 1) if text in line)}"


@pytest.fixture(scope="module")
def checked():
    return sim.load_module(SOURCE, filename=KERNELS.name, checks="all")


@pytest.fixture(scope="module")
def strict():
    return sim.load_module(SOURCE, filename=KERNELS.name, checks="all,strict")


def _bfs_args():
    frontier = np.array([1, 0, 1, 1, 0, 1, 0, 0], np.int32)
    neighbours = np.array([1, 2, 0, 4, 4, 6, 4, 7, 3, 1, 4, 1, 2, 3, 0, 5], np.int32)  # node k: 2k, 2k+1
    return frontier, neighbours, np.zeros(8, np.int32), np.zeros(1, np.int32), np.int32(8)


def test_every_lane_storing_the_same_sum_is_a_warning(checked, strict):
    x = np.arange(64, dtype=np.int32)
    sums = np.zeros(2, np.int32)
    with pytest.warns(sim.BenignRaceWarning, match="same value") as warned:
        checked.get_function("every_lane_stores_the_sum")((1,), (64,), (x, sums))
    np.testing.assert_array_equal(sums, x.reshape(2, 32).sum(1))
    assert "of argument 'sums'" in str(warned[0].message)
    with pytest.raises(sim.RacecheckError, match="both stored the same value") as caught:
        strict.get_function("every_lane_stores_the_sum")((1,), (64,), (x, sums))
    assert caught.value.line == caught.value.other_line == _line("sums[i / 32] = sum")


def test_many_threads_setting_a_flag_is_a_warning(checked, strict):
    frontier, neighbours, after, not_done, n = _bfs_args()
    with pytest.warns(sim.BenignRaceWarning) as warned:
        checked.get_function("bfs_step")((1,), (8,), (frontier, neighbours, after, not_done, n))
    expected = np.zeros(8, np.int32)
    expected[neighbours.reshape(8, 2)[frontier == 1].ravel()] = 1
    np.testing.assert_array_equal(after, expected)
    assert not_done[0] == 1
    messages = " ".join(str(w.message) for w in warned)
    assert "of argument 'not_done'" in messages and "of argument 'next'" in messages
    with pytest.raises(sim.RacecheckError, match="same value"):
        strict.get_function("bfs_step")((1,), (8,), _bfs_args())


def test_storing_different_values_is_still_a_race(checked):
    with pytest.raises(
        sim.RacecheckError, match=r"write after write\) on byte 0 of argument 'flag'"
    ) as caught:
        checked.get_function("last_writer_wins")((1,), (32,), (np.zeros(1, np.int32),))
    assert caught.value.line == _line("*flag = (int)threadIdx.x")


def test_two_halves_at_two_barrier_sites_run_with_a_warning(checked, strict):
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    with pytest.warns(sim.BarrierSitesWarning, match="released together") as warned:
        checked.get_function("two_halves")((1,), (64,), (x, y))
    np.testing.assert_array_equal(y, x[::-1])
    store = int(_line("tile[t + 32] = x[t + 32]").split(":")[1])
    assert all(f"false_alarms.cu:{line}" in str(warned[0].message) for line in (store + 1, store + 3))
    with pytest.raises(sim.SynccheckError, match="barrier divergence"):
        strict.get_function("two_halves")((1,), (64,), (x, y))


def test_constant_index_writes_then_computed_reads_pass_initcheck(checked):
    x = np.arange(1, 34, dtype=np.int32)
    y = np.zeros(16, np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked.get_function("constant_borders")((1,), (16,), (x, y))
    column, row = np.concatenate([[x[0]], x[1:16]]), np.concatenate([[x[0]], x[17:32]])
    np.testing.assert_array_equal(y, column + row)


def test_reports_name_the_shared_array(checked):
    racecheck = sim.load_module(SOURCE, filename=KERNELS.name, checks="racecheck")
    x = np.arange(32, dtype=np.float32)
    with pytest.raises(sim.RacecheckError, match=r"on byte \d+ of dynamic shared memory 'buffer'"):
        racecheck.get_function("dynamic_shared_race")(
            (1,), (32,), (x, np.zeros(32, np.float32)), shared_mem=128
        )
    with pytest.raises(sim.InitcheckError, match=r"byte \d+ of dynamic shared memory 'buffer'"):
        checked.get_function("dynamic_shared_race")(
            (1,), (32,), (x, np.zeros(32, np.float32)), shared_mem=128
        )


def test_warp_reports_give_file_and_line(checked):
    with pytest.raises(sim.SynccheckError, match="warp divergence") as caught:
        checked.get_function("lane_leaves_the_warp")((1,), (32,), (np.zeros(32, np.float32),))
    line = _line("__syncwarp();")
    assert caught.value.line == line and f"at {line} while lane 0" in str(caught.value)
    assert caught.value.other_thread == (0, 0, 0)


def test_kernels_are_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    assert nvrtc.compile_source(SOURCE, [], "sm_80").log == ""
