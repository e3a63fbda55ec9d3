"""Comparing a learner's arrays with the right ones, and naming the mistake when they differ.

An exercise that returns arrays (a backward pass, im2col, a dropout mask...) is a :class:`ArraySpec`: the
learner's function, called with each :class:`Case`'s arguments, must return ``outputs`` equal to the case's
``correct`` arrays (for gradients: centered finite differences of the library's forward pass). Each output
is scored by the relative error ‖a − n‖ / (‖a‖ + ‖n‖) (it passes below 1e-7) and CS231n's element-wise max
|a − n| / max(1e-8, |a| + |n|). When one is wrong, the report names the mistake, in this order:

1. a known mistake of this exercise (:class:`Mistake`): its wrong result is computed from the case's inputs
   and compared with the learner's (or, when the learner's code raised, its exception with the learner's);
2. by evidence (:mod:`scratchnet.exercises.diagnosis`): a relation between yours and the right answer (the
   sign, a constant factor with the batch size or N·OH·OW named, the formula's terms (:attr:`Case.terms`)
   fitted together, an offset, a transpose, a flipped kernel), NaN or infinity, or where it is wrong: the
   named region of the probe (:attr:`Case.regions`) that holds every wrong element, exactly the first or
   last index of an axis, each term judged where it stands alone (:attr:`Case.alone`), an interval of an
   input's values, what the wrong elements hold (zeros; the input's values from the wrong place); an input
   modified in place, a wrong dtype or shape, a number where an array belongs;
3. otherwise how many elements are wrong, and the worst one with both values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scratchnet.exercises import diagnosis
from scratchnet.exercises.diagnosis import MATCH
from scratchnet.gradcheck import TOLERANCE, max_elementwise_error, relative_error


@dataclass
class Mistake:
    """A mistake learners make: ``text`` names it (no formula); ``compute(args)`` returns what it produces,
    ``{output name: array}`` (it may raise, as the learner's code would)."""

    text: str
    compute: Callable[[dict], dict[str, np.ndarray]] | None = None
    # For mistakes whose result depends on how the code is written (a loop order): a test instead,
    # test(args, output name, yours, correct) -> whether yours shows this mistake.
    test: Callable[[dict, str, np.ndarray, np.ndarray], bool] | None = None


@dataclass
class Case:
    description: str  # e.g. "x (4, 5), weight (5, 3)"
    args: dict[str, object]  # the learner's function is called with these values, in this order
    correct: dict[str, np.ndarray]  # output name -> the right answer
    # Sizes a wrong result may be off by, named: {"N": 5} when the loss is a batch mean.
    factors: dict[str, int] = field(default_factory=dict)
    # The parts of this probe where one cause shows, named for the learner: {"where x = 0, ...": mask}.
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    # The terms of the formula, per output, named for the learner: {"velocity": {"the momentum term": μv}}.
    terms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # Where each term stands alone, per output: {"dx": {"the direct term": ("x = 0", mask)}}; with what the
    # terms share, said when every one is wrong: {"dx": ": s, ..."}.
    alone: dict[str, dict[str, tuple[str, np.ndarray]]] = field(default_factory=dict)
    shared: dict[str, str] = field(default_factory=dict)


@dataclass
class ArraySpec:
    forward: str  # what is computed, one line, e.g. "y = x @ weight + bias"
    outputs: tuple[str, ...]  # the arrays the learner's function returns, in order
    hints: dict[str, str]  # output name -> the formula (printed with hint=True only)
    make_cases: Callable[[np.random.Generator], list[Case]]
    mistakes: tuple[Mistake, ...] = ()


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _same(yours: np.ndarray, wrong: np.ndarray) -> bool:
    """Equal up to MATCH, NaN and infinity in the same places (a mistake may overflow)."""
    if yours.shape != wrong.shape:
        return False
    finite = np.isfinite(wrong)
    if not np.array_equal(np.isfinite(yours), finite):
        return False
    return not finite.any() or relative_error(yours[finite], wrong[finite]) < MATCH


def _known_mistake(spec: ArraySpec, case: Case, name: str, yours: np.ndarray) -> str | None:
    for mistake in spec.mistakes:
        args = {k: _copy(v) for k, v in case.args.items()}
        if mistake.test is not None:
            if yours.shape == case.correct[name].shape and mistake.test(
                args, name, yours, case.correct[name]
            ):
                return mistake.text
            continue
        try:
            with np.errstate(all="ignore"):
                wrong = mistake.compute(args)
        except Exception:  # noqa: BLE001 -- a mistake that raises on this case is not the learner's here
            continue
        if name in wrong and _same(yours, np.asarray(wrong[name], dtype=np.float64)):
            return mistake.text
    return None


def _raised_mistake(spec: ArraySpec, case: Case, error: Exception) -> str | None:
    """The known mistake that raises exactly the learner's exception, if any."""
    for mistake in spec.mistakes:
        if mistake.compute is None:
            continue
        try:
            mistake.compute({k: _copy(v) for k, v in case.args.items()})
        except Exception as expected:  # noqa: BLE001
            if type(expected) is type(error) and str(expected) == str(error):
                return mistake.text
    return None


def _generic_diagnosis(name: str, yours: np.ndarray, correct: np.ndarray, case: Case) -> str | None:
    if not np.all(np.isfinite(yours)):
        return diagnosis.nonfinite(yours, case.regions)
    if not np.any(yours):
        return "all zeros: nothing was written into the result, or every value computed was 0"
    wrong = diagnosis.wrong_elements(yours, correct)
    return (
        diagnosis.scale_relation(yours, correct, case.factors)
        or diagnosis.term_relation(yours, correct, case.terms.get(name, {}))
        or diagnosis.layout_relation(yours, correct)
        or diagnosis.offset_relation(yours, correct)
        or diagnosis.localise(wrong, case.regions)
        or diagnosis.edge_slice(wrong, name)
        or diagnosis.isolated_terms(wrong, case.alone.get(name, {}), case.shared.get(name, ""))
        or diagnosis.wrong_values(yours, correct, case.args)
    )


def _shape_diagnosis(name: str, yours: np.ndarray, correct: np.ndarray) -> str:
    got, want = yours.shape, correct.shape
    if yours.ndim == 2 and got == want[::-1] and diagnosis.matches(yours.T, correct):
        return "your values are right but TRANSPOSED: swap the operands of the product, or transpose"
    if yours.size == correct.size and diagnosis.matches(yours.reshape(want), correct):
        return f"your values are right, only the shape is wrong: it must be {want}"
    if yours.ndim == correct.ndim + 1 and got[1:] == want and diagnosis.matches(yours.sum(axis=0), correct):
        return "you did not sum over the batch: each example's share is right; add them up over axis 0"
    if name == "grad" or (name.startswith("d") and len(name) > 1):
        return f"a gradient has the shape of what it is the gradient of: {want}"
    return f"{name} is a result of the forward computation, of shape {want}: check the size of each axis"


def _check_output(spec: ArraySpec, case: Case, name: str, yours, report) -> None:
    correct = case.correct[name]
    if np.ndim(yours) == 0 and correct.ndim > 0 and isinstance(yours, int | float | np.number | np.ndarray):
        report.fail(f"{name} {diagnosis.scalar_for_array(yours, correct, case.args)}", spec.hints[name])
        return
    if not isinstance(yours, np.ndarray):
        report.fail(f"{name} must be a NumPy array, got {type(yours).__name__}", spec.hints[name])
        return
    if yours.shape != correct.shape:
        reason = _known_mistake(spec, case, name, yours) or _shape_diagnosis(name, yours, correct)
        report.fail(f"{name} has shape {yours.shape}, expected {correct.shape}: {reason}", spec.hints[name])
        return
    if yours.dtype != correct.dtype:
        report.fail(
            f"{name} has dtype {yours.dtype}, expected {correct.dtype} like the inputs "
            "(an array created with a fixed dtype? np.zeros_like(x) keeps x's)",
            spec.hints[name],
        )
        return
    values = yours.astype(np.float64)
    error, elementwise = relative_error(values, correct), max_elementwise_error(values, correct)
    figures = f"relative error {error:.1e}, CS231n max {elementwise:.1e}"
    if error < TOLERANCE:
        report.ok(f"{name} ({figures})")
        return
    found = _known_mistake(spec, case, name, values) or _generic_diagnosis(name, values, correct, case)
    if found is None and correct.size == 1:
        found = f"yours {values.item():.6g}, right {correct.item():.6g}"
    if found is None:
        wrong = diagnosis.wrong_elements(values, correct)
        worst = np.unravel_index(int(np.argmax(np.abs(values - correct))), correct.shape)
        index = ", ".join(str(int(i)) for i in worst)
        found = (
            f"{int(wrong.sum())} of {wrong.size} elements differ; the worst, {name}[{index}]: yours "
            f"{values[worst]:.6g}, right {correct[worst]:.6g}"
        )
    report.fail(f"{name}: {found} ({figures})", spec.hints[name])


def check_arrays(report, spec: ArraySpec, function: Callable, seed: int = 0) -> None:
    """Call ``function`` on every case of ``spec`` and record each output's verdict in ``report``; stop at the
    first failing case (fix one thing, run again)."""
    report.say(f"  {spec.forward}")
    cases = spec.make_cases(np.random.default_rng(seed))
    for number, case in enumerate(cases, start=1):
        report.say(f"  case {number} of {len(cases)}: {case.description}")
        args = {k: _copy(v) for k, v in case.args.items()}
        try:
            result = function(*args.values())
        except NotImplementedError:
            raise
        except Exception as error:
            mistake = _raised_mistake(spec, case, error)
            if mistake is None:
                raise
            report.fail(mistake, next(iter(spec.hints.values())))
            return
        for arg_name, value in args.items():
            original = case.args[arg_name]
            if not isinstance(value, np.ndarray) or np.array_equal(value, original):
                continue
            if diagnosis.changed_by_rounding(value, original):
                report.fail(
                    f"`{arg_name}` does not come back bit-exact: your function changed it and changed it "
                    "back by arithmetic, and floating point rounds (x + h − h is not always x); save the old "
                    f"value and restore it by assignment, {arg_name}[i] = old"
                )
            else:
                report.fail(f"your function modified its input `{arg_name}` in place; work on a copy")
        if len(spec.outputs) == 1 and not isinstance(result, tuple | list):
            result = (result,)
        if not isinstance(result, tuple | list) or len(result) != len(spec.outputs):
            got = f"{len(result)} values" if isinstance(result, tuple | list) else type(result).__name__
            report.fail(f"must return {len(spec.outputs)} value(s) ({', '.join(spec.outputs)}), got {got}")
            return
        for name, yours in zip(spec.outputs, result, strict=True):
            _check_output(spec, case, name, yours, report)
        if not report.passed:
            return
