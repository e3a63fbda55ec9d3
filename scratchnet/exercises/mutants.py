"""Mistakes nobody planted: mutants made mechanically from the reference solutions, to measure the checker.

    python -m scratchnet.exercises.mutants --seed 0                  # every exercise, at most 40 mutants each
    python -m scratchnet.exercises.mutants --seed 0 --per-exercise 2 --only relu-backward,relu

A mutant is a reference solution with one small change: for Python (an AST rewrite) an operator swapped, a
comparison flipped, a constant or an axis changed, a slice or range bound moved by one, a term dropped, a
sign removed, ``+=`` made ``=``; for CUDA (a textual rewrite of the code, comments untouched) the same on
operators, comparisons, integer constants and ``+=``. A seeded sample of at most ``--per-exercise`` mutants
of each exercise is checked, and each is counted as

* **dropped**: it does not compile (NVRTC) or does not parse;
* **equivalent**: the checker passes it and its outputs equal the solution's, bit for bit, on held-out
  inputs the checker does not use (Python: 20 inputs of the shapes the checker calls with, fresh values;
  CUDA: every shape of the exercise with fresh values);
* **missed**: the checker passes it, and it is not equivalent;
* **timeout**: a kernel mutant whose check took longer than :data:`KERNEL_TIME_LIMIT` (a loop that
  never ends);
* **crashed**: the checker's report is only "your code raised ..." (or the check itself failed);
* **caught**: the checker says wrong; **named** when the message says more than "k of n elements differ"
  (or "wrong values", or the bare values of a number);
* **misdiagnosed**: named, but the cause the message names belongs to no kind of mistake that the
  mutation's category can make (:data:`COMPATIBLE`: a flipped comparison can leave elements unwritten or
  move a bound; it cannot make a race).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import difflib
import hashlib
import io
import multiprocessing
import random
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchnet.exercises import REGISTRY, run

LESSONS = Path(__file__).resolve().parent.parent.parent / "lessons" / "exercises"
ORACLE_INPUTS = 20
KERNEL_TIME_LIMIT = 180  # seconds for one kernel mutant's check (about 10 s on a loaded 2-core machine)


@dataclass
class Mutant:
    exercise: str
    category: str  # operator, accumulate, compare, constant, axis, bound, term, sign
    change: str  # e.g. "line 7: + -> -"
    source: str


# --- Python: one AST rewrite per mutant ------------------------------------------------------------------
_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult}
_FLIPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Lt: "<",
            ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}  # fmt: skip


class _Rewrite(ast.NodeTransformer):
    """Numbers every possible mutation site in visiting order; rewrites site ``target`` (-1: none) and
    records each site's (category, change)."""

    def __init__(self, target: int):
        self.target, self.sites = target, []

    def _site(self, node, category: str, change: str) -> bool:
        self.sites.append((category, f"line {node.lineno}: {change}"))
        return len(self.sites) - 1 == self.target

    def visit_FunctionDef(self, node):  # the body only: defaults and docstrings are not the exercise
        body = node.body[1:] if ast.get_docstring(node) else node.body
        for statement in body:
            self.visit(statement)
        return node

    def _swap_operator(self, node, suffix: str = "") -> None:
        """``a + b`` -> ``a - b`` (and ``+=`` -> ``-=`` with suffix "="), * <-> /."""
        kind = type(node.op)
        if kind in _SWAPS and self._site(
            node, "operator", f"{_SYMBOLS[kind]}{suffix} -> {_SYMBOLS[_SWAPS[kind]]}{suffix}"
        ):
            node.op = _SWAPS[kind]()

    def visit_BinOp(self, node):
        self.generic_visit(node)
        kind = type(node.op)
        self._swap_operator(node)
        if kind in (ast.Add, ast.Sub):
            if self._site(node, "term", f"a {_SYMBOLS[kind]} b -> a"):
                return node.left
            if self._site(node, "term", f"a {_SYMBOLS[kind]} b -> b"):
                return node.right
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        kind = type(node.op)
        self._swap_operator(node, "=")
        if self._site(node, "accumulate", f"{_SYMBOLS.get(kind, '?')}= -> ="):
            return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        kind = type(node.ops[0])
        if kind in _FLIPS and self._site(node, "compare", f"{_SYMBOLS[kind]} -> {_SYMBOLS[_FLIPS[kind]]}"):
            node.ops = [_FLIPS[kind](), *node.ops[1:]]
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.USub) and self._site(node, "sign", "-a -> a"):
            return node.operand
        return node

    def visit_keyword(self, node):
        if node.arg != "axis":
            return self.generic_visit(node)
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, int):
            axis = node.value.value
            for other in (axis + 1, axis - 1):
                if self._site(node, "axis", f"axis={axis} -> axis={other}"):
                    node.value = ast.Constant(other)
        elif isinstance(node.value, ast.Tuple) and len(node.value.elts) > 1:
            if self._site(node, "axis", "axis=(a, b, ...) -> its first axis dropped"):
                node.value.elts = node.value.elts[1:]
        return node

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float) or not hasattr(node, "lineno"):
            return node
        changed = value + 1 if isinstance(value, int) else value * 2
        if self._site(node, "constant", f"{value!r} -> {changed!r}"):
            return ast.Constant(changed)
        return node

    def visit_Slice(self, node):
        self.generic_visit(node)
        for end in ("lower", "upper"):
            bound = getattr(node, end)
            if bound is not None and self._site(bound, "bound", f"slice {end} bound + 1"):
                setattr(node, end, ast.BinOp(bound, ast.Add(), ast.Constant(1)))
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "range" and node.args:
            if self._site(node, "bound", "range(..., n) -> range(..., n - 1)"):
                node.args[min(1, len(node.args) - 1)] = ast.BinOp(
                    node.args[min(1, len(node.args) - 1)], ast.Sub(), ast.Constant(1)
                )
        return node


