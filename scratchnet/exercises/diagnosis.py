"""Diagnosis by evidence, shared by the array exercises and the kernel exercises.

A checker knows the right answer for each probe input; when the learner's answer differs, these functions
say *how* (a relation between yours and the right one: a scale factor, a sign, a transpose, an offset, a
missing term) and *where* (the named regions of a probe: the rows of a batch, the positions two windows
share, the elements at a kink or a tie). A probe input is built so that one cause shows in one region: a
checker names its regions (``{"where x = 0, ReLU's kink": mask}``) and :func:`localise` finds the one that
holds every wrong element. None of this knows any exercise's planted mistakes.
"""

from __future__ import annotations

import numpy as np

from scratchnet.gradcheck import relative_error

# A rewritten result (scaled, negated, transposed...) "matches" when its relative error is below this.
MATCH = 1e-6


def matches(candidate, correct: np.ndarray) -> bool:
    return (
        isinstance(candidate, np.ndarray)
        and candidate.shape == correct.shape
        and bool(np.all(np.isfinite(candidate)))
        and relative_error(candidate, correct) < MATCH
    )


def wrong_elements(
    yours: np.ndarray, correct: np.ndarray, rtol: float = 1e-6, atol: float = 1e-9
) -> np.ndarray:
    """A mask of the elements that differ (NaN against a number differs; NaN against NaN does not)."""
    return ~np.isclose(yours, correct, rtol=rtol, atol=atol, equal_nan=True)


# --- where: the named regions of a probe -------------------------------------------------------------------
def localise(wrong: np.ndarray, regions: dict[str, np.ndarray]) -> str | None:
    """The smallest named region that holds every wrong element (and is not the whole array), e.g.
    "the positions that two windows share": ``"only <region> are wrong (k of n)"``, or None."""
    holding = [
        (int(mask.sum()), name)
        for name, mask in regions.items()
        if mask.shape == wrong.shape and mask.any() and not mask.all() and not np.any(wrong & ~mask)
    ]
    if not holding or not wrong.any():
        return None
    _, name = min(holding)
    return f"wrong only {name} ({int(wrong.sum())} of {wrong.size} elements; everywhere else yours is right)"


def value_interval(wrong: np.ndarray, values: np.ndarray, name: str) -> str | None:
    """The wrong elements are exactly those where the input ``values`` (of the output's shape) lie in one
    interval: "0.1 ≤ x ≤ 1" (or None)."""
    if values.shape != wrong.shape or wrong.all() or int(wrong.sum()) < 2:
        return None
    order = np.argsort(values, axis=None, kind="stable")
    in_order = wrong.ravel()[order]
    first, last = int(np.argmax(in_order)), in_order.size - 1 - int(np.argmax(in_order[::-1]))
    if not in_order[first : last + 1].all():
        return None
    low, high = values.ravel()[order[first]], values.ravel()[order[last]]
    if first == 0:
        return f"{name} ≤ {high:.3g}"
    if last == in_order.size - 1:
        return f"{name} ≥ {low:.3g}"
    return f"{low:.3g} ≤ {name} ≤ {high:.3g}"


def wrong_values(yours: np.ndarray, correct: np.ndarray, inputs: dict[str, np.ndarray]) -> str | None:
    """Where the wrong elements are and what they hold, when that is one thing: an interval of an input of
    the output's shape (a condition on it is off), zeros (contributions skipped), or values of an input read
    from the wrong place."""
    wrong = wrong_elements(yours, correct, rtol=1e-4, atol=1e-5)
    if not wrong.any():
        return None
    count = f"{int(wrong.sum())} of {wrong.size} elements; everywhere else yours is right"
    held = yours[wrong]
    constant = held.size > 1 and bool(np.all(held == held[0]))
    for name, values in inputs.items():
        where = isinstance(values, np.ndarray) and value_interval(wrong, values, name)
        if where:
            value = f", and yours is {held[0]:.6g} in every one of them" if constant else ""
            return (
                f"wrong exactly where {where} ({count}){value}: check the condition on {name}, and what is "
                "written where it holds"
            )
    if not np.any(held):
        return (
            f"yours is 0 where the right answer is not ({count}): nothing was added or written there; a loop "
            "bound, a condition or an index skips them"
        )
    zero = [0.0] if np.any(correct == 0) else []  # a 0 the right answer holds (padding) is a value read too
    for name, values in inputs.items():
        # Only for an output that gathers this input: the right answer's values are its values too.
        if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
            continue
        readable = np.concatenate([values.ravel(), zero])
        if np.all(np.isin(correct, readable)) and np.all(np.isin(held, readable)):
            return (
                f"the wrong elements hold values of {name}, but not the right ones ({count}): the index that "
                f"reads {name} points elsewhere"
            )
    return None


