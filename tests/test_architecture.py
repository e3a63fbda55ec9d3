"""The layout keeps its promises: no import cycle between scratchnet's parts, the CUDA toolchain builds on
neither the simulator nor CuPy, the training loop meets data parallelism through one interface, every
``python -m`` command starts, and every ``scratchnet.*`` name the lessons, README, docs and tests use exists.

Imports are read from the source (``ast``), not from a running interpreter, so an import inside a function,
which runs only when called, counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scratchnet"

# What `python -m` runs, by the name users type (the moved ones are kept at their old names).
ENTRY_POINTS = (
    "train",
    "evaluate",
    "predict",
    "pretrained",
    "gradcheck",
    "bench",
    "parallel_bench",
    "kernel_bench",
    "kernel_exercises",
    "gpucheck",
)


# --- reading imports ----------------------------------------------------------------------------------
def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``scratchnet/train/loop.py`` -> ``scratchnet.train.loop``; a package's ``__init__`` is the package."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_main_guard(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _walk_outside_main_guard(tree: ast.AST):
    """Every node of ``tree`` except those inside ``if __name__ == "__main__":``.

    Such a block runs only when its module is the program itself (``python -m``), after every import is
    done: it is the command's entry, which may reach the code built on its module (``python -m
    scratchnet.gradcheck`` runs the exercise checker, which uses gradcheck), and nothing imports it.
    """
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not _is_main_guard(child))


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of everything ``source`` imports: ``import``, ``from ... import``
    (each imported name as ``module.name``, which may be a submodule), and ``importlib.import_module``
    with a string or the constant start of an f-string (``f"scratchnet.{name}"`` -> ``scratchnet``)."""
    found = []
    for node in _walk_outside_main_guard(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package that holds this module
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            found += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == (
            "import_module"
        ):
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.JoinedStr) and argument.values:
                argument = argument.values[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                found.append((argument.value.rstrip("."), node.lineno))
    return found


def units(root: Path = PACKAGE) -> set[str]:
    """The parts of the package: each top-level module and each subpackage (``scratchnet.sim``)."""
    modules = {f"{root.name}.{p.stem}" for p in root.glob("*.py") if p.name != "__init__.py"}
    return modules | {f"{root.name}.{p.parent.name}" for p in root.glob("*/__init__.py")}


def unit_of(name: str, known: set[str]) -> str | None:
    """The part that ``name`` belongs to; None for names outside the package or of the root package
    itself (``from scratchnet import get_device``: the root only gathers its parts' names)."""
    unit = ".".join(name.split(".")[:2])
    return unit if unit in known else None


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, str]]:
    """{part: {part it imports: "file:line" of one such import}}, without a part's imports of itself."""
    known = units(root)
    graph: dict[str, dict[str, str]] = {unit: {} for unit in known}
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        source_unit = unit_of(module, known)
        if source_unit is None:  # the root package's __init__, which imports its own parts
            continue
        for name, line in imported_names(path.read_text(), module, path.name == "__init__.py"):
            target = unit_of(name, known)
            if target is not None and target != source_unit:
                graph[source_unit].setdefault(target, f"{path.relative_to(root.parent)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, {})):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    return "; ".join(f"{a} -> {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))


