"""Every kernel file compiles with NVRTC, the compiler CuPy uses, with the options CuPy gives it
(nvrtc_headers.cupy_nvrtc_options: -ftz=true, --device-as-default-execution-space, ...), for real GPU
architectures, warning-free.

NVRTC comes from the ``nvidia-cuda-nvrtc`` wheel (the ``dev`` extra), so this needs no GPU, no CUDA
toolkit and no CuPy; without the wheel the tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from scratchnet._cuda import nvrtc
from scratchnet.sim import parse_kernels
from tests.nvrtc_headers import ARCH_PARAMS, CUPY_OPTIONS, CUPY_PIN, cupy_nvrtc_options

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
SOURCES = sorted(KERNELS.rglob("*.cu"))

pytestmark = pytest.mark.skipif(nvrtc.find_library() is None, reason='NVRTC missing: pip install -e ".[dev]"')


def _skip_unsupported(arch: str) -> None:
    if int(arch.removeprefix("sm_")) not in nvrtc.supported_archs():
        pytest.skip(f"NVRTC {nvrtc.version()} cannot compile for {arch}")


def _spilled_bytes(log: str) -> dict[str, tuple[int, int]]:
    """Per kernel, the bytes of registers it spills to local memory (a slow stack in device memory), as the
    assembler's report (ptxas -v) gives them: {mangled name: (spill stores, spill loads)}."""
    spills = {}
    for entry in log.split("Compiling entry function '")[1:]:
        name = entry.split("'", 1)[0]
        found = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", entry)
        assert found, f"no spill counts for {name} in:\n{log}"
        spills[name] = (int(found.group(1)), int(found.group(2)))
    return spills


def _compile_clean(source: str, arch: str, filename: str) -> None:
    """No warning, and no kernel that spills registers (_spilled_bytes)."""
    names = [name for name, sig in parse_kernels(source).items() if not sig.extern_c]
    options = [*cupy_nvrtc_options(), "--ptxas-options=-v"]
    result = nvrtc.compile_source(source, names, arch=arch, options=options, filename=filename)
    assert "warning" not in result.log.lower(), f"NVRTC warnings for {filename} ({arch}):\n{result.log}"
    assert set(result.lowered_names) == set(names)
    spilled = _spilled_bytes(result.log)
    assert len(spilled) >= len(names), f"ptxas reported {len(spilled)} of {len(names)} kernels:\n{result.log}"
    spilling = {name: b for name, b in spilled.items() if b != (0, 0)}
    assert not spilling, f"{filename} ({arch}) spills registers (stores, loads in bytes): {spilling}"


@pytest.mark.parametrize("arch", ARCH_PARAMS)
@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(KERNELS)) for p in SOURCES])
def test_kernel_file_compiles_without_warnings(path, arch):
    _skip_unsupported(arch)
    _compile_clean(path.read_text(), arch, str(path.relative_to(KERNELS.parent)))


def test_the_options_are_cupys_and_the_modules():
    options = cupy_nvrtc_options()
    assert {"-std=c++17", *CUPY_OPTIONS} <= set(options)
    assert any(option.startswith("-DSCRATCHNET_HEADERS_SHA256=") for option in options)
    assert any(option.startswith("-I") and option.endswith("kernels") for option in options)


def test_the_options_were_read_in_the_pinned_cupy():
    """CUPY_OPTIONS mirror CuPy 14.2's compiler: a new pin means reading it again (nvrtc_headers.py says
    which functions), then updating CUPY_PIN."""
    pyproject = tomllib.loads((KERNELS.parent / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    pins = {re.search(r"cupy-cuda1\dx\S*>=([\d.]+)", r).group(1) for e in ("gpu", "gpu12") for r in extras[e]}
    assert pins == {CUPY_PIN}


def test_the_options_change_the_compile():
    """-ftz=true reaches NVRTC, which then sets __CUDA_FTZ to 1 (the math headers read it)."""
    source = '#if !__CUDA_FTZ\n#error "no -ftz"\n#endif\nextern "C" __global__ void k() {}\n'
    assert nvrtc.compile_source(source, arch="sm_80", options=cupy_nvrtc_options()).log == ""
    with pytest.raises(nvrtc.NvrtcError, match="no -ftz"):
        nvrtc.compile_source(source, arch="sm_80")


def test_there_are_kernel_files():
    assert SOURCES, f"no .cu files under {KERNELS}"


# The checks themselves must be able to fail.
def test_a_warning_is_caught():
    source = 'extern "C" __global__ void unused_variable(float* y) { int x; y[0] = 1.0f; }\n'
    with pytest.raises(AssertionError, match="NVRTC warnings"):
        _compile_clean(source, "sm_80", "unused_variable.cu")


def test_a_spill_is_caught():
    """64 live values in a thread that may have 32 registers (1024 threads, 2 blocks per multiprocessor)."""
    source = """extern "C" __global__ __launch_bounds__(1024, 2) void heavy(const float* x, float* y) {
    float acc[64];
#pragma unroll
    for (int k = 0; k < 64; ++k) acc[k] = x[k * 1024 + threadIdx.x];
    float s = 0;
#pragma unroll
    for (int k = 0; k < 64; ++k) s += acc[k] * acc[(k * 7) % 64];
    y[threadIdx.x] = s;
}
"""
    with pytest.raises(AssertionError, match=r"heavy.cu \(sm_80\) spills registers .*'heavy': \(\d+, \d+\)"):
        _compile_clean(source, "sm_80", "heavy.cu")


def test_an_error_is_reported_with_the_log():
    with pytest.raises(nvrtc.NvrtcError, match=r"(?s)broken\.cu.*undefined"):
        nvrtc.compile_source(
            'extern "C" __global__ void k(float* y) { y[0] = nope; }', arch="sm_80", filename="broken.cu"
        )


def test_template_instances_get_lowered_names():
    source = "template <typename T>\n__global__ void scale(T* y, T a) { y[threadIdx.x] *= a; }\n"
    result = nvrtc.compile_source(source, ["scale<float>", "scale<double>"], arch="sm_75")
    assert result.lowered_names == {
        "scale<float>": "_Z5scaleIfEvPT_S0_",
        "scale<double>": "_Z5scaleIdEvPT_S0_",
    }


def test_nvrtc_compiles_the_gpu_branch_of_timing_cu():
    """spin() waits only under #ifdef __CUDA_ARCH__ (the simulator has no GPU clock): NVRTC must define it,
    or the harness's timing would queue nothing in front of the timed runs."""
    source = '#ifndef __CUDA_ARCH__\n#error "no __CUDA_ARCH__"\n#endif\nextern "C" __global__ void k() {}\n'
    assert nvrtc.compile_source(source, arch="sm_80").log == ""
    with pytest.raises(nvrtc.NvrtcError, match="no __CUDA_ARCH__"):
        nvrtc.compile_source(source.replace("#ifndef", "#ifdef"), arch="sm_80")
