"""initcheck on device memory: arrays from ``sim.empty`` (the simulator's ``cudaMalloc``) are tracked byte by
byte, and a kernel reading a byte that no kernel wrote is reported with the kernel, thread, argument, offset
and source line; views are tracked, collected arrays are forgotten, writes that cannot be observed count as
writes, and the project's layers report nothing."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc
from scratchnet.device import SimDevice
from scratchnet.layers import SoftmaxCrossEntropy
from scratchnet.models import LeNet5
from scratchnet.optim import SGD
from scratchnet.sim.memory import is_tracked
from tests.nvrtc_headers import cuda_include_options

pytestmark = pytest.mark.sim

KERNELS = Path(__file__).resolve().parent / "sim_kernels" / "uninitialised.cu"


@pytest.fixture(scope="module")
def checked():
    return sim.load_module(KERNELS.read_text(), [], filename="uninitialised.cu", checks="initcheck")


@pytest.fixture(scope="module")
def unchecked():
    return sim.load_module(KERNELS.read_text(), [], filename="uninitialised.cu", checks="")


def _line(pattern: str) -> str:
    """``uninitialised.cu:<line>`` of the line holding ``pattern``."""
    lines = KERNELS.read_text().splitlines()
    return f"uninitialised.cu:{next(n for n, text in enumerate(lines, 1) if pattern in text)}"


def _sum(module, x: np.ndarray) -> float:
    total = np.zeros(1, np.float32)
    module.get_function("serial_sum")((1,), (1,), (x, total, np.int32(x.size)))
    return float(total[0])


def test_empty_is_poisoned_and_tracked():
    y = sim.empty((4, 8), np.float32)
    assert y.shape == (4, 8) and y.dtype == np.float32 and np.isnan(y).all()
    assert (sim.empty(5, np.int32) == -1).all()
    assert is_tracked(y) and not is_tracked(np.empty((4, 8), np.float32))


def test_a_read_before_any_write_is_reported(checked):
    y = sim.empty(64, np.float32)
    with pytest.raises(sim.InitcheckError) as caught:
        checked.get_function("read_before_write")((2,), (32,), (y, np.int32(64)))
    error = caught.value
    assert (error.kernel, error.block, error.thread) == ("read_before_write", (0, 0, 0), (7, 0, 0))
    assert error.buffer.startswith("'y'") and error.offset == 7 * 4 and error.access == "read"
    assert error.line == _line("y[i] = y[i] + 1.0f")
    assert "read of uninitialised device memory" in str(error) and "argument 'y'" in str(error)


def test_a_write_then_read_is_clean_and_computes(checked):
    x = np.arange(64, dtype=np.float32)
    y = sim.empty(64, np.float32)
    checked.get_function("write_then_read")((2,), (32,), (x, y, np.int32(64)))
    np.testing.assert_array_equal(y, 2 * x)
    assert _sum(checked, y) == 2 * x.sum()  # what the first launch wrote counts as written for the next


def test_a_grid_covering_part_of_a_buffer_is_found_by_the_next_kernel(checked):
    y = sim.empty(64, np.float32)
    checked.get_function("fill")((1,), (64,), (y, np.float32(1), np.int32(40)))  # y[40:] stays unwritten
    with pytest.raises(sim.InitcheckError) as caught:
        _sum(checked, y)
    error = caught.value
    assert (error.kernel, error.thread, error.offset) == ("serial_sum", (0, 0, 0), 40 * 4)
    assert error.buffer.startswith("'x'") and error.line == _line("sum += x[i]")
    assert _sum(checked, y[:40]) == 40  # the written part reads cleanly


def test_views_of_a_tracked_array_are_tracked_at_their_offset(checked):
    base = sim.empty(100, np.float32)
    assert is_tracked(base[3:5]) and is_tracked(base.reshape(10, 10)[6:])
    checked.get_function("fill")((1,), (64,), (base[10:50], np.float32(2), np.int32(40)))
    assert _sum(checked, base[10:50]) == 80  # flags set at byte 40 of the allocation, read there
    with pytest.raises(sim.InitcheckError) as caught:
        _sum(checked, base[8:50])  # base[8] and base[9] were never written
    assert caught.value.offset == 0
    with pytest.raises(sim.InitcheckError) as caught:
        checked.get_function("read_before_write")((1,), (64,), (base.reshape(10, 10)[6:], np.int32(40)))
    assert caught.value.offset == 7 * 4 and caught.value.thread == (7, 0, 0)


def test_a_collected_array_is_forgotten_so_its_reused_memory_is_not_flagged(checked):
    tracked = sim.empty(64, np.float32)
    address = tracked.ctypes.data
    del tracked
    gc.collect()
    plain_arrays = []
    for _ in range(64):  # NumPy hands the freed block out again within a few allocations of the same size
        plain_arrays.append(np.ones(64, np.float32))
        if plain_arrays[-1].ctypes.data == address:
            break
    reused = plain_arrays[-1]
    assert reused.ctypes.data == address, "NumPy did not reuse the freed memory; the test proves nothing"
    assert not is_tracked(reused)
    assert _sum(checked, reused) == 64


def test_an_unchecked_launch_counts_as_writing_its_outputs(checked, unchecked):
    y = sim.empty(64, np.float32)
    unchecked.get_function("fill")((1,), (64,), (y, np.float32(3), np.int32(40)))  # writes y[:40] only
    # No report: the whole of y counts as written, though y[40:] still holds the poison (NaN).
    assert np.isnan(_sum(checked, y))
    x = sim.empty(64, np.float32)
    _sum(unchecked, x)  # x is const there: reading it writes nothing
    with pytest.raises(sim.InitcheckError):
        _sum(checked, x)


def test_host_writes_are_marked_with_mark_written(checked):
    y = sim.empty(8, np.float32)
    y[...] = 1  # NumPy on the host: the simulator cannot see it ...
    with pytest.raises(sim.InitcheckError):
        _sum(checked, y)
    sim.mark_written(y)  # ... until told
    assert _sum(checked, y) == 8


def test_sim_device_tracks_only_with_initcheck():
    assert not is_tracked(SimDevice(checks="memcheck").empty((4,), np.float32))
    assert is_tracked(SimDevice(checks="initcheck").empty((4,), np.float32))
    assert is_tracked(SimDevice(checks="all").empty((4,), np.float32))


def test_copying_unwritten_device_memory_to_the_host_is_reported():
    device = SimDevice(checks="initcheck")
    y = device.empty((2, 3), np.float32)
    y[0] = 1.0  # the host writes the first row, and says so
    sim.mark_written(y[0])
    with pytest.raises(
        sim.InitcheckError, match=r"byte 12 \(element 3\) was allocated by empty\(\)"
    ) as caught:
        device.to_host(y)
    assert (caught.value.offset, caught.value.access) == (12, "read")
    np.testing.assert_array_equal(device.to_host(y[0]), 1.0)  # the written part copies
    sim.mark_written(y)
    assert device.to_host(y).shape == (2, 3)
    assert SimDevice(checks="memcheck").to_host(sim.empty(3, np.float32)).shape == (3,)  # initcheck off


def test_lenet5_training_step_is_clean_under_initcheck():
    """Forward, backward and two momentum steps of LeNet-5 on ``sim`` with initcheck: every intermediate
    buffer from ``device.empty`` is tracked, and every kernel writes what the next one reads."""
    device = SimDevice(checks="initcheck")
    model = LeNet5(device=device, seed=0)
    loss = SoftmaxCrossEntropy(device=device)
    optimizer = SGD(model, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = device.array(rng.standard_normal((2, 1, 28, 28)), dtype=np.float32)
    labels = device.array(np.array([3, 7]))
    for _ in range(2):
        logits = model.forward(x)
        assert is_tracked(logits)  # initcheck was on for the layers' outputs
        loss.forward(logits, labels)
        model.backward(loss.backward())
        optimizer.step()
    assert all(is_tracked(v) for v in optimizer.velocity.values())
    assert np.isfinite(device.to_host(logits)).all()


def test_kernels_are_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None or not cuda_include_options():
        pytest.skip("NVRTC and the CUDA headers are not installed")
    log = nvrtc.compile_source(KERNELS.read_text(), [], "sm_80", ["-std=c++17", *cuda_include_options()]).log
    assert log == ""
