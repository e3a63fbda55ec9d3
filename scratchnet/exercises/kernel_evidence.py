"""Evidence for the kernel exercises that the output arrays alone do not give: which thread of the launch
has an element to compute, what an output that started as a known value ends as, which terms of a sum an
output holds, which thread's register holds an element. The array relations and regions themselves are
:mod:`scratchnet.exercises.diagnosis`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# The second run's starting value of every output: finite, so that `C += ...` keeps it visible (a NaN
# marker survives `+=` unchanged and reads as "never written"), and exact in float32.
PREFILL = 1024.0


def thread_element(output_shape: tuple[int, ...], block_dim: tuple[int, ...], block, thread) -> int | None:
    """The flat index of the output element that thread ``thread`` of block ``block`` computes, by the 1-D
    mapping i = blockIdx.x · blockDim.x + threadIdx.x, or the 2-D one (row, col); None outside the output."""
    x = block[0] * block_dim[0] + thread[0]
    if len(block_dim) == 1:
        return x if x < int(np.prod(output_shape)) else None
    y = block[1] * block_dim[1] + thread[1]
    height, width = output_shape[-2], output_shape[-1]
    return y * width + x if x < width and y < height else None


def warp_of(block_dim: tuple[int, ...], thread: tuple[int, ...]) -> int:
    """The warp of a thread of the block: its linear index x + X·(y + Y·z), divided by 32."""
    dims = (*block_dim, 1, 1)[:3]
    x, y, z = (*thread, 0, 0)[:3]
    return (x + dims[0] * (y + dims[1] * z)) // 32


def prefilled_relation(yours: np.ndarray, expected: np.ndarray, name: str) -> str | None:
    """The output started as PREFILL in every element: what yours is says whether the kernel adds to it
    (yours = PREFILL + right) or leaves it (yours = PREFILL: never written)."""
    if np.allclose(yours - PREFILL, expected, rtol=1e-4, atol=1e-2 * max(1.0, float(np.abs(expected).max()))):
        return (
            f"the kernel adds to '{name}' without setting it first: started at {PREFILL:g} in every element, "
            f"'{name}' ends as {PREFILL:g} + the right answer. Output memory holds whatever was there before "
            "the launch: accumulate in a variable that starts at 0, and write the output once"
        )
    return None


def partial_sum_relation(yours: np.ndarray, terms: np.ndarray, axis: str) -> str | None:
    """yours = the sum of ``terms`` (output shape + (K,)) over k in one contiguous range that is not all of
    0..K−1: the terms before (or after) it are lost."""
    K = terms.shape[-1]
    totals = np.concatenate([np.zeros((*terms.shape[:-1], 1)), np.cumsum(terms, axis=-1)], axis=-1)
    scale = max(1.0, float(np.abs(totals).max()))
    for first in range(K):
        for end in range(first + 1, K + 1):
            if (first, end) == (0, K):
                continue
            partial = totals[..., end] - totals[..., first]
            if np.allclose(yours, partial, rtol=1e-4, atol=1e-4 * scale):
                lost = f"before {axis} = {first}" if first > 0 else f"from {axis} = {end} on"
                return (
                    f"yours is the sum over {axis} = {first}..{end - 1} only, of {axis} = 0..{K - 1}: the "
                    f"terms {lost} are lost (a sum reset inside the loop, or a loop that starts late or "
                    "stops early)"
                )
    return None


def access_before_guard(body: str) -> str | None:
    """A kernel body (comments removed) that touches ``array[i]`` before its bounds guard on ``i``, a
    global index (``i = blockIdx.x * ...``; the guard ``if (i < ...)`` or ``if (i >= ...) return``).
    Threads past the end then read outside the array; the simulator's compiler may move such a read behind
    the guard, a GPU's need not: so the source is the evidence here."""
    global_indices = set(re.findall(r"(\w+)\s*=[^;=]*\bblockIdx\b", body))  # i = blockIdx.x * ... + ...
    guard = re.search(r"\bif\s*\(\s*(\w+)\s*(?:<|>=)", body)
    if guard is None or guard.group(1) not in global_indices:
        return None
    index = guard.group(1)
    early = re.search(rf"\b(\w+)\s*\[\s*{index}\s*\]", body[: guard.start()])
    if early is None:
        return None
    return (
        f"the kernel touches {early.group(1)}[{index}] BEFORE its bounds guard on {index}: the threads past "
        f"the end (the last block's extra threads) touch memory outside {early.group(1)}; a GPU may fault or "
        "read garbage there (the simulator happened not to). Move every access behind the guard"
    )


