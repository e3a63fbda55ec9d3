"""Build the course site: the lessons with their outputs and figures, the kernel exercises, the guides and
an API reference, as static HTML that needs nothing outside the machine it is served from.

    python tools/course_site.py                 # -> build/site/html/index.html
    python -m http.server -d build/site/html    # read it at http://localhost:8000

Needs the ``docs`` extra (``pip install -e ".[docs]"``). Sphinx reads a staging folder, build/site-src:
copies of README.md, docs/ and lessons/ (so their relative links hold) beside the generated pages (the home
page, a page per kernel exercise, a page per module of the API reference).

Each lesson is executed once per build, as committed (its checks say "not done yet": the site hands out no
solution). The lesson tests' as-committed run stores each executed notebook in build/lesson-cache, under
the SHA-256 of the committed file; the build executes only the lessons whose current text has no stored
copy. On the page, ``claim`` cells are removed, ``predict`` outputs and ``answer`` cells are collapsed
until clicked, and ``exercise``, ``predict`` and ``try`` cells are labelled (docs/site/_static/course.css).

Warnings: any warning from a guide, a lesson or a generated page fails the build. Warnings from the
docstrings (autodoc) are compared with docs/site/api-warnings.txt, a list that may only shrink: a new one
fails the build, and so does a fixed one still listed (remove its line, or build with
``--shrink-api-warnings``). CI builds with ``--stored-only``: a lesson the tests did not store is an error."""

from __future__ import annotations

import argparse
import hashlib
import os
import pkgutil
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
KERNEL_EXERCISES = LESSONS / "exercises" / "kernels"
CACHE = ROOT / "build" / "lesson-cache"
STAGE = ROOT / "build" / "site-src"
SITE = ROOT / "build" / "site"
HTML = SITE / "html"
CONF = ROOT / "docs" / "site"
API_WARNINGS = CONF / "api-warnings.txt"
LESSON_TIME_LIMIT_S = 180  # per cell, as in the lesson tests


