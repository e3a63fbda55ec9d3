"""The counts of a kernel exercise's kernel (kernel_counts.py), against counts worked out by hand from the
solutions' source: exercise 7's warp shuffles and exercise 8's one-pass softmax against exercise 5's
shared-memory tree, exercise 9's register blocking against exercise 4's tiles."""

from __future__ import annotations

import pytest

from scratchnet.exercises.kernel_counts import KernelCounts, count, format_counts
from scratchnet.kernel_exercises import EXERCISE_DIR

pytestmark = pytest.mark.sim

N, K = 8, 256


@pytest.fixture(scope="module")
def shuffle():
    return count("warp_reduce", sizes={"N": N, "K": K})


@pytest.fixture(scope="module")
def tree():
    return count("softmax_rows", sizes={"N": N, "K": K})


@pytest.fixture(scope="module")
def online():
    return count("online_softmax", sizes={"N": N, "K": K})


@pytest.mark.parametrize("kernel", ["shuffle", "online"])
def test_the_warp_kernels_read_x_twice_and_touch_no_shared_memory(kernel, request):
    # Each lane reads its columns twice: for the sum (exercise 7), or to merge them into its (m, s) (exercise
    # 8); then for y. 2 K loads and K stores per row; the lanes combine in registers (shuffles).
    counts = request.getfixturevalue(kernel)
    assert counts.counts == {
        "global_loads": 2 * N * K,
        "global_stores": N * K,
        "shared_loads": 0,
        "shared_stores": 0,
        "atomics": 0,
        "barriers": 0,
    }
    per = counts.per_output()
    assert (per["global_loads"], per["global_stores"], per["shared_accesses"], per["barriers"]) == (
        2,
        1,
        0,
        0,
    )
    assert counts.warp_accesses == counts.worst_conflict == 0


def test_one_pass_reads_x_twice_where_the_block_reduction_reads_it_three_and_a_half_times(online, tree):
    one_pass, three_passes = online.per_output(), tree.per_output()
    assert (one_pass["global_loads"], three_passes["global_loads"]) == (2, 3.5)
    assert three_passes["shared_accesses"] > 4 and three_passes["barriers"] == 17 / K  # 17 per row of K


def test_the_shared_memory_tree_costs_what_its_source_says(tree):
    threads, steps = 128, 7  # the tree: half = 64, 32, ..., 1
    tree_stores = threads + (threads - 1)  # partial[t], then one store per combination (64 + 32 + ... + 1)
    tree_loads = 2 * (threads - 1) + threads  # two loads per combination, then every thread reads partial[0]
    assert tree.counts == {
        # x_row[0] by every thread (the max's start), then x three times: max, sum, y
        "global_loads": N * (threads + 3 * K),
        "global_stores": N * K,
        "shared_loads": N * 2 * tree_loads,  # two reductions: the max, the sum
        "shared_stores": N * 2 * tree_stores,
        "atomics": 0,
        "barriers": N
        * (2 * (1 + steps) + 1),  # per reduction: after the stores, after each step; one between
    }
    assert tree.worst_conflict == 1 and tree.wavefronts == tree.warp_accesses  # partial[t]: no conflict


GEMM = {"M": 64, "N": 64, "K": 64}  # whole tiles of both kernels: no guard skips a load or a store


@pytest.fixture(scope="module")
def tiled():
    return count("gemm_tiled", sizes=GEMM)


@pytest.fixture(scope="module")
def blocked():
    return count("gemm_register_blocked", sizes=GEMM)


