"""Devices, the kernel signature parser and the launch helper's checks (no GPU needed)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import scratchnet as sn
from scratchnet._cuda.launch import Kernel
from scratchnet.device import Device, kernel_dir
from scratchnet.errors import DeviceError, KernelLaunchError
from scratchnet.sim import parse_kernels

SOURCE = """
// one thread per element
template <typename T>
__global__ void scale(const T* __restrict__ x, T* y, T alpha, long long n) { }

/* a plain C kernel */
extern "C" __global__ void fill_int(int* out, int value, unsigned int n) { }
"""


def test_parser_finds_template_instances_and_extern_c_kernels():
    sigs = parse_kernels(SOURCE)
    assert set(sigs) == {"scale<float>", "scale<double>", "fill_int"}
    scale = sigs["scale<double>"]
    assert [p.c_type for p in scale.params] == ["const double*", "double*", "double", "long long"]
    assert [p.dtype for p in scale.params] == [np.float64, np.float64, np.float64, np.int64]
    assert not scale.extern_c and sigs["fill_int"].extern_c
    assert [p.dtype for p in sigs["fill_int"].params] == [np.int32, np.int32, np.uint32]


def test_parser_rejects_unsupported_parameter_types():
    with pytest.raises(ValueError, match="unsupported kernel parameter.*pointer to a pointer"):
        parse_kernels('extern "C" __global__ void k(float** v) { }')


class _FakeDevice:
    """Looks like the sim device to the launch helper: arrays are NumPy arrays."""

    name = "sim"
    launches = Counter()

    @staticmethod
    def is_array(x):
        return isinstance(x, np.ndarray)


def _kernel(name):
    launches = []
    kernel = Kernel(
        _FakeDevice(),
        lambda g, b, args, shared_mem=0: launches.append((g, b, args)),
        parse_kernels(SOURCE)[name],
    )
    return kernel, launches


def test_launch_helper_casts_every_scalar_to_its_c_type():
    kernel, launches = _kernel("scale<float>")
    x, y = np.ones(10, np.float32), np.empty(10, np.float32)
    kernel.launch_1d(10, (x, y, 2.5, 10), block=4)
    grid, block, args = launches[0]
    assert grid == (3, 1, 1) and block == (4, 1, 1)
    assert type(args[2]) is np.float32 and type(args[3]) is np.int64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones(4, np.float64), np.empty(4, np.float32), 1.0, 4), "needs dtype float32, got float64"),
        ((np.ones((4, 4), np.float32).T, np.empty(16, np.float32), 1.0, 16), "C-contiguous"),
        (([1.0, 2.0], np.empty(2, np.float32), 1.0, 2), "needs a sim array, got list"),
        ((np.ones(4, np.float32), np.empty(4, np.float32), 1.0), "takes 4 arguments, got 3"),
        ((np.ones(4, np.float32), np.empty(4, np.float32), 1.0, 2.5), "'n' .* is an integer"),
    ],
)
def test_launch_helper_refuses_bad_arguments_by_name(args, message):
    kernel, launches = _kernel("scale<float>")
    with pytest.raises(KernelLaunchError, match=message):
        kernel((1,), (4,), args)
    assert launches == []


def test_launch_helper_refuses_values_that_do_not_fit():
    kernel, _ = _kernel("fill_int")
    with pytest.raises(KernelLaunchError, match="does not fit in uint32"):
        kernel((1,), (1,), (np.empty(1, np.int32), 0, -1))
    with pytest.raises(KernelLaunchError, match="has 1056 threads, more than 1024"):
        kernel((1,), (32, 33), (np.empty(1, np.int32), 0, 1))


def test_launch_helper_refuses_a_grid_past_cudas_limit_before_the_driver_sees_it():
    kernel, launches = _kernel("scale<float>")
    x, y = np.ones(1, np.float32), np.empty(1, np.float32)
    with pytest.raises(KernelLaunchError, match=r"scale<float>: grid.y = 70000 exceeds CUDA's limit 65535"):
        kernel((1, 70000), (32,), (x, y, 1.0, 1))
    with pytest.raises(KernelLaunchError, match="scale<float>: shared_mem must be >= 0"):
        kernel((1,), (32,), (x, y, 1.0, 1), shared_mem=-1)
    # One thread per element: (2^31 - 1) blocks of 1024 threads fit in grid.x, one more block does not.
    with pytest.raises(KernelLaunchError, match="grid.x = 2147483648 exceeds"):
        kernel.launch_1d(2**31 * 1024, (x, y, 1.0, 1), block=1024)
    assert launches == []


def test_unknown_device_and_cpu_kernels_are_clear_errors():
    with pytest.raises(DeviceError, match="choose one of cpu, gpu, sim"):
        sn.get_device("tpu")
    with pytest.raises(DeviceError, match="cpu device runs NumPy code"):
        sn.get_device("cpu").kernel("relu.cu", "relu_forward", np.float32)


def test_gpu_without_cupy_or_gpu_says_so_and_suggests_cpu_or_sim():
    try:
        Device("gpu")
    except DeviceError as e:
        assert "--device cpu" in str(e) and "--device sim" in str(e)
    else:
        pytest.skip("a usable GPU is present")


def test_transfers_are_counted_on_sim_not_on_cpu():
    cpu = Device("cpu")
    cpu.to_host(cpu.array(np.zeros(3)))
    assert sum(cpu.transfers.values()) == 0
    try:
        sim = Device("sim")
    except DeviceError as e:
        pytest.skip(str(e))
    host = np.arange(3.0)
    on_device = sim.array(host)
    assert on_device is not host and sim.transfers["host_to_device"] == 1
    sim.scalar(on_device[:1])
    assert sim.transfers["device_to_host"] == 1


def test_kernel_sources_are_found():
    assert (kernel_dir() / "relu.cu").is_file() or not any(kernel_dir().glob("*.cu"))


def test_device_names_build_their_own_subclass():
    from scratchnet.device import CpuDevice, GpuDevice, SimDevice

    assert type(Device("cpu")) is CpuDevice and Device("cpu").name == "cpu"
    assert not CpuDevice().uses_kernels and GpuDevice.uses_kernels and SimDevice.uses_kernels
    assert {cls.name for cls in (CpuDevice, GpuDevice, SimDevice)} == set(sn.device.DEVICE_NAMES)
    with pytest.raises(DeviceError, match="CpuDevice is device 'cpu', not 'sim'"):
        CpuDevice("sim")
    assert sn.get_device("cpu") is sn.get_device("cpu")


def test_sim_counts_every_launch_by_kernel_name():
    try:
        sim = Device("sim")
    except DeviceError as e:
        pytest.skip(str(e))
    x = sim.array(np.array([-1.0, 2.0], np.float32))
    y = sim.empty((2,), np.float32)
    relu = sim.kernel("relu.cu", "relu_forward", np.float32)
    relu.launch_1d(2, (x, y, 2))
    relu.launch_1d(2, (x, y, 2))
    relu.launch_1d(0, (x, y, 0))  # nothing to do: no launch
    assert sim.launches == {"relu_forward<float>": 2}
    np.testing.assert_array_equal(sim.to_host(y), [0.0, 2.0])