def lesson_order() -> list[str]:
    """Notebook names, in the order of the table under '## The lessons, in order' in lessons/README.md."""
    text = (LESSONS / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## The lessons, in order", 1)[-1].split("\n## ", 1)[0]
    return re.findall(r"^\| *\[[^]]*\]\((\d\d_\w+\.ipynb)\)", section, flags=re.M)


# ---- the executed lessons, keyed by the text of the committed notebook ----


def cached_copy(source_text: str) -> Path:
    """Where the executed copy of the notebook whose committed text is ``source_text`` is stored."""
    return CACHE / f"{hashlib.sha256(source_text.encode('utf-8')).hexdigest()}.ipynb"


def store_executed(name: str, executed) -> Path:
    """Store ``executed``, lesson ``name`` run as committed, for the site build."""
    path = cached_copy(_lesson_text(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")  # a build reading the cache never sees half a notebook
    nbformat.write(executed, partial)
    partial.replace(path)
    return path


def execute_missing_lessons(stored_only: bool = False) -> list[str]:
    """Execute, as committed, every lesson with no stored copy of its current text; return their names.
    ``stored_only``: raise instead (CI, where the lesson tests have just stored every lesson)."""
    import nbclient

    missing = [name for name in lesson_order() if not cached_copy(_lesson_text(name)).is_file()]
    if missing and stored_only:
        raise SystemExit(
            f"no stored run of {missing} in {CACHE.relative_to(ROOT)} (the lesson tests store them)"
        )
    # One BLAS thread, as in the lesson tests; the kernels import this checkout's scratchnet.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for number, name in enumerate(missing, 1):
        print(
            f"executing {name} ({number} of {len(missing)}: no stored copy of its current text)", flush=True
        )
        notebook = nbformat.read(LESSONS / name, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=LESSON_TIME_LIMIT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(LESSONS)}},
        )
        client.execute()  # raises CellExecutionError, naming the cell, on any error
        store_executed(name, notebook)
    return missing


def _lesson_text(name: str) -> str:
    return (LESSONS / name).read_text(encoding="utf-8")


def _tags(cell) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def read_lesson(text: str):
    """myst-nb's reader for a lesson: its executed copy, with the cells marked for the page."""
    path = cached_copy(text)
    if not path.is_file():
        raise FileNotFoundError(
            f"no executed copy of this lesson's text ({path.name}): build with python tools/course_site.py"
        )
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = _tags(cell)
        if "claim" in tags:  # the lesson's self-checks: for the tests, not the reader
            tags.append("remove-cell")
        if "predict" in tags and cell.cell_type == "code":  # its output gives the answer away
            tags.append("hide-output")
        if "answer" in tags:  # a closed <details>: the reader predicts first, then opens it
            cell.source = (
                f'<details class="answer">\n<summary>Answer</summary>\n\n{cell.source}\n\n</details>'
            )
    return notebook


# ---- the staging folder: the repository's pages beside the generated ones ----


def public_modules() -> list[str]:
    """scratchnet and its modules, except private ones (a name starting with _) and __main__ files."""
    import scratchnet

    names = ["scratchnet"]
    for module in pkgutil.walk_packages(scratchnet.__path__, "scratchnet."):
        parts = module.name.split(".")
        if not any(part.startswith("_") for part in parts):
            names.append(module.name)
    return sorted(names)


def _api_pages() -> dict[str, str]:
    modules = public_modules()
    pages = {
        "api/index.md": "# API reference\n\nEvery public module of scratchnet, from its docstrings.\n\n"
        + "```{toctree}\n:maxdepth: 1\n\n"
        + "".join(f"{name}\n" for name in modules)
        + "```\n"
    }
    for name in modules:
        pages[f"api/{name}.rst"] = (
            f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n   :members:\n   :ignore-module-all:\n"
        )
    return pages


def _kernel_pages() -> dict[str, str]:
    pages = {}
    for stub in sorted(KERNEL_EXERCISES.glob("*.cu")):
        first = stub.read_text(encoding="utf-8").splitlines()[0]
        title = first.removeprefix("//").strip().rstrip(".")
        path = stub.relative_to(ROOT).as_posix()
        pages[f"kernel-exercises/{stub.stem}.md"] = f"""# {title}

The stub, `{path}`: write the bodies marked `// TODO`. The comments give the math, the shapes, the
thread mapping and the launch the checker uses.

```{{literalinclude}} /{path}
:language: cuda
```

Check it from the repository root, on the CUDA simulator (no GPU needed; `--hint` also prints the formula
and the thread mapping):

```bash
python -m scratchnet.gradcheck {path}
python -m scratchnet.kernel_exercises {path} --hint
```

[What the checker tells you](../lessons/exercises/kernels/README.md), and the other kernel exercises.
"""
    return pages


def _toctree(caption: str, entries: list[str]) -> str:
    return (
        f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n"
        + "".join(f"{e}\n" for e in entries)
        + "```\n"
    )


def _home_page(kernel_pages: list[str]) -> str:
    lessons = ["lessons/README", *(f"lessons/{Path(name).stem}" for name in lesson_order())]
    kernels = [
        "lessons/exercises/kernels/README",
        *(Path(page).with_suffix("").as_posix() for page in kernel_pages),
    ]
    guides = ["README", *(f"docs/{path.stem}" for path in sorted((ROOT / "docs").glob("*.md")))]
    return "\n".join(
        [
            "# scratchnet: convolutional networks from scratch\n",
            "A course in numbered lessons, from LeNet-5 (1998) to AlexNet (2012) and ResNet, with every "
            "forward and backward pass written by hand, then the CUDA kernels that run them. Each lesson is "
            "shown here executed, with its outputs and figures; the answers to its predict tasks stay "
            "collapsed until you open them, and its exercises are left for you (run the notebooks from the "
            "repository to do them).\n",
            _toctree("Lessons", lessons),
            _toctree("Kernel exercises", kernels),
            _toctree("Guides", guides),
            _toctree("Reference", ["api/index"]),
        ]
    )


FOLDER_LINK = re.compile(r"\]\(([^()\s#:]+/)\)")  # [text](benchmarks/): a link to a folder


def _folder_page(folder: Path) -> str:
    """A page listing a folder's files, which the site links to where a guide links to the folder."""
    files = sorted(path.name for path in folder.iterdir() if path.is_file() and path.name != "index.md")
    return f"---\norphan: true\n---\n\n# {folder.relative_to(STAGE).as_posix()}/\n\n" + "".join(
        f"* [{name}]({name})\n" for name in files
    )


def _link_folders(page: Path) -> None:
    """Point the page's links to a folder at a generated page that lists the folder (Sphinx has no folder
    pages)."""
    text = page.read_text(encoding="utf-8")
    folders = {m.group(1) for m in FOLDER_LINK.finditer(text) if (page.parent / m.group(1)).is_dir()}
    for link in folders:
        listing = page.parent / link / "index.md"
        listing.write_text(_folder_page(listing.parent), encoding="utf-8")
        text = text.replace(f"]({link})", f"]({link}index.md)")
    page.write_text(text, encoding="utf-8")


def stage_sources() -> None:
    """Build/site-src: copies of README.md, docs/ and lessons/ (links between them resolve as in the
    repository) and the generated pages."""
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    shutil.copy(ROOT / "README.md", STAGE)
    for folder in ("docs", "lessons"):
        shutil.copytree(
            ROOT / folder, STAGE / folder, ignore=shutil.ignore_patterns("site", ".ipynb_checkpoints")
        )
    for page in [STAGE / "README.md", *(STAGE / "docs").glob("*.md"), STAGE / "lessons" / "README.md"]:
        _link_folders(page)
    kernel_pages = _kernel_pages()
    pages = {"index.md": _home_page(list(kernel_pages)), **kernel_pages, **_api_pages()}
    for relative, text in pages.items():
        (STAGE / relative).parent.mkdir(parents=True, exist_ok=True)
        (STAGE / relative).write_text(text, encoding="utf-8")


# ---- the warnings: none from the pages, and the docstrings' only fewer ----

WARNING_START = re.compile(r"^(?:[^\n]*?: )?(?:WARNING|ERROR|CRITICAL): ", flags=re.M)


def split_warnings(log: str) -> tuple[list[str], list[str]]:
    """(warnings from the docstrings, every other warning), each one text, without the checkout's path.

    A docstring warning is named by its module file and object, without a line number (which moves with
    every edit above it): ``scratchnet/layers/conv.py:docstring of scratchnet.layers.conv.Conv2d: WARNING:
    ...``."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)  # Sphinx's colours
    starts = [m.start() for m in WARNING_START.finditer(log)] + [len(log)]
    api, pages = [], []
    for begin, end in zip(starts, starts[1:], strict=False):
        text = log[begin:end].strip().replace(f"{STAGE}/", "").replace(f"{ROOT}/", "")
        if ":docstring of " in text.split(" WARNING: ", 1)[0]:
            api.append(re.sub(r"^(.*?:docstring of \S+?):\d+:", r"\1:", text))
        else:
            pages.append(text)
    return sorted(set(api)), pages


def compare_api_warnings(found: list[str], listed: list[str]) -> list[str]:
    """What is wrong with the docstring warnings against the committed list (nothing: an empty list)."""
    problems = [f"new docstring warning (fix the docstring): {w}" for w in found if w not in listed]
    problems += [
        f"fixed, still in {API_WARNINGS.relative_to(ROOT)} (remove the line; --shrink-api-warnings does): {w}"
        for w in listed
        if w not in found
    ]
    return problems


def read_api_warnings() -> list[str]:
    lines = API_WARNINGS.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def shrink_api_warnings(found: list[str]) -> None:
    """Rewrite the list as ``found``, which must hold no warning the list lacks (the list only shrinks)."""
    text = API_WARNINGS.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    API_WARNINGS.write_text("\n".join([*header, *found]) + "\n", encoding="utf-8")


def build(jobs: int, shrink: bool = False) -> int:
    """Build the site from scratch: a fresh environment reports every page's warnings. ``shrink``: drop the
    fixed docstring warnings from the list (never add one)."""
    import io

    from sphinx.application import Sphinx

    stage_sources()
    shutil.rmtree(SITE, ignore_errors=True)  # no page left from an earlier build
    warnings = io.StringIO()
    app = Sphinx(
        STAGE,
        CONF,
        HTML,
        SITE / "doctrees",
        "html",
        status=None,
        warning=warnings,
        freshenv=True,
        parallel=jobs,
    )
    app.build()
    log = warnings.getvalue()
    (SITE / "warnings.txt").write_text(log, encoding="utf-8")
    api, pages = split_warnings(log)
    listed = read_api_warnings()
    if shrink and set(api) <= set(listed):
        shrink_api_warnings(api)
        listed = api
    problems = [f"warning from a page: {w}" for w in pages] + compare_api_warnings(api, listed)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems or app.statuscode:
        print(f"the site build failed: {len(problems)} problem(s) above", file=sys.stderr)
        return 1
    print(f"built {HTML.relative_to(ROOT)}/index.html ({len(api)} docstring warnings, as listed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1, help="Sphinx's parallel processes (its -j)")
    parser.add_argument(
        "--stored-only",
        action="store_true",
        help="fail instead of executing a lesson that the lesson tests have not stored (CI runs them first)",
    )
    parser.add_argument(
        "--shrink-api-warnings",
        action="store_true",
        help=f"remove the docstring warnings that are gone from {API_WARNINGS.relative_to(ROOT)}",
    )
    args = parser.parse_args(argv)
    execute_missing_lessons(args.stored_only)
    return build(args.jobs, shrink=args.shrink_api_warnings)


if __name__ == "__main__":
    sys.exit(main())
