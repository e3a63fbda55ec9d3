"""The simulator's checks (memcheck, racecheck, initcheck, synccheck): each catches its class of bug with
an error naming the kernel, block, thread, buffer, offset and source line, and none reports anything on
correct kernels (the pattern suite, and every project kernel file through the layers and the harness)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet._cuda import nvrtc
from scratchnet.errors import KernelLaunchError
from scratchnet.sim import compiler
from tests.nvrtc_headers import cuda_include_options

pytestmark = pytest.mark.sim

HERE = Path(__file__).resolve().parent
BUGS = HERE / "sim_kernels" / "bugs.cu"
PATTERNS = HERE / "sim_kernels" / "patterns.cu"
ROOT = HERE.parent


@pytest.fixture(scope="module")
def checked():
    return sim.load_module(BUGS.read_text(), [], filename="bugs.cu", checks="all")


def _line(pattern: str) -> int:
    """The line of bugs.cu holding ``pattern``."""
    return next(n for n, text in enumerate(BUGS.read_text().splitlines(), 1) if pattern in text)


def test_memcheck_finds_a_read_one_past_the_end(checked):
    x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
    with pytest.raises(sim.MemcheckError) as caught:
        checked.get_function("read_one_past")((1,), (64,), (x, y, np.int32(64)))
    error = caught.value
    assert (error.kernel, error.block, error.thread) == ("read_one_past", (0, 0, 0), (63, 0, 0))
    assert error.buffer.startswith("'x'") and error.offset == 256 and error.access == "read"
    assert error.line == f"bugs.cu:{_line('y[i] = x[i + 1]')}"


def test_memcheck_finds_a_read_at_any_distance(checked):
    """400 KB past the end of x, in the guard pages around its copy: named as x's."""
    x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
    message = r"out-of-bounds read of 4 byte\(s\) at byte offset \d+ of argument 'x'"
    with pytest.raises(sim.MemcheckError, match=message) as caught:
        checked.get_function("read_far_away")((1,), (64,), (x, y, np.int32(64)))
    assert caught.value.offset == 4 * (100_000 + caught.value.thread[0])


def test_memcheck_finds_a_dynamic_shared_overflow(checked):
    with pytest.raises(
        sim.MemcheckError, match="dynamic shared memory 'buffer' at byte offset 128"
    ) as caught:
        checked.get_function("dynamic_shared_overflow")(
            (1,), (32,), (np.zeros(32, np.float32),), shared_mem=128
        )
    assert caught.value.thread == (31, 0, 0) and caught.value.access == "write"


def _shared_neighbours_source() -> str:
    source = BUGS.read_text()
    start = source.index("// Two static shared arrays side by side")
    return (
        "\n" * source.count("\n", 0, start) + source[start : source.index("\n}\n", start) + 3]
    )  # same lines


@pytest.mark.parametrize("index, offset", [(16, 64), (-1, -4)])
@pytest.mark.parametrize("module", ["bugs.cu", "alone"])
def test_memcheck_finds_a_static_shared_array_running_into_its_neighbour(index, offset, module, checked):
    """first[16] and first[-1] are addresses inside the block's shared memory (in `second`, or between the
    arrays): memcheck names the array they ran off. "alone": the kernel in a module of its own, whose
    128 bytes of shared memory glibc places in static TLS (bugs.cu's extern __shared__ array makes its
    block large)."""
    if module == "alone":
        checked = sim.load_module(_shared_neighbours_source(), [], filename="bugs.cu", checks="memcheck")
    kernel = checked.get_function("shared_neighbours")
    y = np.zeros(16, np.float32)
    kernel((1,), (16,), (y, np.int32(5)))  # inside: no report
    np.testing.assert_array_equal(y, 3 * np.arange(16) + 2 * (np.arange(16) == 5))  # first[5] = 7, not 5
    with pytest.raises(sim.MemcheckError) as caught:
        kernel((1,), (16,), (y, np.int32(index)))
    error = caught.value
    assert f"at byte offset {offset} of __shared__ 'first' in shared_neighbours (64 bytes)" in str(error)
    assert (error.thread, error.access, error.buffer, error.offset) == (
        (3, 0, 0),
        "write",
        "static shared memory",
        offset,
    )
    assert error.line == f"bugs.cu:{_line('if (t == 3) first[index] = 7;')}"