def python_mutants(exercise: str, source: str) -> list[Mutant]:
    """Every single-site mutant of ``source``."""
    counter = _Rewrite(-1)
    counter.visit(ast.parse(source))
    mutants = []
    for target, (category, change) in enumerate(counter.sites):
        rewrite = _Rewrite(target)
        tree = ast.fix_missing_locations(rewrite.visit(ast.parse(source)))
        mutants.append(Mutant(exercise, category, change, ast.unparse(tree)))
    return mutants


# --- CUDA: textual rewrites of the code lines -------------------------------------------------------------
_CUDA_RULES = (  # (category, pattern, replacement, description)
    ("compare", r"(?<![<>=!])<(?![<=])", "<=", "< -> <="),
    ("compare", r"(?<![<>=!])>(?![>=])", ">=", "> -> >="),
    ("compare", r"<=", "<", "<= -> <"),
    ("compare", r">=", ">", ">= -> >"),
    ("accumulate", r"\+=", "=", "+= -> ="),
    ("operator", r"(?<=\w|\)|\]) \+ (?=\w|\()", " - ", "+ -> -"),
    ("operator", r"(?<=\w|\)|\]) - (?=\w|\()", " + ", "- -> +"),
    ("operator", r"(?<=\w|\)|\]) \* (?=\w|\()", " + ", "* -> +"),
    ("constant", r"(?<![\w.])(\d+)(?=\.\d+f\b|[^\w.]|$)", None, "n -> n + 1"),  # 2, or the 0 of 0.0f
)


_TEMPLATE_ARGUMENT = r"(?<=\w)<\s*\w+\s*>"  # name<type>


def cuda_mutants(exercise: str, source: str) -> list[Mutant]:
    """Every single-site textual mutant of the kernel code (lines that are not comments or directives)."""
    mutants = []
    lines = source.splitlines(keepends=True)
    for number, line in enumerate(lines):
        code = line.split("//")[0]
        if not code.strip() or code.lstrip().startswith("#"):
            continue
        # The brackets of a template argument (minus_infinity<float>()) are no comparison: never mutated.
        templates = [m.span() for m in re.finditer(_TEMPLATE_ARGUMENT, code)]
        for category, pattern, replacement, description in _CUDA_RULES:
            for match in re.finditer(pattern, code):
                if any(start <= match.start() < end for start, end in templates):
                    continue
                new = str(int(match.group(1)) + 1) if replacement is None else replacement
                changed = line[: match.start()] + new + line[match.end() :]
                text = "".join([*lines[:number], changed, *lines[number + 1 :]])
                mutants.append(Mutant(exercise, category, f"line {number + 1}: {description}", text))
    return mutants


