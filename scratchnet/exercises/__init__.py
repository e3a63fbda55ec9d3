"""Exercises: checkers that say whether a learner's code is right and, when it is not, name the mistake.

The API, for lesson authors:

* ``check(exercise_id, *learner_objects, hint=False) -> bool``: what a check cell calls, e.g.
  ``check("linear-backward", linear_backward);``. It prints ``<id>: not done yet`` while the learner's code
  raises NotImplementedError, ``<id>: passed`` when every test passes, else ``<id>: wrong`` and one line
  ``wrong: <the mistake, named>`` per failure. Formulas are printed only with ``hint=True``.
* ``claim(claim_id, condition, detail)``: what a hidden cell tagged ``claim`` calls after a demo, to print
  whether the demo's own output shows what the prose beside it says (the lesson tests fail on ``FAILS``).
* ``pin_blas_threads()``: what the first cell of every lesson calls (``SCRATCHNET_BLAS_THREADS``).
* ``lesson_seed()``: the seed of a lesson's demos, 0 unless ``SCRATCHNET_LESSON_SEED`` says another, so that
  the lesson tests can check that the claims hold on other seeds too.
* ``@register(exercise_id, names=("linear_backward",), title="...")``: registers a checker, in a topic module
  of this package (``layers.py``, ``gradcheck.py``, ``training.py``, ``kernels.py``, ``batchnorm.py``...).
  Every module of the package is imported, so a new topic needs no edit here. The id is the notebook cell id
  of the exercise and, with ``_`` for ``-``, the stem of its file exercise (``lessons/exercises/<stem>.py``);
  ``names`` are the objects the learner defines, passed to the checker in that order.
  A checker is ``checker(report, *learner_objects) -> None``: it calls the learner's code (a
  NotImplementedError it lets through means "not done yet"; any other exception is explained to the
  learner) and records ``report.ok(text)`` for a passed test, ``report.fail(mistake, hint=formula)`` for a
  failed one. A checker that records no failure passes.
* ``_gradients.check_arrays(report, spec, function)`` does the work for exercises that return arrays: it
  compares them with the right ones (finite differences for gradients) and names the known mistakes of the
  :class:`~scratchnet.exercises._gradients.ArraySpec`.
* ``check_file(path, hint=False) -> Report`` and ``main(argv)``: the file exercises and the command line
  ``python -m scratchnet.gradcheck FILE [--hint]`` and ``--list`` (``.cu`` files go to
  ``scratchnet.exercises.kernel_checker.main``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NOT_DONE = "not done yet"


@dataclass
class Report:
    """What a check found: lines for the learner, whether it passed, the formulas behind the failures."""

    exercise_id: str
    lines: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    passed: bool = True
    not_done: bool = False

    def say(self, text: str) -> None:
        self.lines.append(text)

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok: {text}")

    def fail(self, mistake: str, hint: str | None = None) -> None:
        self.passed = False
        self.lines.append(f"  wrong: {mistake}")
        if hint and hint not in self.hints:
            self.hints.append(hint)

    def render(self, hint: bool = False) -> str:
        if self.not_done:
            return "\n".join([f"{self.exercise_id}: {NOT_DONE}", *self.lines])
        verdict = "passed" if self.passed else "wrong"
        lines = [f"{self.exercise_id}: {verdict}", *self.lines]
        if not self.passed and hint:
            lines += [f"  hint: {h}" for h in self.hints]
        elif not self.passed and self.hints:
            lines.append("  (hint=True in check(...), or --hint on the command line, shows the formula)")
        return "\n".join(lines)


@dataclass
class Exercise:
    exercise_id: str
    names: tuple[str, ...]  # the objects the learner defines, in the order the checker takes them
    title: str
    checker: Callable[..., None]


REGISTRY: dict[str, Exercise] = {}


def register(exercise_id: str, *, names: tuple[str, ...], title: str):
    """Decorator: register ``checker(report, *learner_objects)`` as the checker of ``exercise_id``."""

    def decorate(checker):
        if exercise_id in REGISTRY:
            raise ValueError(f"exercise {exercise_id!r} is registered twice")
        REGISTRY[exercise_id] = Exercise(exercise_id, tuple(names), title, checker)
        return checker

    return decorate


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(size) for size in re.findall(r"\d+", text))


def _disagreeing_axes(first: tuple[int, ...], second: tuple[int, ...], into: bool = False) -> str:
    """Where two shapes cannot broadcast: aligned from the right, the axes whose sizes differ and neither is
    1 ("axis 2: 4 against 5"); ``into``: ``first`` is stored into ``second``, whose 1 does not stretch."""
    width = max(len(first), len(second))
    padded = [(1,) * (width - len(shape)) + shape for shape in (first, second)]
    clashes = [
        f"axis {axis}: {a} against {b}"
        for axis, (a, b) in enumerate(zip(*padded, strict=True))
        if a != b and a != 1 and (into or b != 1)
    ]
    return ", ".join(clashes) or "none (check the number of axes)"


def _numpy_meaning(message: str) -> str:
    """What NumPy's message means for the learner's shapes and indices, or ""."""
    if match := re.search(r"size (\d+) is different from (\d+)", message):  # matmul
        return (
            f"; in a @ b the LAST axis of a (here {match.group(2)}) must equal the FIRST axis of b (here "
            f"{match.group(1)}): write both operands' shapes next to the line, and see which one to transpose"
        )
    if match := re.search(r"broadcast together with (?:remapped )?shapes (.*)", message):
        # "(6,4) (6,)", or einsum's "(2,3,4,3)->(2,newaxis,3,4,3) (4,3,3,3)->...": the shapes before "->"
        found = re.findall(r"\(([\d,]*)\)->", match.group(1)) or re.findall(r"\(([\d,]*)\)", match.group(1))
        if len(found) >= 2:
            a, b = _shape(found[0]), _shape(found[1])
            return (
                f"; element-wise, shapes {a} and {b} are aligned from the right and must agree axis by axis "
                f"(or be 1): {_disagreeing_axes(a, b)}"
            )
    if match := re.search(r"from shape (\([\d,]*\)) into shape (\([\d,]*\))", message):
        value, target = _shape(match.group(1)), _shape(match.group(2))
        return (
            f"; you store an array of shape {value} into a slice of shape {target}: "
            f"{_disagreeing_axes(value, target, into=True)} (a slice's bounds, or the value's)"
        )
    if match := re.search(r"output operand with shape (\([\d,]*\)).*broadcast shape (\([\d,]*\))", message):
        target, value = _shape(match.group(1)), _shape(match.group(2))
        return (
            f"; `+=` into a slice of shape {target} of a value of shape {value}: "
            f"{_disagreeing_axes(value, target, into=True)} (a slice's bounds, or the value's)"
        )
    if match := re.search(r"index (-?\d+) is out of bounds for axis (\d+) with size (\d+)", message):
        return (
            f"; axis {match.group(2)} has size {match.group(3)}, indices 0 to {int(match.group(3)) - 1}: "
            "an index or a range goes past the end"
        )
    if match := re.search(r"axis (-?\d+) is out of bounds for array of dimension (\d+)", message):
        axes = int(match.group(2))
        return f"; the array has {axes} axes, 0 to {axes - 1}: there is no axis {match.group(1)}"
    if "slice indices must be integers" in message or "cannot be interpreted as an integer" in message:
        return "; a size, an index or a range bound is a float: / makes floats, // keeps integers"
    if "cannot reshape array of size" in message:
        return (
            "; reshape keeps the number of elements: the sizes you ask for must multiply to the array's size"
        )
    if "argmax of an empty sequence" in message:
        return "; a window is empty: a slice whose end is at or before its start"
    return ""


def _explain_exception(error: Exception) -> str:
    """The learner's code raised: say what NumPy's message means, in the learner's shapes, and where."""
    message = str(error)
    frames = traceback.extract_tb(error.__traceback__)
    # The learner's line: the last frame outside NumPy and this package (NumPy's own line says nothing).
    library = (os.path.dirname(np.__file__), os.path.dirname(os.path.dirname(__file__)))
    where = next((f for f in reversed(frames) if not f.filename.startswith(library)), frames[-1])
    return f"your code raised {type(error).__name__}: {message} (line {where.lineno}: {where.line})" + (
        _numpy_meaning(message)
    )


