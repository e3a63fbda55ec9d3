"""Every CuPy-specific line of scratchnet lives here.

Array creation, host<->device copies, ``cupy.RawModule`` loading, kernel launches, cuBLAS and the
synchronize call. Everything else (the layers, the launch helper :mod:`scratchnet._cuda.launch`) is written
against :class:`scratchnet.device.Device`, so it runs, and is tested, under the ``sim`` device on machines
without a GPU.

Every way a GPU setup can fail becomes a :class:`~scratchnet.errors.DeviceError` whose message says what
failed and what to do, instead of a traceback from deep inside CuPy or the driver:

==========================  ==========================================================================
failure                     what CuPy raises (matched by exception class name and message)
==========================  ==========================================================================
no CuPy                     ``ImportError``
no driver / no GPU          ``CUDARuntimeError`` (cudaErrorNoDevice, ...), or an ``OSError`` for libcuda
old driver                  ``CUDARuntimeError`` cudaErrorInsufficientDriver
no NVRTC                    ``RuntimeError`` from ``cuda.pathfinder`` (``DynamicLibNotFoundError``)
compile error               ``CompileException`` (the NVRTC log is in the message)
NVRTC newer than driver     ``CUDADriverError`` CUDA_ERROR_UNSUPPORTED_PTX_VERSION when loading the module
no cuBLAS                   ``ImportError`` / ``RuntimeError`` naming cublas, at the first ``matmul``
NCCL fails (several GPUs)   ``NcclError`` (NCCL_ERROR_...)
out of memory               ``OutOfMemoryError`` (the message gets the shape and bytes asked for)
too many registers/threads  ``CUDADriverError`` CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES at launch
==========================  ==========================================================================

The tests replay each of these without a GPU by installing a fake ``cupy`` module whose calls raise
exceptions with the same class names and messages.

CuPy is imported only when the ``gpu`` device is first asked for: ``import scratchnet`` never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

from scratchnet._cuda import sources
from scratchnet.errors import DeviceError

_cupy = None
_HINT = "Use --device cpu (NumPy) or --device sim (the same CUDA kernels, simulated on the CPU) instead."
_EXTRAS = (
    "`nvidia-smi` shows the driver's CUDA version (top right): for 13.x, pip install 'scratchnet-cnn[gpu]' "
    "(CuPy with its CUDA 13 libraries); for 12.x, pip install 'scratchnet-cnn[gpu12]'."
)


def cupy():
    """The ``cupy`` module, after checking that it imports, finds a driver and sees a CUDA device."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy as cp
    except ImportError as e:
        raise DeviceError(
            f"device 'gpu' needs CuPy, which is not installed ({e}). {_EXTRAS} {_HINT}"
        ) from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError, or an OSError for a missing libcuda.so
        if "cudaErrorInsufficientDriver" in str(e) and _driver_version(cp) == 0:
            # No driver at all: CUDA reports version 0, and calls it "insufficient".
            raise DeviceError(
                f"device 'gpu': no NVIDIA driver found ({e}; the driver's CUDA version reads 0). Install the "
                "NVIDIA driver, after which `nvidia-smi` lists the GPU (on a shared machine, ask its "
                f"administrator; on Colab, pick a GPU runtime under Runtime > Change runtime type). {_HINT}"
            ) from None
        raise translate(e, "device 'gpu': looking for a CUDA GPU") from None
    if count == 0:
        raise DeviceError(f"device 'gpu': CuPy is installed but found no CUDA GPU. {_HINT}")
    _cupy = cp
    return cp


def _driver_version(cp) -> int:
    """The driver's CUDA version (12080 for 12.8); 0 without a driver."""
    try:
        return int(cp.cuda.runtime.driverGetVersion())
    except Exception:  # no libcuda at all
        return 0


def cuda_version(number: int) -> str:  # 12040 -> "12.4"
    return f"{number // 1000}.{number % 1000 // 10}"


def capability_version(capability: str) -> str:  # CuPy's "75" -> "7.5"
    return f"{capability[:-1]}.{capability[-1]}"