def test_redzones_surround_each_static_shared_declaration_on_its_own_lines():
    source = (
        "#define DECLARE __shared__ float m[3];\n"
        "__global__ void k(float* y) {\n"
        "    __shared__ float a[4]; // __shared__ in a comment\n"
        "    static __shared__ __align__(16) float b[2],\n"
        "        c[2];\n"
        "    extern __shared__ float dynamic[];\n"
        "}\n"
    )
    marked = compiler.with_shared_redzones(source)
    assert marked.splitlines() == [
        "#define DECLARE __shared__ float m[3];",
        "__global__ void k(float* y) {",
        "    SIM_SHARED_REDZONE(2) __shared__ float a[4]; SIM_SHARED_REDZONE(3) // __shared__ in a comment",
        "    SIM_SHARED_REDZONE(4) static __shared__ __align__(16) float b[2],",
        "        c[2]; SIM_SHARED_REDZONE(5)",
        "    extern __shared__ float dynamic[];",
        "}",
    ]


def test_racecheck_finds_the_missing_barrier_of_a_transpose():
    module = sim.load_module(BUGS.read_text(), [], filename="bugs.cu", checks="racecheck")
    n = 32
    x = np.arange(n * n, dtype=np.float32)
    y = np.zeros_like(x)
    with pytest.raises(sim.RacecheckError) as caught:
        module.get_function("transpose")((2, 2), (16, 16), (x, y, np.int32(n), np.int32(0)))
    error = caught.value
    assert error.buffer == "static shared memory" and error.other_thread not in (None, error.thread)
    assert "of __shared__ 'tile' in transpose" in str(error)
    lines = {error.line, error.other_line}
    assert lines == {
        f"bugs.cu:{_line('tile[threadIdx.y][threadIdx.x] = x')}",
        f"bugs.cu:{_line('= tile[threadIdx.x]')}",
    }
    module.get_function("transpose")((2, 2), (16, 16), (x, y, np.int32(n), np.int32(1)))  # the fix passes
    np.testing.assert_array_equal(y.reshape(n, n), x.reshape(n, n).T)


def test_initcheck_finds_an_uninitialised_shared_read():
    module = sim.load_module(BUGS.read_text(), [], filename="bugs.cu", checks="initcheck")
    with pytest.raises(sim.InitcheckError) as caught:
        module.get_function("uninitialised_shared")((1,), (64,), (np.zeros(64, np.float32),))
    assert caught.value.thread[0] >= 32 and caught.value.line == f"bugs.cu:{_line('y[threadIdx.x] = s[')}"
    assert f"wrote byte {4 * caught.value.thread[0]} of __shared__ 's' in uninitialised_shared" in str(
        caught.value
    )


def test_two_barrier_sites_are_a_warning_and_strict_refuses_them(checked):
    """Threads waiting at two different __syncthreads() lines: GPUs from sm_70 on release them together, so
    the simulator does too, with a warning naming both lines; checks="strict" refuses it (synccheck)."""
    sites = {f"bugs.cu:{_line('y[threadIdx.x] = 1.0f') + 1}", f"bugs.cu:{_line('y[threadIdx.x] = 2.0f') + 1}"}
    y = np.zeros(64, np.float32)
    with pytest.warns(sim.BarrierSitesWarning, match="two barrier sites") as warned:
        checked.get_function("two_barriers")((1,), (64,), (y,))
    assert all(site in str(warned[0].message) for site in sites)
    np.testing.assert_array_equal(y, np.where(np.arange(64) % 2, 1.0, 2.0))
    strict = sim.load_module(BUGS.read_text(), [], filename="bugs.cu", checks="strict")
    with pytest.raises(sim.SynccheckError, match="barrier divergence") as caught:
        strict.get_function("two_barriers")((1,), (64,), (y,))
    error = caught.value
    assert {error.line, error.other_line} == sites
    assert error.thread[0] % 2 != error.other_thread[0] % 2


def test_synccheck_finds_a_mask_without_the_calling_lane(checked):
    with pytest.raises(sim.SynccheckError, match="does not include its own lane") as caught:
        checked.get_function("wrong_mask")((1,), (32,), (np.zeros(32, np.float32),))
    assert caught.value.line == f"bugs.cu:{_line('__shfl_xor_sync(0x0000ffffu')}"
    assert f"with mask 0x0000ffff at {caught.value.line}" in str(caught.value)