def run(exercise_id: str, *learner_objects, hint: bool = False) -> Report:
    """Run the checker of ``exercise_id`` on the learner's objects and return its :class:`Report`."""
    if exercise_id not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no exercise {exercise_id!r}; the exercises are: {known}")
    exercise = REGISTRY[exercise_id]
    report = Report(exercise_id)
    if len(learner_objects) != len(exercise.names):
        raise TypeError(
            f"check({exercise_id!r}, ...) takes {len(exercise.names)} object(s): {exercise.names}"
        )
    try:
        # Some test inputs are large on purpose: an overflow is for the checker to report, not a warning.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exercise.checker(report, *learner_objects)
    except NotImplementedError:
        report.not_done, report.passed = True, False
        report.lines = [
            f"  (replace the `raise NotImplementedError` in {' / '.join(exercise.names)} by your code)"
        ]
    except Exception as error:  # the learner's bug, not the checker's: explain it
        report.fail(_explain_exception(error))
    return report


def check(exercise_id: str, *learner_objects, hint: bool = False) -> bool:
    """Check the learner's objects for ``exercise_id``, print the report, return whether it passed."""
    report = run(exercise_id, *learner_objects, hint=hint)
    print(report.render(hint))
    return report.passed


_NOT_TOPICS = ("diagnosis", "kernel_evidence", "mutants", "kernel_counts")  # shared tools, no exercise


