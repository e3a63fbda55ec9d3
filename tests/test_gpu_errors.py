"""Every way a GPU setup fails becomes one DeviceError with a hint, replayed without a GPU: a fake ``cupy``
module raises what CuPy raises (same exception class names, same messages)."""

from __future__ import annotations

import functools
import sys

import fake_cupy
import numpy as np
import pytest
from fake_cupy import (
    CompileException,
    CUDADriverError,
    CUDARuntimeError,
    DynamicLibNotFoundError,
    OutOfMemoryError,
)

from scratchnet import cupy_backend
from scratchnet._cuda import sources
from scratchnet.device import Device
from scratchnet.errors import DeviceError, KernelLaunchError
from scratchnet.testing import KernelSource


@pytest.fixture
def install(monkeypatch):
    """install(fail={...}) puts a FakeCupy in sys.modules and returns it."""
    return functools.partial(fake_cupy.install, monkeypatch)


def test_a_working_fake_gpu_runs_a_kernel_through_the_launch_helper(install):
    fake = install()
    gpu = Device("gpu")
    x = gpu.array(np.array([-1.0, 2.0], np.float32))
    y = gpu.empty((2,), np.float32)
    gpu.kernel("relu.cu", "relu_forward", np.float32).launch_1d(2, (x, y, 2))
    gpu.synchronize()
    assert fake.launches == [("relu_forward<float>", (1, 1, 1), (256, 1, 1))]
    assert gpu.launches == {"relu_forward<float>": 1} and gpu.transfers == {"host_to_device": 1}


def test_kernels_compile_with_the_shared_header_on_the_include_path(install, tmp_path, monkeypatch):
    """CuPy's disk cache keys on the source and the options only: the headers' digest is an option, so an
    edited kernels/common.cuh compiles anew instead of loading a stale module."""
    fake = install()
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    monkeypatch.setattr(sources, "kernel_dir", lambda: kernels)
    for version in ("1", "2"):
        (kernels / "common.cuh").write_text(f"#define VERSION {version}\n")
        cupy_backend.load_module('#include "common.cuh"\n', [])
    first, second = fake.module_options
    assert f"-I{kernels}" in first and f"-I{kernels}" in second
    assert first != second


def test_no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    monkeypatch.setattr(cupy_backend, "_cupy", None)
    with pytest.raises(
        DeviceError, match=r"needs CuPy, which is not installed.*scratchnet-cnn\[gpu\].*--device sim"
    ):
        Device("gpu")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"),
            "no usable NVIDIA driver",
        ),
        (OSError("libcuda.so.1: cannot open shared object file"), "no usable NVIDIA driver"),
        (
            CUDARuntimeError(
                "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime"
            ),
            r"driver is older than the CUDA version.*nvidia-smi.*scratchnet-cnn\[gpu12\]",
        ),
    ],
    ids=["no-gpu", "no-driver", "old-driver"],
)
def test_driver_problems_are_found_when_the_device_is_made(install, error, message):
    install({"getDeviceCount": error})
    with pytest.raises(DeviceError, match=message) as caught:
        Device("gpu")
    assert "Traceback" not in str(caught.value)


def test_zero_gpus(install):
    install(devices=0)
    with pytest.raises(DeviceError, match="found no CUDA GPU"):
        Device("gpu")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            "RawModule",
            DynamicLibNotFoundError("Failure finding 'libnvrtc.so': no such file"),
            r"compiling .*relu\.cu: NVRTC.*cannot be loaded.*nvidia-smi",
        ),
        (
            "get_function",
            RuntimeError("cuda.pathfinder DynamicLibNotFoundError: nvrtc not found"),
            r"loading .*relu\.cu \(relu_forward<float>\): NVRTC.*cannot be loaded",
        ),
        (
            "get_function",
            CompileException('relu.cu(9): error: identifier "nope" is undefined\n1 error detected'),
            r'(?s)does not compile; NVRTC says:\nrelu.cu\(9\): error: identifier "nope" is undefined',
        ),
        (
            "get_function",
            CUDADriverError(
                "CUDA_ERROR_UNSUPPORTED_PTX_VERSION: "
                "the provided PTX was compiled with an unsupported toolchain."
            ),
            r"NVRTC, which is newer than the driver.*update the NVIDIA driver",
        ),
    ],
    ids=["no-nvrtc-at-compile", "no-nvrtc-at-load", "compile-error", "nvrtc-newer-than-driver"],
)
def test_compile_and_load_problems(install, call, error, message):
    install({call: error})
    with pytest.raises(DeviceError, match=message):
        Device("gpu").kernel("relu.cu", "relu_forward", np.float32)


def test_out_of_memory_names_the_allocation(install):
    install(
        {"empty": OutOfMemoryError("Out of memory allocating 4,194,304 bytes (allocated so far: 0 bytes).")}
    )
    gpu = Device("gpu")
    with pytest.raises(
        DeviceError, match=r"out of GPU memory asking for \(1024, 1024\) float32, 4\.2 MB.*batch-size"
    ):
        gpu.empty((1024, 1024), np.float32)


def test_out_of_memory_on_a_copy_too(install):
    install({"asarray": OutOfMemoryError("Out of memory allocating 80 bytes")})
    with pytest.raises(
        DeviceError, match=r"copying an array to the GPU: out of GPU memory asking for \(10,\) float64"
    ):
        Device("gpu").array(np.zeros(10))


def test_a_launch_that_needs_too_many_registers(install):
    install({"launch": CUDADriverError("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: too many resources requested")})
    gpu = Device("gpu")
    x, y = gpu.array(np.ones(4, np.float32)), gpu.empty((4,), np.float32)
    with pytest.raises(
        DeviceError, match=r"launching relu_forward<float>.*block \(256, 1, 1\).*__launch_bounds__"
    ):
        gpu.kernel("relu.cu", "relu_forward", np.float32).launch_1d(4, (x, y, 4))
    assert gpu.launches == {}  # a failed launch is not counted