def versions() -> tuple[int, tuple[int, int], str] | None:
    """The driver's CUDA version (12080), NVRTC's (13, 0) and the GPU's compute capability ("75"); None
    when NVRTC cannot be loaded."""
    cp = cupy()
    try:
        return _driver_version(cp), tuple(cp.cuda.nvrtc.getVersion()), cp.cuda.Device().compute_capability
    except Exception:  # no NVRTC at all: the load error says so
        return None


def version_advice() -> str | None:
    """What to install when this environment's NVRTC does not fit the driver or the GPU, or None when
    they fit (or NVRTC is missing, which the load error tells). Told with every compile or load failure,
    and by ``gpucheck``.

    * NVRTC newer than the driver (CUDA 13 libraries on a 12.x driver, e.g. ``.[dev,gpu12]``): the code it
      compiles cannot be loaded, whatever words the driver uses for it;
    * a GPU older than Turing (compute capability below 7.5) with NVRTC 13, which compiles for 7.5 and up.
    """
    found = versions()
    if found is None:
        return None
    driver, (nvrtc_major, nvrtc_minor), capability = found
    advice = []
    if nvrtc_major > driver // 1000:
        advice.append(
            f"This environment's NVRTC {nvrtc_major}.{nvrtc_minor} is newer than the driver's CUDA "
            f"{cuda_version(driver)}, so the code it compiles cannot be loaded: for a 12.x driver, install "
            "pip install 'scratchnet-cnn[gpu12]' in a fresh environment without `dev` (whose NVRTC is 13.x) "
            "and without the `gpu` extra, or update the NVIDIA driver."
        )
    if int(capability) < 75 and nvrtc_major >= 13:
        advice.append(
            f"This GPU (compute capability {capability_version(capability)}) is older than NVRTC "
            f"{nvrtc_major} compiles for (7.5, Turing, and newer): install pip install "
            "'scratchnet-cnn[gpu12]' (CUDA 12 compiles for it) in a fresh environment without `dev`."
        )
    return " ".join(advice) or None


def translate(error: BaseException, what: str, asked: str = "") -> DeviceError:
    """The :class:`DeviceError` for a CuPy/CUDA exception raised while doing ``what``, with a hint.

    ``asked`` describes the allocation for an out-of-memory error ("(1024, 1024) float32, 4.2 MB").
    A DeviceError passes through unchanged.
    """
    if isinstance(error, DeviceError):
        return error
    kinds = {cls.__name__ for cls in type(error).__mro__}
    text = str(error)
    lowered = text.lower()
    if "OutOfMemoryError" in kinds or "out of memory" in lowered or "cudaErrorMemoryAllocation" in text:
        hint = f"{what}: out of GPU memory" + (f" asking for {asked}" if asked else "") + f" ({text}). "
        return DeviceError(
            hint + "Use a smaller --batch-size, free other GPU processes (nvidia-smi lists them), or run "
            "on --device cpu."
        )
    if "CompileException" in kinds:
        return DeviceError(f"{what}: the CUDA source does not compile; NVRTC says:\n{text}")
    if "cublas" in lowered:
        return DeviceError(
            f"{what}: cuBLAS cannot be loaded ({text}). Install CuPy with its CUDA libraries: {_EXTRAS}"
        )
    if "nvrtc" in lowered or "DynamicLibNotFoundError" in kinds or "DynamicLibNotFoundError" in text:
        return DeviceError(
            f"{what}: NVRTC, the CUDA runtime compiler CuPy compiles kernels with, cannot be loaded "
            f"({text}). Install it with the CuPy extra that bundles the CUDA libraries: {_EXTRAS}"
        )
    if "CUDA_ERROR_UNSUPPORTED_PTX_VERSION" in text or "unsupported toolchain" in lowered:
        return DeviceError(
            f"{what}: the driver cannot load code from this NVRTC, which is newer than the driver ({text}). "
            f"Install the CuPy build for the driver's CUDA version, or update the NVIDIA driver. {_EXTRAS}"
        )
    if "cudaErrorInsufficientDriver" in text or "driver version is insufficient" in lowered:
        return DeviceError(
            f"{what}: the NVIDIA driver is older than the CUDA version this CuPy was built for ({text}). "
            f"Update the driver or install the matching CuPy. {_EXTRAS} {_HINT}"
        )
    if "LAUNCH_OUT_OF_RESOURCES" in text or "cudaErrorLaunchOutOfResources" in text:
        return DeviceError(
            f"{what}: the GPU cannot run this block size ({text}): its threads need more registers than a "
            "multiprocessor has. Launch with fewer threads per block or add __launch_bounds__ to the kernel."
        )
    if "ILLEGAL_ADDRESS" in text or "cudaErrorIllegalAddress" in text:
        return DeviceError(
            f"{what}: a kernel read or wrote outside its arrays ({text}); the GPU context is now unusable. "
            "Run the same code with --device sim, which names the kernel, argument and thread."
        )
    if "NcclError" in kinds or "NCCL_ERROR" in text:
        return DeviceError(
            f"{what}: NCCL failed ({text}). Run again with NCCL_DEBUG=WARN for NCCL's reason. Each rank "
            "needs a GPU of its own (one rank per GPU, or CUDA_VISIBLE_DEVICES), and NCCL of CuPy's CUDA "
            "major (pip install nvidia-nccl-cu12 or nvidia-nccl-cu13)."
        )
    if (
        "cudaErrorNoDevice" in text
        or "no CUDA-capable device" in lowered
        or "libcuda" in lowered
        or "cudaErrorInitializationError" in text
        or isinstance(error, OSError)
    ):
        return DeviceError(f"{what}: no usable NVIDIA driver or GPU ({text}). {_HINT}")
    return DeviceError(f"{what} failed: {type(error).__name__}: {text}")