def edge_slice(wrong: np.ndarray, name: str) -> str | None:
    """The wrong elements are exactly the first or the last index along one axis, all of it and nothing
    else ("y[:, :, 4, :]"): what a loop or a slice that stops one short, or starts one late, leaves."""
    for axis, size in enumerate(wrong.shape):
        if size < 2 or wrong.ndim < 2:
            continue
        for index, which in ((0, "first"), (size - 1, "last")):
            mask = np.zeros(wrong.shape, dtype=bool)
            mask[(slice(None),) * axis + (index,)] = True
            if np.array_equal(wrong, mask):
                spelled = ", ".join(str(index) if a == axis else ":" for a in range(wrong.ndim))
                off = "starts one late" if index == 0 else "stops one short"
                return (
                    f"wrong exactly in the {which} index of axis {axis}, {name}[{spelled}] (all of it, and "
                    f"everywhere else yours is right): a range or a slice that {off}?"
                )
    return None


def nonfinite(yours: np.ndarray, regions: dict[str, np.ndarray]) -> str:
    """NaN or infinity, and where."""
    where = localise(~np.isfinite(yours), regions)
    text = "NaN or infinity: something overflowed or divided by zero"
    return f"{text}; {where.replace('wrong only', 'it appears only')}" if where else text


# --- how: relations between yours and the right answer -----------------------------------------------------
def scale_relation(yours: np.ndarray, correct: np.ndarray, factors: dict[str, float]) -> str | None:
    """yours = c × correct for one constant c, named when it is −1 or one of ``factors`` (``{"N": 5}``).
    On one number any c fits, so there only a named factor or −1 counts."""
    denominator = float(np.sum(correct * correct))
    if not denominator:
        return None
    c = float(np.sum(yours * correct)) / denominator  # least squares: yours ≈ c · correct
    if not c or not matches(yours, c * correct):
        return None
    if np.isclose(c, -1.0):
        return "the SIGN is flipped: yours = −(correct); check the order of a subtraction"
    for what, size in factors.items():
        if np.isclose(c, size, rtol=1e-4):
            return f"yours = {size} × correct, and {size} = {what}: a 1/{what} is missing"
        if np.isclose(c, 1 / size, rtol=1e-4):
            return f"yours = correct / {size}, and {size} = {what}: a mean where a sum is needed"
    if yours.size < 2:
        return None
    return f"off by a constant factor: yours = {c:.6g} × correct"


def offset_relation(yours: np.ndarray, correct: np.ndarray) -> str | None:
    """yours = correct + one constant, the same for every element."""
    difference = yours - correct
    if yours.size < 2 or not np.allclose(difference, difference.flat[0], rtol=1e-6, atol=1e-9):
        return None
    return f"off by a constant: yours = correct + {float(difference.flat[0]):.6g} in every element"


def term_relation(yours: np.ndarray, correct: np.ndarray, terms: dict[str, np.ndarray]) -> str | None:
    """yours = correct + a·T for one named term T of the formula (``{"the bias": bias}``), or else
    yours = correct + Σ a_k·T_k over all of them fitted together; each term with a ≠ 0 is missing
    (a = −1), counted twice (a = 1), has its sign flipped (a = −2), or is scaled by 1 + a."""
    columns = {name: np.broadcast_to(term, correct.shape).ravel() for name, term in terms.items()}
    columns = {name: column for name, column in columns.items() if np.any(column)}
    groups = [[name] for name in columns]
    if len(columns) > 1 and np.linalg.matrix_rank(np.stack(list(columns.values()), axis=1)) == len(columns):
        groups.append(list(columns))  # independent terms: several may be wrong at once
    for group in groups:
        matrix = np.stack([columns[name] for name in group], axis=1)  # (elements, terms)
        a = np.linalg.lstsq(matrix, (yours - correct).ravel(), rcond=None)[0]  # yours − correct ≈ Σ a·T
        if matches(yours, correct + (matrix @ a).reshape(correct.shape)):
            return " and ".join(
                _term_change(name, float(c), len(group) == 1)
                for name, c in zip(group, a, strict=True)
                if abs(c) > 1e-6
            )
    return None


