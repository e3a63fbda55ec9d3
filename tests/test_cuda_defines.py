"""Numbers that Python and the CUDA sources share come from one place: the ``#define`` in the ``.cu`` file."""

from __future__ import annotations

import pytest

from scratchnet._cuda import limits
from scratchnet._cuda.sources import cuda_defines, parse_defines


def test_reader_evaluates_literals_suffixes_and_earlier_constants():
    source = """
    #define TILE 16  // a comment
    #define GOLDEN 0x9E3779B97F4A7C15ULL
    #  define ROWS (TILE / 4)
    #define THREADS (ROWS * TILE + 1 - 1)
    #define MAX(a, b) ((a) > (b) ? (a) : (b))
    """
    assert parse_defines(source) == {"TILE": 16, "GOLDEN": 0x9E3779B97F4A7C15, "ROWS": 4, "THREADS": 64}


@pytest.mark.parametrize("text", ["#define HALF 0.5f", "#define N UNKNOWN * 2", "#define S sizeof(float)"])
def test_reader_refuses_what_it_cannot_read_exactly(text):
    with pytest.raises(ValueError, match=r"k.cu: cannot read #define"):
        parse_defines(text, "k.cu")


def test_layer_constants_match_the_kernels_they_launch():
    """The layers (and the simulator) keep their own copies of these numbers: each must equal its #define."""
    from scratchnet.layers import dropout, linear, loss

    assert linear.GEMM_TILE == cuda_defines("gemm.cu")["TILE"]
    assert linear.REDUCE_THREADS == cuda_defines("reduce.cu")["REDUCE_THREADS"]
    assert loss.MAX_BLOCK == cuda_defines("softmax_xent.cu")["SOFTMAX_MAX_THREADS"]
    assert dropout.GOLDEN == cuda_defines("dropout.cu")["SPLITMIX64_GOLDEN"]
    assert dropout.UNIFORM_BITS == cuda_defines("dropout.cu")["UNIFORM_BITS"]


def test_simulator_limits_match_cudas():
    from scratchnet.sim import compiler, launcher

    assert compiler.MAX_SHARED_BYTES == limits.MAX_SHARED_BYTES  # the dynamic shared reservation
    assert launcher.check_launch is limits.check_launch and launcher.dim3 is limits.dim3  # no own copies


def test_harness_block_shapes_come_from_the_defines():
    gemm, conv = cuda_defines("dev/gemm.cu"), cuda_defines("dev/conv2d_forward.cu")
    # Each kernel loads one tile element per thread or strides by its THREADS constant: they must agree.
    assert gemm["V4_THREADS"] == gemm["V4_BM"] * gemm["V4_BK"] == gemm["V4_BK"] * gemm["V4_BN"]
    assert gemm["V5_THREADS"] <= limits.MAX_THREADS_PER_BLOCK
    assert gemm["V1_BLOCK"] ** 2 <= limits.MAX_THREADS_PER_BLOCK
    assert conv["V2_TILE"] ** 2 <= limits.MAX_THREADS_PER_BLOCK