def test_check_errors_are_launch_errors_and_the_process_lives_on(checked):
    assert issubclass(sim.MemcheckError, KernelLaunchError)
    x, y = np.ones(64, np.float32), np.zeros(64, np.float32)
    checked.get_function("read_one_past")((1,), (64,), (x, y, np.int32(63)))
    np.testing.assert_array_equal(y[:63], 1)


def test_unknown_check_name_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="unknown simulator check.*'memchek'.*memcheck, racecheck"):
        sim.load_module(BUGS.read_text(), [], checks="memchek")
    monkeypatch.setenv("SCRATCHNET_SIM_CHECKS", "all")
    assert sim.load_module(BUGS.read_text(), []).checks == {"memcheck", "racecheck", "initcheck", "synccheck"}


def test_without_checks_the_bugs_go_unreported():
    """The checked build is what finds them: the plain one runs read_one_past without a word."""
    module = sim.load_module(BUGS.read_text(), [], filename="bugs.cu", checks="")
    x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
    module.get_function("read_one_past")((1,), (64,), (x, y, np.int32(64)))


def test_pattern_suite_is_clean_under_all_checks():
    module = sim.load_module(PATTERNS.read_text(), ["gemm_float4<8>"], filename="patterns.cu", checks="all")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(512).astype(np.float32)
    module.get_function("warp_shuffle_sum")((2,), (256,), (x, np.zeros(1, np.float32), np.int32(500)))
    tiles = [np.zeros(64, np.float32) for _ in range(3)]
    module.get_function("tile_reduce")((4,), (128,), (x, *tiles))
    module.get_function("warp_votes")(
        (1,), (128,), (x, np.zeros(4, np.int32), np.zeros(8, np.int32), np.zeros(4, np.float32))
    )
    values = rng.integers(0, 256, 1000).astype(np.uint8)
    module.get_function("histogram")((2,), (128,), (values, np.zeros(256, np.uint32), np.int32(1000)))
    ints = rng.integers(-9, 9, 512).astype(np.int32)
    module.get_function("block_scan")((2,), (256,), (ints, np.zeros_like(ints)))
    module.get_function("bitonic_sort")((1,), (128,), (x[:256].copy(),), shared_mem=256 * 4)
    a, b = rng.standard_normal((8, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)
    sizes = (np.int32(8), np.int32(8), np.int32(8))
    module.get_function("gemm_float4<8>")((1, 1), (2, 8), (a, b, np.zeros((8, 8), np.float32), *sizes))
    counters = np.zeros(4, np.uint32)
    module.get_function("integer_atomics")(
        (1,),
        (64,),
        (
            counters,
            np.zeros(2, np.int32),
            np.zeros(1, np.uint64),
            ints[:64],
            np.zeros(7, np.uint32),
            np.int32(64),
        ),
    )
    module.get_function("fast_math")((1,), (64,), (x[:64], np.zeros(64, np.float32), np.int32(64)))


@pytest.mark.slow
def test_project_kernels_are_clean_under_all_checks(tmp_path):
    """Whole programs under all checks report nothing: the kernel harness (every file of kernels/dev/), the
    GEMM tests, and a LeNet-5 and an AlexNet-CIFAR training step on sim. (Each file of kernels/ runs so in
    the layer contracts, and test_layer_contract.py checks that none is left out.)"""
    env = {**os.environ, "SCRATCHNET_SIM_CHECKS": "all", "PYTHONPATH": str(ROOT)}
    gemm_tests = [str(ROOT / "tests" / "test_linear.py"), "-k", "gemm and sim", "-p", "no:cacheprovider"]
    commands = [
        [sys.executable, "-m", "scratchnet.kernel_bench", "--device", "sim"],
        [sys.executable, "-m", "pytest", "-q", *gemm_tests],
        *[
            [
                sys.executable,
                "-m",
                "scratchnet.train",
                "--device",
                "sim",
                "--model",
                model,
                "--image-size",
                "32",
                "--val-fraction",
                "0.5",
                "--limit-train",
                "4",
                "--limit-test",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--no-progress",
                "--no-plots",
                "--out",
                str(tmp_path / model),
            ]
            for model in ("lenet5", "alexnet-cifar")
        ],
    ]
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]


def test_bugs_are_real_cuda_for_nvrtc():
    if nvrtc.find_library() is None or not cuda_include_options():
        pytest.skip("NVRTC and the CUDA headers are not installed")
    assert (
        nvrtc.compile_source(BUGS.read_text(), [], "sm_80", ["-std=c++17", *cuda_include_options()]).log == ""
    )