def test_the_tiled_gemm_costs_what_its_source_says(tiled):
    M, N, K, tile = GEMM["M"], GEMM["N"], GEMM["K"], 16
    blocks, steps = (M // tile) * (N // tile), K // tile
    assert tiled.counts == {
        "global_loads": blocks * steps * 2 * tile * tile,  # one element of A and one of B per thread and step
        "global_stores": M * N,
        "shared_loads": 2 * M * N * K,  # A_tile[ty][k] and B_tile[k][tx] per multiply-add
        "shared_stores": blocks * steps * 2 * tile * tile,
        "atomics": 0,
        "barriers": blocks * steps * 2,
    }
    assert tiled.worst_conflict == 1 and tiled.wavefronts == tiled.warp_accesses


def test_register_blocking_costs_what_its_source_says(blocked):
    from scratchnet.exercises.kernel_checker import BLOCK_SIDE, BLOCK_TILE, THREAD_TILE

    M, N, K = GEMM["M"], GEMM["N"], GEMM["K"]
    blocks, steps = (M // BLOCK_TILE) * (N // BLOCK_TILE), K // BLOCK_TILE  # TILE_K = BLOCK_TILE
    threads, tile_elements = BLOCK_SIDE * BLOCK_SIDE, BLOCK_TILE * BLOCK_TILE
    assert blocked.counts == {
        "global_loads": blocks * steps * 2 * tile_elements,  # load_tile: each element of both tiles once
        "global_stores": M * N,
        # per thread and k: THREAD_TILE values of As and THREAD_TILE of Bs, for THREAD_TILE² multiply-adds
        "shared_loads": blocks * steps * threads * BLOCK_TILE * 2 * THREAD_TILE,
        "shared_stores": blocks * steps * 2 * tile_elements,
        "atomics": 0,
        "barriers": blocks * steps * 2,
    }
    multiply_adds = M * N * K
    shared_loads_per_multiply_add = (THREAD_TILE + THREAD_TILE) / (THREAD_TILE * THREAD_TILE)
    assert blocked.counts["shared_loads"] == shared_loads_per_multiply_add * multiply_adds
    assert blocked.worst_conflict == 1 and blocked.wavefronts == blocked.warp_accesses  # the padded tiles


def test_register_blocking_cuts_the_shared_loads_per_multiply_add(tiled, blocked):
    from scratchnet.exercises.kernel_checker import THREAD_TILE

    # 2 loads per multiply-add against (TM + TN) / (TM TN): 2 TM TN / (TM + TN) = 4 times fewer for 4 x 4
    cut = 2 * THREAD_TILE * THREAD_TILE / (THREAD_TILE + THREAD_TILE)
    assert tiled.counts["shared_loads"] == cut * blocked.counts["shared_loads"]
    table = format_counts(tiled, blocked).splitlines()
    assert table[2].split()[:4] == ["gemm_tiled", "8", "1", "136"]
    assert table[3].split()[:4] == ["gemm_register_blocked", "4", "1", "36"]


def test_an_unpadded_tile_counts_its_conflicts():
    unpadded = (
        (EXERCISE_DIR / "solutions" / "09_gemm_register_blocked.cu")
        .read_text()
        .replace("#define TILE_STRIDE (BLOCK_TILE + 1)", "#define TILE_STRIDE BLOCK_TILE")
    )
    counts = count("gemm_register_blocked", source=unpadded, sizes=GEMM)
    assert counts.worst_conflict == 32  # 32 words of one column of As, 32 apart: all in one bank
    # the stores of As (half of the tile stores, one warp access per 32 of them) take 32 passes, not 1
    as_stores = counts.counts["shared_stores"] // 2 // 32
    assert counts.wavefronts - counts.warp_accesses == 31 * as_stores


def test_bank_conflicts_are_the_extra_passes_per_warp_access():
    counts = dict.fromkeys(("global_loads", "global_stores", "shared_loads", "shared_stores", "barriers"), 0)
    conflicted = KernelCounts("k", {}, 1, counts, warp_accesses=4, wavefronts=12, worst_conflict=4)
    assert conflicted.per_output()["conflicts_per_warp_access"] == 2.0  # 12 passes for 4 accesses: 2 extra


def test_the_table_shows_both_kernels_per_output_element(shuffle, tree):
    table = format_counts(shuffle, tree).splitlines()
    assert table[0] == "per output element:"
    assert [cell for cell in table[1].split("  ") if cell] == [
        "kernel",
        "global loads",
        "global stores",
        "shared accesses",
        "barriers",
        "bank conflicts / warp access",
    ]
    assert table[2].split() == ["center_rows", "2", "1", "0", "0", "0"]
    assert table[3].split()[:3] == ["softmax_rows", "3.5", "1"]


def test_a_wrong_kernel_or_missing_sizes_are_refused():
    wrong = (
        (EXERCISE_DIR / "solutions" / "07_warp_reduce.cu")
        .read_text()
        .replace("int offset = 16;", "int offset = 8;")
    )
    with pytest.raises(ValueError, match="counting a wrong kernel says nothing"):
        count("warp_reduce", source=wrong)
    with pytest.raises(ValueError, match="center_rows needs the sizes K"):
        count("warp_reduce", sizes={"N": 4})