# --- which cause a message names, and which causes each category can produce ----------------------------
CAUSES = (  # (cause, words in the message that name it), the first that matches
    ("compile", ("does not compile",)),
    ("uninitialised", ("is read before it is set",)),  # before "race": the thread order shows it too
    ("race", ("__syncthreads", "race on", "order in which the threads run")),
    ("conflict", ("bank conflicts",)),
    ("in place", ("in place", "bit-exact", "changed the parameters", "restore each")),
    ("unwritten", ("never written", "all zeros", "without setting it first")),
    ("bounds", ("bounds guard", "index past the end", "outside", "BEFORE its bounds guard")),
    ("shape", ("has shape", "must return", "single number", "dtype")),
    ("region", ("wrong only", "appears only")),
    ("nan", ("NaN", "inf")),
    ("sign", ("SIGN", "sign")),
    ("scale", ("factor", "× correct", "/ N", "MEAN", "mean", "1/N", "scaled", "2h")),
    (
        "layout",
        ("TRANSPOSED", "FLIPPED", "flipped", "ordered", "swapped", "column-major", "axis", "wrong places"),
    ),
    ("terms", ("sum over", "missing", "only the direct term", "is lost", "are lost", "+=")),
)
ANY = {cause for cause, _ in CAUSES} - {"compile"}
COMPATIBLE = {  # the causes a mutation of each category can produce
    "operator": ANY - {"race", "in place"},
    "term": ANY - {"race", "in place"},
    "constant": ANY - {"race"},
    "accumulate": ANY - {"race", "layout"},
    "compare": {"unwritten", "bounds", "region", "nan", "terms", "shape", "scale", "sign", "uninitialised"},
    "axis": {"shape", "layout", "scale", "terms", "region", "nan", "bounds"},
    "bound": {"unwritten", "bounds", "shape", "region", "terms", "nan", "layout", "scale", "uninitialised"},
    "sign": {"sign", "scale", "terms", "region", "nan", "unwritten", "shape", "bounds"},
}
UNNAMED = (
    "elements differ",
    "wrong values",
    "the launch failed",
    "a centered difference with h = 1e-5 gives",
)


def named_cause(message: str) -> str | None:
    for cause, words in CAUSES:
        if any(word in message for word in words):
            return cause
    return None


# --- running the checker on a mutant ---------------------------------------------------------------------
@dataclass
class Outcome:
    mutant: Mutant
    verdict: str  # dropped, equivalent, missed, crashed, caught
    named: bool = False
    misdiagnosed: bool = False
    message: str = ""


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        for key in ("mutants", outcome.verdict, *(["named"] if outcome.named else []),
                    *(["misdiagnosed"] if outcome.misdiagnosed else [])):  # fmt: skip
            self.counts[key] = self.counts.get(key, 0) + 1


def _first_failure(text: str) -> str:
    lines = [
        line.strip()[len("wrong: ") :] for line in text.splitlines() if line.strip().startswith("wrong: ")
    ]
    return lines[0] if lines else text


def _judge(mutant: Mutant, passed: bool, text: str, equivalent) -> Outcome:
    if passed:
        return Outcome(mutant, "equivalent" if equivalent() else "missed")
    message = _first_failure(text)
    if "does not compile" in message or "cannot run" in message:
        return Outcome(mutant, "dropped", message=message)
    if message.startswith("your code raised") or message.startswith("the check itself failed"):
        return Outcome(mutant, "crashed", message=message)
    named = not any(words in message for words in UNNAMED) and not re.search(
        r"yours [-\d.e+]+, right", message
    )
    cause = named_cause(message) if named else None
    misdiagnosed = named and cause is not None and cause not in COMPATIBLE[mutant.category]
    return Outcome(mutant, "caught", named, misdiagnosed, message)


def _load(source: str) -> dict:
    namespace: dict = {"np": np}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(source, "<mutant>", "exec"), namespace)  # noqa: S102 -- our own solutions, rewritten
    return namespace


class _Recorder:
    """Wraps a learner function: records the arguments of its first calls (the shapes the checker uses)."""

    def __init__(self, function, calls: list):
        self.function, self.calls = function, calls

    def __call__(self, *args):
        if len(self.calls) < 8:
            self.calls.append(copy.deepcopy(args))
        return self.function(*args)


