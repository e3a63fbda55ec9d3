"""Checkers for lesson 17 (data parallelism): combining the gradients of a batch's shards."""

from __future__ import annotations

import numpy as np

from scratchnet.exercises import register

FORMULA = "grad = sum over ranks r of (n_r / B) * g_r, with g_r the gradient of rank r's mean loss"


def _shards(sizes: list[int], seed: int) -> tuple[list[dict], dict]:
    """Per-shard mean gradients of a per-example gradient table, and the whole batch's mean gradient."""
    rng = np.random.default_rng(seed)
    per_example = {"W": rng.standard_normal((sum(sizes), 3, 2)), "b": rng.standard_normal((sum(sizes), 2))}
    bounds = np.cumsum([0, *sizes])
    shards = [
        {
            k: g[start:stop].mean(axis=0) if stop > start else np.zeros(g.shape[1:])
            for k, g in per_example.items()
        }
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return shards, {k: g.mean(axis=0) for k, g in per_example.items()}


@register("combine-shard-gradients", names=("combine_shard_gradients",), title="combine shard gradients")
def check_combine_shard_gradients(report, combine) -> None:
    for sizes in ([4, 4], [3, 3, 4], [2, 0, 1], [5]):
        shards, expected = _shards(sizes, seed=len(sizes))
        got = combine([dict(s) for s in shards], list(sizes), sum(sizes))
        where = f"shard sizes {sizes}"
        if not isinstance(got, dict) or set(got) != set(expected):
            report.fail(f"{where}: return a dict with the keys {sorted(expected)}, got {type(got).__name__}")
            return
        wrong = [k for k in expected if np.shape(got[k]) != expected[k].shape]
        if wrong:
            name = wrong[0]
            report.fail(f"{where}: {name} has shape {np.shape(got[name])}, expected {expected[name].shape}")
            return
        if all(np.allclose(got[k], expected[k], rtol=1e-10, atol=1e-12) for k in expected):
            report.ok(where)
            continue
        plain_mean = {k: sum(s[k] for s in shards) / len(sizes) for k in expected}
        plain_sum = {k: sum(s[k] for s in shards) for k in expected}
        if all(np.allclose(got[k], plain_mean[k]) for k in expected):
            report.fail(
                f"{where}: you averaged the shard gradients alike; a shard of n_r examples must weigh "
                "n_r / B (equal weights are right only when every shard has the same size)",
                hint=FORMULA,
            )
        elif all(np.allclose(got[k], plain_sum[k]) for k in expected):
            report.fail(
                f"{where}: you summed the shard means without weighting them by n_r / B", hint=FORMULA
            )
        elif all(np.allclose(got[k], expected[k] * sum(sizes)) for k in expected):
            report.fail(
                f"{where}: a factor B too large: divide the weighted sum by the batch size", hint=FORMULA
            )
        else:
            report.fail(f"{where}: not the whole batch's mean gradient", hint=FORMULA)
        return
