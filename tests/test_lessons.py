"""The lesson notebooks: their order (the table in lessons/README.md), their shape (tasks, exercises with
check cells and solutions, committed without outputs), and two runs of each: as committed (every check says
"not done yet" and the notebook runs to the end) and solved (each exercise cell replaced by its solution,
every check passes). Select them with ``-m lessons``; one lesson with ``-k 02_``.

``-m lesson_seeds`` (never in CI: about half an hour) runs every lesson with claims again as committed, with
seeds 0, 1 and 2 (``SCRATCHNET_LESSON_SEED``) and 1 and 2 BLAS threads (``SCRATCHNET_BLAS_THREADS``): a claim
must not hold by luck of one seed or one summation order."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from site_tool import course_site  # the as-committed run stores each executed lesson for the site build

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
SOLUTIONS = LESSONS / "exercises" / "solutions"
TASK_TAGS = {"exercise", "predict", "try"}
CLAIM_LINE = re.compile(r"^claim (\S+): (holds|FAILS) ", flags=re.M)  # what scratchnet.exercises.claim prints
TIME_LIMIT_S = 180.0

pytestmark = [pytest.mark.lessons, pytest.mark.slow]  # a kernel per notebook, minutes in all


# Notebook names, in the order of the table under '## The lessons, in order' in lessons/README.md.
ORDER = course_site.lesson_order()


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _read(name: str):
    return nbformat.read(LESSONS / name, as_version=4)


def test_the_order_table_lists_existing_notebooks_in_order():
    assert ORDER, "lessons/README.md has no lesson table"
    missing = [name for name in ORDER if not (LESSONS / name).is_file()]
    assert not missing, f"lessons/README.md lists notebooks that do not exist: {missing}"
    numbers = [int(name[:2]) for name in ORDER]
    assert numbers == sorted(set(numbers)), f"the table must list lessons by increasing number: {ORDER}"


@pytest.mark.parametrize("name", ORDER)
def test_committed_without_outputs(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    assert (notebook.nbformat, notebook.nbformat_minor) >= (4, 5), f"{name}: nbformat 4.5 (cell ids) needed"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name}: clear the outputs ({cell.id})"


@pytest.mark.parametrize("name", ORDER)
def test_tasks_exercises_answers_and_checks(name):
    cells = _read(name).cells
    tasks = [c for c in cells if TASK_TAGS & set(_tags(c))]
    assert len(tasks) >= 3, f"{name}: {len(tasks)} tagged tasks, at least 3 needed"
    exercises = [i for i, c in enumerate(cells) if "exercise" in _tags(c)]
    if not name.startswith("01_"):
        assert exercises, f"{name}: at least one cell tagged `exercise` needed"
    for i in exercises:
        cell = cells[i]
        solution = SOLUTIONS / Path(name).stem / f"{cell.id}.py"
        assert solution.is_file(), f"{name}: exercise {cell.id} has no solution {solution.relative_to(ROOT)}"
        assert "NotImplementedError" in cell.source, (
            f"{name}: the stub of {cell.id} must raise NotImplementedError"
        )
        following = next(c for c in cells[i + 1 :] if c.cell_type == "code")
        assert "check" in _tags(following), f"{name}: exercise {cell.id} must be followed by a `check` cell"
        assert f'check("{cell.id}"' in following.source, f"{name}: the check after {cell.id} must check it"
    for i, cell in enumerate(cells):
        if "predict" in _tags(cell):
            answer = next((c for c in cells[i + 1 :] if c.cell_type == "markdown"), None)
            assert answer is not None and "answer" in _tags(answer), (
                f"{name}: predict cell {cell.id} needs an answer"
            )
            assert answer.metadata.get("jupyter", {}).get("source_hidden"), (
                f"{name}: hide the answer to {cell.id}"
            )
    for cell in cells:
        if "claim" in _tags(cell):
            hidden = cell.metadata.get("jupyter", {}).get("source_hidden")
            assert hidden, f"{name}: hide the claim cell {cell.id}"
            assert "claim(" in cell.source, f"{name}: claim cell {cell.id} calls no claim(...)"


def _execute(notebook, monkeypatch, blas_threads: int = 1) -> float:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # One BLAS thread unless told: the lessons' small matrices gain nothing from more, and on a busy
    # machine oversubscribed BLAS threads make a 20x784 product a hundred times slower.
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", str(blas_threads))
    if blas_threads != 1:  # what the lessons' first cell reads (unset means 1)
        monkeypatch.setenv("SCRATCHNET_BLAS_THREADS", str(blas_threads))
    client = nbclient.NotebookClient(
        notebook, timeout=TIME_LIMIT_S, kernel_name="python3", resources={"metadata": {"path": str(LESSONS)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    return time.perf_counter() - start


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _assert_claims_hold(name: str, notebook) -> None:
    """Every `claim` cell printed at least one claim line, and none of them FAILS."""
    for cell in notebook.cells:
        if "claim" in _tags(cell):
            print(_text(cell).strip())
            verdicts = CLAIM_LINE.findall(_text(cell))
            assert verdicts, f"{name}: claim cell {cell.id} printed no claim line: {_text(cell)!r}"
            assert all(verdict == "holds" for _, verdict in verdicts), f"{name}: {_text(cell)}"


def _pngs(notebook) -> int:
    return sum(
        "image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )


@pytest.mark.parametrize("name", ORDER)
def test_runs_as_committed(name, monkeypatch):
    notebook = _read(name)
    seconds = _execute(notebook, monkeypatch)
    print(f"{name} as committed: {seconds:.1f} s")
    assert seconds < TIME_LIMIT_S, f"{name} took {seconds:.0f} s, above {TIME_LIMIT_S:.0f} s"
    for cell in notebook.cells:
        if "check" in _tags(cell):
            assert "not done yet" in _text(cell), f"{name}: check {cell.id} printed {_text(cell)!r}"
    _assert_claims_hold(name, notebook)
    assert _pngs(notebook) >= 1, f"{name}: no figure (PNG output)"
    course_site.store_executed(name, notebook)  # the site shows this run: the build does not run it again


@pytest.mark.parametrize("name", ORDER)
def test_runs_solved(name, monkeypatch):
    notebook = _read(name)
    for cell in notebook.cells:
        if "exercise" in _tags(cell):
            cell.source = (SOLUTIONS / Path(name).stem / f"{cell.id}.py").read_text(encoding="utf-8")
    seconds = _execute(notebook, monkeypatch)
    print(f"{name} solved: {seconds:.1f} s")
    assert seconds < TIME_LIMIT_S, f"{name} took {seconds:.0f} s, above {TIME_LIMIT_S:.0f} s"
    for cell in notebook.cells:
        if "check" in _tags(cell):
            output = _text(cell)
            assert ": passed" in output, f"{name}: check {cell.id} printed {output!r}"
            assert "not done yet" not in output and "wrong" not in output, f"{name}: {output!r}"
    _assert_claims_hold(name, notebook)


def _has_claims(name: str) -> bool:
    return any("claim" in _tags(cell) for cell in _read(name).cells)


def _reads_seed(name: str) -> bool:
    return any("lesson_seed()" in cell.source for cell in _read(name).cells)


# Lessons whose claims draw nothing at random, so another seed cannot change them (the seed runs skip them).
CLAIMS_WITHOUT_A_SEED = {
    "10_tiling_and_the_roofline.ipynb": "its claim counts the accesses of fixed kernels at fixed sizes",
}


def test_every_lesson_with_claims_reads_its_seed_or_draws_nothing():
    unseeded = {name for name in ORDER if _has_claims(name) and not _reads_seed(name)}
    assert unseeded == set(CLAIMS_WITHOUT_A_SEED), "call lesson_seed() in the first cell, or say why not"


@pytest.mark.lesson_seeds
@pytest.mark.parametrize("blas_threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", [name for name in ORDER if _has_claims(name) and _reads_seed(name)])
def test_claims_hold_on_every_seed_and_thread_count(name, seed, blas_threads, monkeypatch):
    notebook = _read(name)
    monkeypatch.setenv("SCRATCHNET_LESSON_SEED", str(seed))
    seconds = _execute(notebook, monkeypatch, blas_threads=blas_threads)
    first = _text(next(cell for cell in notebook.cells if "pin_blas_threads()" in cell.source))
    assert f"seed: {seed} (SCRATCHNET_LESSON_SEED)" in first, f"{name} does not read its seed: {first!r}"
    assert f"BLAS threads: {blas_threads}" in first, f"{name} does not pin the BLAS threads: {first!r}"
    print(f"{name} seed {seed}, {blas_threads} BLAS thread(s): {seconds:.1f} s")
    _assert_claims_hold(name, notebook)


@pytest.mark.slow
def test_a_broken_demo_fails_its_claim(monkeypatch):
    """Lesson 02's claim catches a demo that no longer shows its point: every learning rate, the same step."""
    name = "02_linear_softmax.ipynb"
    notebook = _read(name)
    demo = next(cell for cell in notebook.cells if cell.id == "train")
    assert "-= lr * fc.grads[name]" in demo.source
    demo.source = demo.source.replace("-= lr * fc.grads[name]", "-= 0.1 * fc.grads[name]")
    _execute(notebook, monkeypatch)
    with pytest.raises(AssertionError, match="claim train-try: FAILS"):
        _assert_claims_hold(name, notebook)