def sum_factor(yours: np.ndarray, terms: np.ndarray) -> float | None:
    """c when yours = c × the sum of ``terms`` (output shape + (L,)) over all of the last axis, for one
    constant c (least squares), else None."""
    total = terms.sum(axis=-1)
    denominator = float(np.sum(total * total))
    if not denominator or not np.all(np.isfinite(yours)):
        return None
    c = float(np.sum(yours * total)) / denominator  # least squares: yours ≈ c · total
    scale = max(1.0, float(np.abs(total).max()))
    return c if np.allclose(yours, c * total, rtol=1e-4, atol=1e-4 * scale) else None


def repeated_terms_relation(yours: np.ndarray, terms: np.ndarray, axis: str) -> str | None:
    """yours = c × the sum of ``terms`` (output shape + (L,)) over all of the axis, c a whole number ≥ 2:
    every term is counted c times, as when a value is added to itself (a shuffle whose source lane lies
    outside the warp hands the caller its own value back)."""
    c = sum_factor(yours, terms)
    if c is None or round(c) < 2 or not np.isclose(c, round(c), rtol=1e-4):
        return None
    return (
        f"yours = {round(c)} × the right sum: every term over {axis} = 0..{terms.shape[-1] - 1} is counted "
        f"{round(c)} times (a value added to itself: a partner index outside the range, e.g. a shuffle from "
        "a lane past 31, which hands the caller its own value back)"
    )


def normaliser_relation(factors: list[tuple[dict[str, int], float]]) -> str | None:
    """``factors``: (sizes, c) per shape, yours = c × the right sum at those sizes. When c changes from shape
    to shape as size / d, for one size and one constant d, no term is repeated or lost: the sum is right
    and what it is divided by is not (d, where the formula divides by the size)."""
    if len(factors) < 2 or np.allclose([c for _, c in factors], factors[0][1], rtol=1e-4):
        return None  # one constant factor: whole repeats are repeated_terms_relation's
    for name in factors[0][0]:
        divisors = [sizes[name] / c for sizes, c in factors]
        if np.allclose(divisors, divisors[0], rtol=1e-4):
            d = f"{divisors[0]:.6g}"
            seen = ", ".join(f"{c:.6g} at {name}={sizes[name]}" for sizes, c in factors)
            return (
                f"yours = ({name} / {d}) × the right sum ({seen}): a factor that follows {name} is no "
                f"repeated term. The sum is right and its normaliser is not: you divide by {d}, not by {name}"
            )
    return None


def group_factor_relation(yours: np.ndarray, expected: np.ndarray, groups: dict[str, tuple]) -> str | None:
    """yours = expected × one factor per group of elements, ``groups``: {name: (labels of the output's
    shape, what that means)}, tried in order (the coarsest first). Elements whose expected value is below
    1e-30 (an exponential that underflows a float) say nothing and are left out."""
    telling = np.abs(expected) > 1e-30
    if not telling.any() or not np.all(np.isfinite(yours[telling])):
        return None
    ratio = yours[telling].astype(np.float64) / expected[telling]
    for name, (labels, meaning) in groups.items():
        _, group = np.unique(labels[telling], return_inverse=True)
        factor = np.zeros(group.max() + 1)
        factor[group] = ratio  # any member's ratio: the check below says whether they all agree
        # Agreement within float32 rounding (a few ulps per operation), a factor well away from 1.
        same = np.allclose(ratio, factor[group], rtol=2e-5, atol=1e-7)
        if same and not np.allclose(factor, 1.0, rtol=1e-4):
            if not factor.any():
                return (
                    "yours is 0 wherever the right value is not: what it is divided by overflowed to inf, or "
                    "its exponential underflowed to 0"
                )
            spread = f"×{factor.min():.6g}" + (f" to ×{factor.max():.6g}" if np.ptp(factor) else "")
            return f"yours = the right value × one factor {name} ({spread}): {meaning}"
    return None


# The simulator's synccheck reports of a warp function (__syncwarp, __shfl_*_sync, votes) with a wrong mask.
_MASK_LEAVES_OUT_CALLER = re.compile(
    r"thread (\(.*?\)) \(lane (\d+)\) calls __syncwarp\(\) or a \*_sync warp function with mask "
    r"(0x[0-9a-f]+) at (\S+), which does not include its own lane"
)
_MASKED_LANE_ABSENT = re.compile(
    r"waits at __syncwarp\(\) or a warp shuffle/vote with mask (0x[0-9a-f]+) at (\S+) while lane (\d+) "
    r"\(thread (\(.*?\))\) (.*?) \(every lane"
)