def test_an_illegal_address_points_to_the_simulator(install):
    install(
        {"synchronize": CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")}
    )
    with pytest.raises(DeviceError, match="outside its arrays.*--device sim"):
        Device("gpu").synchronize()


def test_no_cublas(install):
    install({"matmul": DynamicLibNotFoundError("Failure finding 'libcublas.so.13'")})
    Device("gpu")
    with pytest.raises(DeviceError, match="cuBLAS cannot be loaded"):
        cupy_backend.matmul(np.ones((2, 2)), np.ones((2, 2)))


def test_an_unknown_cuda_error_keeps_its_class_and_message():
    error = cupy_backend.translate(CUDADriverError("CUDA_ERROR_SOMETHING_NEW: odd"), "doing x")
    assert str(error) == "doing x failed: CUDADriverError: CUDA_ERROR_SOMETHING_NEW: odd"


def test_python_errors_of_the_caller_are_not_disguised(install):
    install({"empty": TypeError("shape must be ints")})
    with pytest.raises(TypeError, match="shape must be ints"):
        Device("gpu").empty(("a",), np.float32)


def test_environment_report(install):
    install({"nvrtc": DynamicLibNotFoundError("Failure finding 'libnvrtc.so'")})
    Device("gpu")
    info = cupy_backend.environment()
    assert info["gpu"] == "Fake GPU (compute capability 7.5)"
    assert info["driver"] == "CUDA 13.0" and info["cupy"] == "14.2.0" and info["tf32"] == "off"
    assert info["nvrtc"].startswith("not loadable")


# --- the machine's versions: driver, NVRTC and GPU must fit together ----------------------------------------
def test_no_driver_at_all_is_not_called_too_old(install):
    """Without an NVIDIA driver CUDA's runtime says cudaErrorInsufficientDriver, and the driver version it
    reports is 0: the message must say that no driver was found."""
    install(
        {
            "getDeviceCount": CUDARuntimeError(
                "cudaErrorInsufficientDriver: CUDA driver version is insufficient"
            )
        },
        driver=0,
    )
    with pytest.raises(DeviceError, match="no NVIDIA driver found") as caught:
        Device("gpu")
    assert "older" not in str(caught.value) and "nvidia-smi" in str(caught.value)


def test_a_cuda_12_driver_with_cuda_13_nvrtc_is_named_with_the_extra_to_use(install):
    """cupy-cuda12x loads the first NVRTC it finds; with CUDA 13's in the environment (`.[dev,gpu12]`) its
    code does not load on a 12.x driver, whatever the driver's words for it."""
    install(
        {"get_function": CUDADriverError("CUDA_ERROR_INVALID_IMAGE: device kernel image is invalid")},
        driver=12080,
        runtime=12080,
        nvrtc=(13, 0),
    )
    with pytest.raises(DeviceError) as caught:
        Device("gpu").kernel("relu.cu", "relu_forward", np.float32)
    message = str(caught.value)
    assert "NVRTC 13.0" in message and "driver's CUDA 12.8" in message
    assert "scratchnet-cnn[gpu12]" in message and "without `dev`" in message


def test_a_pre_turing_gpu_with_the_cuda_13_extra_is_told_to_use_gpu12(install):
    install(
        {"get_function": CompileException("nvrtc: error: invalid value for --gpu-architecture (-arch)")},
        compute_capability="70",
    )
    with pytest.raises(DeviceError, match=r"compute capability 7\.0.*7\.5.*scratchnet-cnn\[gpu12\]"):
        Device("gpu").kernel("relu.cu", "relu_forward", np.float32)


def test_matching_versions_give_no_advice(install):
    install()
    Device("gpu")
    assert cupy_backend.version_advice() is None


def test_a_gpu_machine_without_a_host_compiler_is_told_to_install_g_plus_plus(install, monkeypatch):
    """The kernel signatures come from the host C++ compiler on gpu too: the message must say so, not blame
    the simulator, which a gpu user never asked for."""
    from scratchnet.sim import compiler

    install()
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiler.shutil, "which", lambda name: None)
    with pytest.raises(DeviceError) as caught:
        Device("gpu")
    message = str(caught.value)
    assert "simulator" not in message
    assert "host C++ compiler" in message and "apt-get install g++" in message


# --- the kernel launch: shared memory -----------------------------------------------------------------------
STATIC_SHARED = """
extern "C" __global__ void staged(float* out) {
    __shared__ float stage[10240];  // 40 KiB of static shared memory
    extern __shared__ float extra[];
    stage[threadIdx.x] = 1.0f;
    extra[threadIdx.x] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = stage[threadIdx.x] + extra[threadIdx.x];
}
"""


def test_the_shared_memory_limit_counts_static_and_dynamic_memory_on_gpu(install):
    """40 KiB static + 16 KiB dynamic is more than the 48 KiB a block may have: the launch helper must
    refuse it by name before the driver does ("invalid argument")."""
    fake = install()
    gpu = Device("gpu")
    kernel = KernelSource(STATIC_SHARED).kernel(gpu, "staged")
    out = gpu.empty((32,), np.float32)
    kernel((1,), (32,), (out,), shared_mem=4 * 1024)  # 44 KiB: fits
    np.testing.assert_array_equal(gpu.to_host(out), np.full(32, 3.0, np.float32))
    with pytest.raises(KernelLaunchError, match=r"asks for 57344 bytes of shared memory.*static 40960"):
        kernel((1,), (32,), (out,), shared_mem=16 * 1024)
    assert len(fake.launches) == 1