@contextlib.contextmanager
def gpu_errors(what: str, asked: str = ""):
    """Turn any exception of CuPy/CUDA raised inside the block into a :class:`DeviceError` (see
    :func:`translate`); a Python error (TypeError, KeyError, ...) of the caller passes through."""
    try:
        yield
    except (TypeError, KeyError, IndexError, AttributeError, AssertionError):
        raise
    except Exception as e:
        raise translate(e, what, asked) from e


@contextlib.contextmanager
def compile_errors(what: str):
    """:func:`gpu_errors` for compiling and loading modules, whose message adds :func:`version_advice`."""
    try:
        with gpu_errors(what):
            yield
    except DeviceError as e:
        advice = version_advice()
        if advice is None:
            raise
        raise DeviceError(f"{e} {advice}") from e.__cause__


def _describe_allocation(shape, dtype) -> str:
    """``(1024, 1024) float32, 4.2 MB``; a malformed shape is left for CuPy to reject."""
    try:
        shape = tuple(int(s) for s in (shape if isinstance(shape, tuple | list) else (shape,)))
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    except (TypeError, ValueError):
        return f"shape {shape!r}, dtype {dtype!r}"
    return f"{shape} {np.dtype(dtype)}, {nbytes / 1e6:.1f} MB"


def is_array(x) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def to_device(host: np.ndarray):
    with gpu_errors("copying an array to the GPU", _describe_allocation(host.shape, host.dtype)):
        return cupy().asarray(host)


def to_host(x) -> np.ndarray:
    with gpu_errors("copying an array from the GPU"):
        return cupy().asnumpy(x)


def empty(shape, dtype):
    with gpu_errors("allocating GPU memory", _describe_allocation(shape, dtype)):
        return cupy().empty(shape, dtype=dtype)


def zeros(shape, dtype):
    with gpu_errors("allocating GPU memory", _describe_allocation(shape, dtype)):
        return cupy().zeros(shape, dtype=dtype)


def matmul(a, b, out=None):
    """cuBLAS through ``cupy.matmul`` (the kernel harness's GEMM reference)."""
    with gpu_errors("cuBLAS matmul (cupy.matmul)"):
        return cupy().matmul(a, b, out=out)


class GpuModule:
    """A compiled ``cupy.RawModule`` whose kernels report failures as :class:`DeviceError`."""

    def __init__(self, raw_module, filename: str):
        self.raw_module = raw_module
        self.filename = filename

    def get_function(self, name: str) -> GpuKernel:
        # CuPy compiles and loads lazily: NVRTC and driver errors can surface here.
        with compile_errors(f"compiling and loading {self.filename} ({name})"):
            return GpuKernel(self.raw_module.get_function(name), f"{name} from {self.filename}")