# --- (a) no import cycle ------------------------------------------------------------------------------
def test_no_import_cycle_between_the_parts_of_scratchnet():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {_describe(cycle, graph)}"


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {}}) is None
    assert find_cycle({"a": {"b": "", "c": ""}, "b": {"c": ""}, "c": {}}) is None  # a diamond, no cycle
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y": ""}, "y": {"y": ""}}) == ["y", "y"]


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    """A synthetic package with the imports that hide a cycle; its ``__main__`` block does not count."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("import importlib\nimportlib.import_module(f'pkg.{1}')\n")
    (package / "sub" / "__init__.py").write_text("from . import inner\n")
    (package / "sub" / "inner.py").write_text("def f():\n    from pkg.lone import helper\n")
    (package / "lone.py").write_text("import importlib\nimportlib.import_module(f'pkg.sub.{0}')\n")
    (package / "cli.py").write_text("if __name__ == '__main__':\n    import pkg.lone\n")
    graph = import_graph(package)
    assert graph == {
        "pkg.sub": {"pkg.lone": "pkg/sub/inner.py:2"},
        "pkg.lone": {"pkg.sub": "pkg/lone.py:2"},
        "pkg.cli": {},
    }
    assert find_cycle(graph) == ["pkg.lone", "pkg.sub", "pkg.lone"]


# --- (b) the CUDA toolchain is a base -----------------------------------------------------------------
TOOLCHAIN_MUST_NOT_IMPORT = ("scratchnet.sim", "scratchnet.cupy_backend")


def forbidden_imports(package: Path, forbidden: tuple[str, ...], root: Path = PACKAGE) -> list[str]:
    """``file:line name`` for each import under ``package`` (inside ``root``) of a module in ``forbidden``
    or inside one."""
    hits = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, root)
        for name, line in imported_names(path.read_text(), module, path.name == "__init__.py"):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                hits.append(f"{path.relative_to(root.parent)}:{line} {name}")
    return hits


def test_the_cuda_toolchain_imports_neither_the_simulator_nor_the_cupy_backend():
    assert forbidden_imports(PACKAGE / "_cuda", TOOLCHAIN_MUST_NOT_IMPORT) == []


def test_the_toolchain_check_sees_a_late_import_of_the_simulator(tmp_path):
    mutant = tmp_path / "scratchnet" / "_cuda"
    mutant.mkdir(parents=True)
    (mutant / "signature.py").write_text("def parse():\n    from scratchnet.sim.compiler import build\n")
    (mutant / "launch.py").write_text("from scratchnet import cupy_backend\n")
    assert forbidden_imports(mutant, TOOLCHAIN_MUST_NOT_IMPORT, root=tmp_path / "scratchnet") == [
        "scratchnet/_cuda/launch.py:1 scratchnet.cupy_backend",
        "scratchnet/_cuda/signature.py:2 scratchnet.sim.compiler",
        "scratchnet/_cuda/signature.py:2 scratchnet.sim.compiler.build",
    ]


# --- the training loop and data parallelism -----------------------------------------------------------
LOOP = PACKAGE / "train" / "loop.py"
_DATA_PARALLEL_WORDS = re.compile(r"\b(world|worlds|rank|ranks|mpi\w*|allreduce\w*)\b", re.IGNORECASE)


def data_parallel_leaks(source: str) -> list[str]:
    """Where ``source`` reaches data parallelism other than through ``scratchnet.train.data_parallel``:
    an import of :mod:`scratchnet.parallel`, or a rank, world, MPI or allreduce in its text (code,
    comments and docstrings alike: the loop is read as if there were one process)."""
    leaks = [
        f"line {line}: imports {name}"
        for name, line in imported_names(source, "scratchnet.train.loop", False)
        if name == "scratchnet.parallel" or name.startswith("scratchnet.parallel.")
    ]
    for number, text in enumerate(source.splitlines(), start=1):
        leaks += [f"line {number}: {word.group()}" for word in _DATA_PARALLEL_WORDS.finditer(text)]
    return leaks


def test_the_loop_meets_data_parallelism_only_through_its_interface():
    assert data_parallel_leaks(LOOP.read_text()) == []
    assert "from scratchnet.train.data_parallel import" in LOOP.read_text()


def test_the_interface_check_sees_a_branch_on_the_world():
    mutant = LOOP.read_text().replace(
        "    sharing = sharing or DataParallel()\n",
        "    sharing = sharing or DataParallel()\n    from scratchnet import parallel\n"
        "    if parallel.world().size > 1:\n        pass\n",
    )
    assert mutant != LOOP.read_text()
    leaks = data_parallel_leaks(mutant)
    assert any("imports scratchnet.parallel" in leak for leak in leaks)
    assert any(leak.endswith(": world") for leak in leaks)


# --- (c) the commands start ----------------------------------------------------------------------------
@pytest.mark.slow  # ten fresh interpreters: several seconds on a loaded machine
def test_every_python_m_entry_point_answers_help():
    """All at once (each is a fresh interpreter importing scratchnet): about as long as the slowest."""
    commands = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"scratchnet.{name}", "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ENTRY_POINTS
    }
    for name, process in commands.items():
        output, _ = process.communicate(timeout=120)
        # `pretrained` has no --help flag: it answers with its usage line and exit code 2, as before.
        assert "usage: python -m scratchnet." in output and "Traceback" not in output, (name, output)


# --- (d) the names the lessons, README, docs and tests use ---------------------------------------------
_DOTTED = re.compile(r"\bscratchnet(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(r"\bfrom\s+(scratchnet(?:\.\w+)*)\s+import\s+(?:\(([\w\s,]+)\)|([\w ,]+))")


def documents() -> dict[str, str]:
    """{file: text} of what users and tests read: notebook cell sources, README.md, docs/, tests/."""
    texts = {}
    for path in sorted((ROOT / "lessons").rglob("*")):
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            texts[str(path)] = "\n".join("".join(cell["source"]) for cell in cells)
        elif path.suffix in (".py", ".md"):
            texts[str(path)] = path.read_text()
    for path in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*")),
        *sorted((ROOT / "tests").rglob("*.py")),
    ]:
        # (this file names made-up modules on purpose, to show the check failing)
        if (
            path.is_file()
            and path.suffix in (".md", ".txt", ".py", ".log")
            and path != Path(__file__).resolve()
        ):
            texts[str(path)] = path.read_text()
    return texts


def used_names(text: str) -> set[str]:
    """The ``scratchnet.*`` dotted names of ``text``, including each name of ``from scratchnet.x import a, b``
    (a file name such as ``scratchnet.train.py`` is not a name)."""
    names = {n for n in _DOTTED.findall(text) if not n.endswith((".py", ".cu", ".npz", ".json"))}
    for module, in_parentheses, on_the_line in _FROM_IMPORT.findall(text):
        imported = (in_parentheses or on_the_line).replace("\n", ",").split(",")
        names |= {f"{module}.{n.split()[0]}" for n in imported if n.strip()}  # "train as T": train
    return names


def resolves(name: str) -> bool:
    """Whether ``name`` is a module, or an attribute (at any depth) of the longest module it starts with."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_every_scratchnet_name_in_lessons_readme_docs_and_tests_exists():
    used: dict[str, str] = {}
    for file, text in documents().items():
        for name in used_names(text):
            used.setdefault(name, file)
    assert len(used) > 50  # the scan sees the lessons' and tests' imports
    missing = {name: file for name, file in sorted(used.items()) if not resolves(name)}
    assert missing == {}


def test_the_name_check_sees_a_name_that_is_gone():
    names = used_names("from scratchnet.train import TrainConfig, train_loop\nscratchnet.kernel_bench.GEMM\n")
    assert sorted(names) == [
        "scratchnet.kernel_bench.GEMM",
        "scratchnet.train",
        "scratchnet.train.TrainConfig",
        "scratchnet.train.train_loop",
    ]
    assert [resolves(n) for n in sorted(names)] == [True, True, True, False]
    assert not resolves("scratchnet.no_such_module")