def _fresh(args: tuple, rng: np.random.Generator) -> tuple:
    """The same call with new values in its float arrays (held-out inputs of the same shapes)."""
    return tuple(
        rng.standard_normal(a.shape).astype(a.dtype)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f"
        else a
        for a in args
    )


def _same_outputs(a, b) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same_outputs(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_outputs(a[k], b[k]) for k in a)
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _python_equivalent(names, reference: dict, mutated: dict, calls: dict, seed: int) -> bool:
    rng = np.random.default_rng(seed + 1)
    for name in names:
        recorded = calls.get(name) or []
        per_call = -(-ORACLE_INPUTS // max(1, len(recorded)))
        for args in recorded:
            for _ in range(per_call):
                held_out = _fresh(args, rng)
                outputs = []
                for namespace in (reference, mutated):
                    try:
                        with np.errstate(all="ignore"), warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            outputs.append(("value", namespace[name](*copy.deepcopy(held_out))))
                    except Exception as error:  # noqa: BLE001 -- a mutant may raise where the solution does not
                        outputs.append(("raised", type(error).__name__))
                if outputs[0][0] != outputs[1][0] or not _same_outputs(outputs[0][1], outputs[1][1]):
                    return False
    return True


def _check_python(exercise: str, source: str, seed: int, mutants: list[Mutant]) -> list[Outcome]:
    names = REGISTRY[exercise].names
    reference = _load(source)
    calls: dict[str, list] = {}
    recorded = [_Recorder(reference[name], calls.setdefault(name, [])) for name in names]
    run(exercise, *recorded)  # the reference under the checker: the shapes of the oracle's inputs
    outcomes = []
    for mutant in mutants:
        try:
            mutated = _load(mutant.source)
        except Exception as error:  # noqa: BLE001
            outcomes.append(Outcome(mutant, "dropped", message=f"cannot run: {error}"))
            continue
        try:
            report = run(exercise, *(mutated[name] for name in names))
            passed, text = report.passed, report.render()
        except Exception:  # noqa: BLE001 -- the checker itself broke on this mutant: count it, say so
            passed, text = False, "  wrong: the check itself failed: " + traceback.format_exc(limit=1)
        outcomes.append(
            _judge(
                mutant, passed, text, lambda m=mutated: _python_equivalent(names, reference, m, calls, seed)
            )
        )
    return outcomes


def _kernel_equivalent(exercise: str, reference: str, mutated: str, seed: int) -> bool:
    """Outputs of every kernel of the exercise on each of its shapes, fresh inputs, bit for bit."""
    from scratchnet.device import get_device
    from scratchnet.exercises import kernel_checker as checker

    device = get_device("sim")
    task_set = checker.exercise_for(exercise)
    kernels = [checker._load(device, text, "oracle.cu") for text in (reference, mutated)]
    for task in task_set.tasks:
        rng = np.random.default_rng(seed + 1)
        for shape in task_set.shapes:
            inputs = task.make_inputs(shape.sizes, rng)
            runs = []
            for compiled in kernels:
                try:
                    runs.append(checker._run(device, compiled[task.kernel], task, inputs, shape.sizes, None))
                except Exception:  # noqa: BLE001 -- a failed launch differs from the solution's
                    return False
            if not _same_outputs(runs[0], runs[1]):
                return False
    return True


def _kernel_report(exercise: str, source: str, answer) -> None:
    """In a child process: check one kernel source, send back (passed, report text)."""
    from scratchnet.exercises.kernel_checker import check_source

    try:
        report = check_source(exercise, source)
        answer.send((report.passed, str(report)))
    except Exception:  # noqa: BLE001
        answer.send((False, "  wrong: the check itself failed: " + traceback.format_exc(limit=1)))


def _check_kernel(exercise: str, source: str, seed: int, mutants: list[Mutant]) -> list[Outcome]:
    outcomes = []
    for mutant in mutants:
        # A child process per mutant: a mutated loop may never end, as it would hang a GPU.
        receive, send = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.get_context("fork").Process(
            target=_kernel_report, args=(exercise, mutant.source, send)
        )
        child.start()
        if not receive.poll(KERNEL_TIME_LIMIT):
            child.kill()
            child.join()
            outcomes.append(Outcome(mutant, "timeout", message=f"no result in {KERNEL_TIME_LIMIT} s"))
            continue
        passed, text = receive.recv()
        child.join()
        outcomes.append(
            _judge(
                mutant, passed, text, lambda m=mutant: _kernel_equivalent(exercise, source, m.source, seed)
            )
        )
    return outcomes


# --- the corpus and the report ---------------------------------------------------------------------------
def solutions() -> list[tuple[str, Path]]:
    """(exercise, solution file) for every Python solution of a registered exercise and every .cu one."""
    found = []
    for path in sorted((LESSONS / "solutions").rglob("*.py")):
        exercise = path.stem.replace("_", "-")
        if exercise in REGISTRY and not REGISTRY[exercise].names[0].endswith("_source"):
            found.append((exercise, path))
    found += [
        (re.sub(r"^\d+_", "", p.stem), p) for p in sorted((LESSONS / "kernels" / "solutions").glob("*.cu"))
    ]
    return found


def corpus(
    seed: int, per_exercise: int, only: set[str] | None = None, kind: str = "all"
) -> list[tuple[str, Path, list[Mutant]]]:
    """(exercise, solution file, a seeded sample of its mutants) for each solution file; ``only``: exercise
    ids (a kernel's name, e.g. ``im2col``, also selects its .cu file); ``kind``: "all", "python" or "cuda"."""
    found = []
    for exercise, path in solutions():
        suffix_kind = {".py": "python", ".cu": "cuda"}[path.suffix]
        if (only and exercise not in only) or kind not in ("all", suffix_kind):
            continue
        source = path.read_text(encoding="utf-8")
        every = cuda_mutants(exercise, source) if path.suffix == ".cu" else python_mutants(exercise, source)
        found.append(
            (
                exercise,
                path,
                random.Random(f"{seed}:{path.name}").sample(every, min(per_exercise, len(every))),
            )
        )
    return found


def _check(exercise: str, path: Path, seed: int, sample: list[Mutant]) -> list[Outcome]:
    source = path.read_text(encoding="utf-8")
    return (_check_kernel if path.suffix == ".cu" else _check_python)(exercise, source, seed, sample)


def measure(
    seed: int, per_exercise: int, only: set[str] | None = None, progress=None, kind: str = "all"
) -> dict:
    """``{(exercise, file name): (Tally, [Outcome])}`` for the :func:`corpus` of ``seed``."""
    results = {}
    for exercise, path, sample in corpus(seed, per_exercise, only, kind):
        started = time.perf_counter()
        outcomes = _check(exercise, path, seed, sample)
        tally = Tally()
        for outcome in outcomes:
            tally.add(outcome)
        results[(exercise, path.name)] = (tally, outcomes)
        if progress:
            progress(f"{exercise} ({path.name}): {tally.counts} in {time.perf_counter() - started:.0f} s")
    return results


# --- a sample of named mutants, each judged by reading it ----------------------------------------------
VERDICTS = (
    Path(__file__).resolve().parent.parent.parent / "docs" / "benchmarks" / "checker-sample-verdicts.txt"
)


def mutant_id(path: Path, mutant: Mutant) -> str:
    """A name that stays with the mutant: its file and a hash of its source."""
    return f"{path.name}@{hashlib.sha1(mutant.source.encode()).hexdigest()[:8]}"


def _verdicts() -> dict[str, tuple[str, str]]:
    """``{mutant id: (verdict, reason)}`` from :data:`VERDICTS` (lines "id | right | reason")."""
    if not VERDICTS.is_file():
        return {}
    found = {}
    for line in VERDICTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, verdict, reason = (part.strip() for part in line.split("|", 2))
            found[key] = (verdict, reason)
    return found


def _diff(original: str, mutated: str) -> str:
    """The changed lines, as - old / + new."""
    lines = difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0)
    return "\n".join(line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def sample_named(seed: int, per_exercise: int, count: int, sample_seed: int, kind: str = "all") -> str:
    """``count`` named mutants of the corpus of ``seed``, drawn in an order shuffled by ``sample_seed`` (the
    corpus is checked in that order until ``count`` are named): id, change, diff, message, and the verdict
    read from :data:`VERDICTS` (``unjudged`` until someone has read it)."""
    drawn = [(e, p, m) for e, p, sample in corpus(seed, per_exercise, kind=kind) for m in sample]
    random.Random(sample_seed).shuffle(drawn)
    verdicts, blocks, judged = _verdicts(), [], {}
    for exercise, path, mutant in drawn:
        (outcome,) = _check(exercise, path, seed, [mutant])
        if not outcome.named:
            continue
        key = mutant_id(path, mutant)
        verdict, reason = verdicts.get(key, ("unjudged", ""))
        judged[verdict] = judged.get(verdict, 0) + 1
        original = path.read_text(encoding="utf-8")
        if path.suffix == ".py":  # a Python mutant is unparsed from its tree: compare with the original's
            original = ast.unparse(ast.parse(original))
        diff = _diff(original, mutant.source)
        blocks.append(
            f"{len(blocks) + 1}. {key} ({exercise}, {mutant.category}, {mutant.change})\n"
            + "".join(f"    {line}\n" for line in diff.splitlines())
            + f"    message: {outcome.message.splitlines()[0]}\n    verdict: {verdict}: {reason}"
        )
        if len(blocks) == count:
            break
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(judged.items()))
    return "\n\n".join([*blocks, f"{len(blocks)} named mutants: {summary}"])