class GpuKernel:
    """A ``cupy.RawKernel`` with the launch interface of the simulator's kernels; errors as DeviceError."""

    def __init__(self, raw_kernel, description: str):
        self.raw_kernel = raw_kernel
        self.description = description

    @property
    def attributes(self) -> dict:
        """``num_regs``, ``max_threads_per_block``, ``shared_size_bytes``, ... of the compiled kernel."""
        with gpu_errors(f"reading the attributes of {self.description}"):
            return dict(self.raw_kernel.attributes)

    @functools.cached_property
    def static_shared_bytes(self) -> int:
        """Bytes of the kernel's ``__shared__`` arrays (CuPy's ``shared_size_bytes``): the 48 KiB check."""
        return int(self.attributes["shared_size_bytes"])

    def __call__(self, grid, block, args, shared_mem: int = 0) -> None:
        with gpu_errors(f"launching {self.description} with grid {grid}, block {block}"):
            self.raw_kernel(grid, block, args, shared_mem=shared_mem)


def load_module(
    source: str,
    name_expressions: list[str],
    filename: str = "<source>",
    enable_cooperative_groups: bool = False,
) -> GpuModule:
    """Compile ``source`` with NVRTC (through CuPy) and return it as a :class:`GpuModule`.

    ``kernels/`` is on the include path (``#include "common.cuh"``). CuPy caches compiled modules on disk
    keyed by the source and the options, not by the headers they include: the headers' digest, passed as
    a macro, makes an edited header a new key. ``enable_cooperative_groups``: every launch is cooperative
    (all blocks resident at once, so that ``this_grid().sync()`` works), as on the simulator."""
    headers = f"-DSCRATCHNET_HEADERS_SHA256={sources.header_digest()}"
    options = ("-std=c++17", f"-I{sources.kernel_dir()}", headers)
    cooperative = {"enable_cooperative_groups": True} if enable_cooperative_groups else {}
    with compile_errors(f"compiling {filename}"):
        raw = cupy().RawModule(
            code=source, options=options, name_expressions=name_expressions or None, **cooperative
        )
    return GpuModule(raw, filename)


def synchronize() -> None:
    # Asynchronous launch errors (an illegal address, a kernel that ran out of resources) surface here.
    with gpu_errors("waiting for the GPU (an earlier kernel failed)"):
        cupy().cuda.Device().synchronize()


def environment() -> dict[str, str]:
    """GPU name and memory, driver / CUDA runtime / NVRTC / CuPy versions and the TF32 setting."""
    cp = cupy()

    with gpu_errors("reading the GPU's properties"):
        device = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        free, total = device.mem_info
        capability = device.compute_capability  # "75" for 7.5
        info = {
            "gpu": f"{name} (compute capability {capability_version(capability)})",
            "memory": f"{total / 2**30:.1f} GiB total, {free / 2**30:.1f} GiB free",
            "driver": f"CUDA {cuda_version(cp.cuda.runtime.driverGetVersion())}",
            "cuda runtime": cuda_version(cp.cuda.runtime.runtimeGetVersion()),
            "cupy": cp.__version__,
            "L2 cache": f"{device.attributes['L2CacheSize'] / 2**20:.1f} MiB",
        }
    try:
        major, minor = cp.cuda.nvrtc.getVersion()
        info["nvrtc"] = f"{major}.{minor}"
    except Exception as e:
        info["nvrtc"] = f"not loadable ({translate(e, 'loading NVRTC')})"
    # CuPy uses TF32 tensor cores for float32 matmul only when CUPY_TF32=1.
    info["tf32"] = "on (CUPY_TF32=1)" if os.environ.get("CUPY_TF32") == "1" else "off"
    return info


def memory_in_use() -> int:
    """Bytes of GPU memory CuPy's memory pool has handed out (and not yet taken back)."""
    return int(cupy().get_default_memory_pool().used_bytes())


def free_pool() -> None:
    """Give the blocks CuPy's memory pool keeps (freed arrays' memory) back to the driver."""
    with gpu_errors("freeing CuPy's memory pool"):
        cupy().get_default_memory_pool().free_all_blocks()


def free_memory() -> int:
    """Bytes of GPU memory free on the device."""
    return int(cupy().cuda.Device().mem_info[0])