def _term_change(name: str, a: float, alone: bool) -> str:
    """How a term enters yours when yours = right + a·term."""
    for multiple, what, relation in (
        (-1, "is missing", "−"),
        (1, "is counted twice", "+"),
        (-2, "has the wrong sign", "− 2 ×"),
    ):
        if np.isclose(a, multiple, rtol=1e-4):
            return f"{name} {what}" + (f": yours = right {relation} {name}" if alone else "")
    scaled = f"{name} is scaled by {1 + a:.4g}"
    return scaled + (f": yours holds {1 + a:.4g} × {name} where the formula has 1 ×" if alone else "")


def isolated_terms(
    wrong: np.ndarray, alone: dict[str, tuple[str, np.ndarray]], shared: str = ""
) -> str | None:
    """Which of the formula's terms is wrong, judged where each stands alone: ``alone`` maps a term's name to
    (where, mask), the elements where the other terms vanish (the cross-channel term of LRN is alone where
    dy = 0). None when no wrong element lies where a term stands alone."""
    verdicts = {
        name: bool(wrong[mask].any()) for name, (_, mask) in alone.items() if mask.shape == wrong.shape
    }
    bad = [name for name, is_wrong in verdicts.items() if is_wrong]
    good = [name for name, is_wrong in verdicts.items() if not is_wrong]
    if not bad:
        return None
    if not good:
        where = "; ".join(f"{name} where {alone[name][0]}" for name in bad)
        return (
            f"every term is wrong where it stands alone ({where}): the mistake is in what they share{shared}"
        )

    def listed(names: list[str]) -> str:
        return " and ".join(names) + (" is" if len(names) == 1 else " are")

    return (
        f"{listed(bad)} wrong (yours differs where {' and '.join(alone[n][0] for n in bad)}, where "
        f"{'it' if len(bad) == 1 else 'each'} is the only term); {listed(good)} right (where "
        f"{' and '.join(alone[n][0] for n in good)}, yours matches)"
    )


def layout_relation(yours: np.ndarray, correct: np.ndarray) -> str | None:
    """The right values in another arrangement: transposed, or flipped in the last two axes."""
    if yours.ndim == 2 and yours.shape[0] == yours.shape[1] and matches(yours.T, correct):
        return "TRANSPOSED: yours.T is the right answer"
    if yours.ndim == 4 and matches(yours[..., ::-1, ::-1], correct):
        return "FLIPPED (rotated 180°) in its last two axes: scratchnet's convolution is a cross-correlation"
    return None


def scalar_for_array(value, correct: np.ndarray, inputs: dict[str, object]) -> str:
    """The learner returned one number where an array belongs: say so, and which axes to keep."""
    text = f"is a single number ({float(value):.6g}), not an array of shape {correct.shape}"
    if not np.isclose(float(value), float(correct.sum()), rtol=1e-6, atol=1e-9):
        return text
    for name, array in inputs.items():
        kept = _kept_axes(getattr(array, "shape", ()), correct.shape)
        if kept is not None:
            summed = tuple(axis for axis in range(np.ndim(array)) if axis not in kept)
            return (
                f"{text}: it is the sum of ALL of {name}'s elements; sum over axis "
                f"{summed[0] if len(summed) == 1 else summed} only, keeping axis "
                f"{kept[0] if len(kept) == 1 else kept}"
            )
    return f"{text}: it is the sum of all the right answer's elements: reduce over fewer axes"


def _kept_axes(shape: tuple[int, ...], kept_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The axes of ``shape`` whose sizes, in order, are ``kept_shape`` (the last such), or None."""
    if len(shape) <= len(kept_shape) or not kept_shape:
        return None
    kept, position = [], len(shape) - 1
    for size in reversed(kept_shape):
        while position >= 0 and shape[position] != size:
            position -= 1
        if position < 0:
            return None
        kept.insert(0, position)
        position -= 1
    return tuple(kept)


def changed_by_rounding(after: np.ndarray, before: np.ndarray) -> bool:
    """Changed, but only in the last digits: what `x[i] += h; ...; x[i] -= h` leaves behind."""
    return (
        after.shape == before.shape
        and not np.array_equal(after, before)
        and bool(np.allclose(after, before, rtol=1e-12, atol=1e-15))
    )