def warp_mask_mistake(report: str) -> str | None:
    """Name a wrong mask of a warp function from the simulator's report: a lane that calls it although the
    mask leaves it out, or a lane the mask names that never calls it."""
    left_out = _MASK_LEAVES_OUT_CALLER.search(report)
    if left_out:
        thread, lane, mask, line = left_out.groups()
        return (
            f"a wrong warp mask: lane {lane} (thread {thread}) calls the warp function at {line} with mask "
            f"{mask}, which leaves lane {lane} out. The mask names the lanes that take part, and every lane "
            "that calls the function takes part: with all 32 lanes calling, the mask is 0xffffffff"
        )
    absent = _MASKED_LANE_ABSENT.search(report)
    if absent:
        mask, line, lane, thread, where = absent.groups()
        return (
            f"a wrong warp mask, or lanes that skip the warp function: its mask {mask} at {line} names lane "
            f"{lane} (thread {thread}), which {where} instead. Every lane the mask names must call it; a "
            "lane with nothing to add still calls it, with the neutral value"
        )
    return None


@dataclass(frozen=True)
class ThreadTiles:
    """Where each element of a 2-D output is computed, when each thread computes a TM × TN block of it in
    registers, acc[i][j]: per element (output shape + (2,)), its ``block`` (blockIdx.x, blockIdx.y), its
    ``thread`` (threadIdx.x, threadIdx.y) and its ``place`` (i, j) in that thread's acc."""

    block: np.ndarray
    thread: np.ndarray
    place: np.ndarray


def thread_tile_relation(
    yours: np.ndarray, expected: np.ndarray, name: str, tiles: ThreadTiles
) -> str | None:
    """Every element of yours holds the right value of another element of its block's tile, the same one in
    every block: the right sums, put in the wrong places by the store (or by fragments read from the wrong
    rows or columns of the tiles). Named as the transpose of each thread's block (acc[i][j] where acc[j][i]
    belongs), another order inside each thread's block, or other threads' places. Judged on the blocks whose
    tile lies wholly inside the output."""
    # A block's tile has one slot per (ty, tx, i, j): the slot of each element, and its block.
    axes = (*tiles.thread.reshape(-1, 2).max(axis=0)[::-1] + 1, *tiles.place.reshape(-1, 2).max(axis=0) + 1)
    slots = int(np.prod(axes))
    slot = np.ravel_multi_index(
        (tiles.thread[..., 1], tiles.thread[..., 0], *np.moveaxis(tiles.place, -1, 0)), axes
    )
    blocks, block = np.unique(tiles.block.reshape(-1, 2), axis=0, return_inverse=True)
    slot, block = slot.ravel(), block.ravel()
    whole = np.flatnonzero(np.bincount(block, minlength=len(blocks)) == slots)
    if not whole.size:
        return None
    ours, right = np.zeros((len(blocks), slots)), np.zeros((len(blocks), slots))
    ours[block, slot], right[block, slot] = yours.ravel(), expected.ravel()
    scale = max(1.0, float(np.abs(right[whole]).max()))
    # distance[p, q]: how far yours at slot p is from the right value of slot q, in the worst block
    distance = np.zeros((slots, slots))
    for b in whole:
        np.maximum(distance, np.abs(ours[b][:, None] - right[b][None, :]), out=distance)
    held = distance <= 1e-4 * scale
    if not held.any(axis=1).all():
        return None
    source = held.argmax(axis=1)  # slot p holds the right value of slot source[p]
    moved = np.flatnonzero(source != np.arange(slots))
    if not moved.size:
        return None
    ty, tx, i, j = np.unravel_index(np.arange(slots), axes)
    p, q = moved[0], source[moved[0]]
    at = np.unravel_index(int(np.flatnonzero((block == whole[0]) & (slot == p))[0]), yours.shape)
    example = (
        f"{name}[{', '.join(str(int(k)) for k in at)}], the place of acc[{i[p]}][{j[p]}] of thread "
        f"({tx[p]}, {ty[p]}) of block ({blocks[whole[0]][0]}, {blocks[whole[0]][1]}), holds"
    )
    if np.any((tx[source] != tx) | (ty[source] != ty)):
        return (
            f"the right values in the wrong places: each block's tile of '{name}' holds its values in other "
            f"threads' places ({example} acc[{i[q]}][{j[q]}] of thread ({tx[q]}, {ty[q]})): the thread "
            "mapping gives acc[i][j] a row and a column; the store, or the rows and columns of the tiles "
            "that the fragments read, follow another one"
        )
    block_shape = f"{axes[2]}×{axes[3]}"
    if np.array_equal(i[source], j) and np.array_equal(j[source], i):
        return (
            f"each thread's {block_shape} block of '{name}' is stored TRANSPOSED: acc[i][j] went to the "
            f"place of acc[j][i] ({example} its acc[{i[q]}][{j[q]}]): the row of the store comes from i, "
            "its column from j"
        )
    return (
        f"each thread's {block_shape} block of '{name}' holds the right sums in the wrong places ({example} "
        f"its acc[{i[q]}][{j[q]}]): check the row and the column the store computes from i and j, and "
        "which rows and columns of the tiles the fragments read"
    )