COLUMNS = (
    "mutants",
    "dropped",
    "timeout",
    "equivalent",
    "missed",
    "crashed",
    "caught",
    "named",
    "misdiagnosed",
)


def render(results: dict) -> str:
    width = max([len(f"{e} ({f})") for e, f in results] + [8])

    def row(label: str, counts: dict) -> str:
        return f"{label:<{width}}" + "".join(f"{counts.get(c, 0):>{len(c) + 2}}" for c in COLUMNS)

    lines = [f"{'exercise (file)':<{width}}" + "".join(f"  {c}" for c in COLUMNS)]
    total = Tally()
    for (exercise, file), (tally, _) in results.items():
        lines.append(row(f"{exercise} ({file})", tally.counts))
        for c, n in tally.counts.items():
            total.counts[c] = total.counts.get(c, 0) + n
    lines.append(row("total", total.counts))
    caught, named = total.counts.get("caught", 0), total.counts.get("named", 0)
    if caught:
        misdiagnosed = total.counts.get("misdiagnosed", 0)
        lines.append(
            f"named {named} of {caught} caught ({100 * named / caught:.0f}%), misdiagnosed {misdiagnosed}"
        )
    return "\n".join(lines)


def details(results: dict, kinds=("missed", "misdiagnosed")) -> str:
    """The diff and message of each mutant that is missed or misdiagnosed: what to look at next."""
    lines = []
    for (exercise, file), (_, outcomes) in results.items():
        for outcome in outcomes:
            kind = "misdiagnosed" if outcome.misdiagnosed else outcome.verdict
            if kind in kinds:
                lines.append(
                    f"{kind}: {exercise} ({file}) {outcome.mutant.category}, {outcome.mutant.change}"
                )
                if outcome.message:
                    lines.append(f"    {outcome.message.splitlines()[0]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scratchnet.exercises.mutants", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed of the sample (default 0)")
    parser.add_argument("--per-exercise", type=int, default=40, help="mutants per solution file (default 40)")
    parser.add_argument("--only", default="", help="comma-separated exercises (ids, or kernel names)")
    parser.add_argument("--kind", choices=("all", "python", "cuda"), default="all", help="which solutions")
    parser.add_argument("--details", action="store_true", help="also list each missed or misdiagnosed mutant")
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        metavar="COUNT",
        help="instead: COUNT named mutants, with diff and verdict",
    )
    parser.add_argument(
        "--sample-seed", type=int, default=0, help="the seed of the sample's order (default 0)"
    )
    args = parser.parse_args(argv)
    if args.sample:
        print(sample_named(args.seed, args.per_exercise, args.sample, args.sample_seed, args.kind))
        return 0
    only = set(filter(None, args.only.split(","))) or None
    results = measure(
        args.seed, args.per_exercise, only, lambda line: print(line, file=sys.stderr), args.kind
    )
    print(render(results))
    if args.details:
        print(details(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
