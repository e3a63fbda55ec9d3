"""Numbers that Python and the CUDA sources share come from one place: the ``#define`` in the ``.cu`` file."""

from __future__ import annotations

import pytest

from scratchnet._cuda import limits
from scratchnet._cuda.sources import cuda_defines, kernel_source, parse_defines


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


def test_one_tile_for_both_gemm_kernels():
    """gemm launches gemm_tiled (gemm.cu) and gemm_bias (gemm_bias.cu) with one block shape: both take TILE
    from the header they share, and the launcher reads it from there; neither file defines its own."""
    from scratchnet.layers import linear

    assert linear.GEMM_TILE == cuda_defines("common.cuh")["TILE"]
    for kernel_file in ("gemm.cu", "gemm_bias.cu"):
        assert "TILE" not in cuda_defines(kernel_file), f"{kernel_file} defines a TILE of its own"
        assert '#include "common.cuh"' in kernel_source(kernel_file)


def test_blocked_gemm_geometry_is_consistent():
    """gemm_blocked's threads each compute THREAD_TILE² elements of a BLOCK_TILE² tile, and load_tile hands
    every thread the same number of elements of a BLOCK_TILE x TILE_K tile."""
    g = cuda_defines("gemm_blocked.cu")
    assert g["BLOCK_SIDE"] * g["THREAD_TILE"] == g["BLOCK_TILE"]
    assert g["BLOCK_THREADS"] == g["BLOCK_SIDE"] ** 2 <= limits.MAX_THREADS_PER_BLOCK
    assert g["BLOCK_TILE"] * g["TILE_K"] % g["BLOCK_THREADS"] == 0
    assert 2 * g["TILE_K"] * g["BLOCK_TILE"] * 8 <= limits.MAX_SHARED_BYTES  # both tiles, in double


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


def test_one_dtype_to_c_name_table():
    """signature.py holds the table; the simulator's wider one (for error messages) must agree with it."""
    from scratchnet._cuda.signature import C_NAME_OF_DTYPE
    from scratchnet.sim import launcher

    for dtype, c_name in C_NAME_OF_DTYPE.items():
        assert launcher._c_name(dtype) == c_name


def test_one_reduction_block_size():
    """BatchNorm's per-channel sums and the bias gradient launch reductions of one block size, reduce.cu's."""
    from scratchnet.layers import batchnorm, linear

    assert batchnorm.REDUCE_THREADS == linear.REDUCE_THREADS == cuda_defines("reduce.cu")["REDUCE_THREADS"]