def claim(claim_id: str, condition, detail: str) -> None:
    """What a lesson's hidden ``claim`` cell calls: the prose beside a demo says something its output shows,
    and this prints one line, ``claim <id>: holds (<detail>)`` or ``claim <id>: FAILS (<detail>)``, that the
    lesson tests read. It never raises: a learner who changed the demo sees the line and reads on."""
    print(f"claim {claim_id}: {'holds' if condition else 'FAILS'} ({detail})")


def pin_blas_threads() -> None:
    """What the first cell of every lesson calls: limit NumPy's BLAS to ``SCRATCHNET_BLAS_THREADS`` threads
    (unset: 1; ``default``: leave them as the BLAS library chose) and print the setting and why. The lessons'
    matrices are small: one thread computes them about as fast as several, while several threads on a busy
    machine wait for cores and for each other, which makes a lesson many times slower."""
    setting = os.environ.get("SCRATCHNET_BLAS_THREADS", "1").strip()
    if setting == "default":
        print("BLAS threads: the BLAS library's default (SCRATCHNET_BLAS_THREADS=default)")
        return
    if not setting.isdigit() or int(setting) < 1:
        raise ValueError(
            f"SCRATCHNET_BLAS_THREADS is {setting!r}: set it to a number of threads (1, 2...) or 'default'"
        )
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("BLAS threads: not pinned, threadpoolctl is missing (pip install threadpoolctl)")
        return
    threadpool_limits(int(setting), user_api="blas")  # lasts until changed again: no need to keep the object
    if "SCRATCHNET_BLAS_THREADS" in os.environ:
        print(f"BLAS threads: {setting} (SCRATCHNET_BLAS_THREADS)")
    else:
        print(
            "BLAS threads: 1. The lessons' small matrices gain nothing from more, and on a busy machine more "
            "threads\nwait for each other (SCRATCHNET_BLAS_THREADS sets another number, or 'default')."
        )


def lesson_seed() -> int:
    """The seed a lesson's demos draw from: ``SCRATCHNET_LESSON_SEED``, else 0. A lesson's claims must hold
    for any seed, not only for the one its text was written with (``python -m pytest -m lesson_seeds``
    runs the lessons with seeds 0, 1 and 2)."""
    text = os.environ.get("SCRATCHNET_LESSON_SEED", "0").strip()
    if not text.isdigit():
        raise ValueError(f"SCRATCHNET_LESSON_SEED is {text!r}: set it to a whole number (0, 1, 2...)")
    if "SCRATCHNET_LESSON_SEED" in os.environ:
        print(f"seed: {int(text)} (SCRATCHNET_LESSON_SEED)")
    return int(text)


def _import_topics() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name not in _NOT_TOPICS:
            importlib.import_module(f"{__name__}.{module.name}")


_import_topics()

from scratchnet.exercises._files import check_file, main  # noqa: E402  (needs the registry filled)

__all__ = [
    "REGISTRY",
    "Report",
    "check",
    "claim",
    "lesson_seed",
    "pin_blas_threads",
    "check_file",
    "main",
    "register",
    "run",
]
