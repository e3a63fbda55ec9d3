"""File exercises and the command line ``python -m scratchnet.gradcheck``.

    python -m scratchnet.gradcheck lessons/exercises/linear_backward.py          # check a file exercise
    python -m scratchnet.gradcheck lessons/exercises/linear_backward.py --hint   # ... and show the formulas
    python -m scratchnet.gradcheck lessons/exercises/kernels/relu.cu             # a CUDA exercise
    python -m scratchnet.gradcheck --list          # every exercise, where it is, and whether it is done

A file exercise ``lessons/exercises/<stem>.py`` defines the objects of the exercise whose id is ``<stem>``
with ``-`` for ``_``; any other file is matched by the names it defines. Exit status: 0 passed, 1 not (yet),
2 bad input (a missing file, an unknown exercise).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import sys
from pathlib import Path

from scratchnet.exercises import REGISTRY, Exercise, Report, run


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exercise_for(path: Path, namespace: dict) -> Exercise | None:
    by_stem = REGISTRY.get(path.stem.replace("_", "-"))
    if by_stem is not None:
        return by_stem
    defined = [e for e in REGISTRY.values() if all(callable(namespace.get(n)) for n in e.names)]
    return defined[0] if defined else None


def check_file(path: str | Path, hint: bool = False) -> Report:
    """Check the exercise defined in the Python file ``path``; FileNotFoundError when there is none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such exercise file: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # a learner's print at import time is not the report
            namespace = vars(_load(path))
    except Exception as error:  # noqa: BLE001 -- the learner's file: report, do not crash
        report = Report(path.stem.replace("_", "-"))
        report.fail(f"cannot run {path}: {type(error).__name__}: {error}")
        return report
    exercise = _exercise_for(path, namespace)
    if exercise is None:
        raise LookupError(f"{path} is no exercise: it defines none of the functions of `--list`")
    missing = [n for n in exercise.names if n not in namespace]
    if missing:
        report = Report(exercise.exercise_id)
        report.fail(f"{path} must define {', '.join(missing)}")
        return report
    return run(exercise.exercise_id, *(namespace[n] for n in exercise.names), hint=hint)


def notebook_exercises(lessons: Path) -> dict[str, tuple[Path, str]]:
    """``{cell id: (notebook, cell source)}`` of every cell tagged ``exercise`` in ``lessons/*.ipynb``."""
    found = {}
    for notebook in sorted(lessons.glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if "exercise" in cell.get("metadata", {}).get("tags", []):
                source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                found[cell["id"]] = (notebook, source)
    return found


def _cell_done(exercise: Exercise, source: str) -> bool:
    namespace: dict = {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile("import numpy as np\n" + source, "<cell>", "exec"), namespace)  # noqa: S102
    except Exception:  # noqa: BLE001 -- a cell that does not run on its own is not done
        return False
    if not all(n in namespace for n in exercise.names):
        return False
    return run(exercise.exercise_id, *(namespace[n] for n in exercise.names)).passed


def _file_done(path: Path) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):
        return check_file(path).passed


def list_exercises(lessons: Path) -> str:
    """One line per place an exercise lives: ``done``, ``to do`` (or ``?`` for a kernel), its id, the place,
    its title."""
    cells = notebook_exercises(lessons)
    lines = []
    for exercise_id, exercise in sorted(REGISTRY.items()):
        places = []
        if exercise_id in cells:
            notebook, source = cells[exercise_id]
            places.append((f"{notebook.name} (cell {exercise_id})", _cell_done(exercise, source)))
        file = lessons / "exercises" / f"{exercise_id.replace('-', '_')}.py"
        if file.is_file():
            places.append((str(file), _file_done(file)))
        for place, done in places or [("(not in a lesson yet)", False)]:
            status = "done " if done else "to do"
            lines.append(f"{status}  {exercise_id:<34} {place:<58} {exercise.title}")
    # CUDA exercises compile on the simulator, too slow to try them all here: listed, not run.
    for kernel in sorted((lessons / "exercises" / "kernels").glob("*.cu")):
        lines.append(f"?      {kernel.stem:<34} {str(kernel):<58} CUDA kernel (check it to know)")
    return "\n".join(lines)


def _check_kernel_file(path: Path, hint: bool) -> int:
    try:
        kernel_exercises = importlib.import_module("scratchnet.exercises.kernel_checker")
    except ModuleNotFoundError:
        print(
            f"error: {path} is a CUDA exercise, and this scratchnet has no kernel checker "
            "(scratchnet.exercises.kernel_checker)",
            file=sys.stderr,
        )
        return 2
    return kernel_exercises.main([str(path), *(["--hint"] if hint else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scratchnet.gradcheck",
        description="Check an exercise (lessons/exercises/*.py or *.cu); name the mistake if it is wrong.",
        epilog="example: python -m scratchnet.gradcheck lessons/exercises/linear_backward.py",
    )
    parser.add_argument("files", nargs="*", type=Path, help="exercise files (.py, or .cu for kernels)")
    parser.add_argument("--hint", action="store_true", help="also print the formulas of what is wrong")
    parser.add_argument("--list", action="store_true", help="list every exercise and whether it is done")
    parser.add_argument(
        "--lessons", type=Path, default=Path("lessons"), help="the lessons folder (for --list)"
    )
    args = parser.parse_args(argv)
    if args.list:
        if not args.lessons.is_dir():
            print(
                f"error: no lessons folder {args.lessons} (run from the repository root, or --lessons)",
                file=sys.stderr,
            )
            return 2
        print(list_exercises(args.lessons))
        return 0
    if not args.files:
        print("error: give at least one exercise file (or --list)", file=sys.stderr)
        return 2
    status = 0
    for path in args.files:
        if path.suffix == ".cu":
            status = max(status, _check_kernel_file(path, args.hint))
            continue
        try:
            report = check_file(path, args.hint)
        except (FileNotFoundError, LookupError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"== {path}\n{report.render(args.hint)}")
        status = max(status, 0 if report.passed else 1)
    return status
