"""The docs stay true: README.md and the guides in docs/ are checked against the code they describe.

* the command-line reference (docs/command-line.md) is what tools/cli_reference.py generates from the parsers;
* the model table is the model registry, the layout is the tree;
* every quoted figure carries ``<!-- fig: docs/benchmarks/FILE.txt /regex/ -->`` and equals what the regex
  finds in that recorded output; a block marked ``<!-- output: FILE -->`` holds lines of FILE; a block marked
  ``<!-- from: FILE -->`` is a piece of FILE, in its order;
* every ``python -m scratchnet...`` command in README, the guides and lessons/README.md names a module that
  exists, with options its parser accepts (and choices it offers); each is either run here, with the
  substitutions listed in RUN, or listed in NOT_RUN with the reason;
* every ``pip install`` hint in the docs, the lessons and the package installs this project or a named
  third-party package, never another project that happens to share a name.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import tomllib

from scratchnet import models

ROOT = Path(__file__).resolve().parent.parent
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCE = ROOT / "docs" / "command-line.md"  # generated from the parsers
COMMAND_DOCS = [*(doc for doc in GUIDES if doc != REFERENCE), ROOT / "lessons" / "README.md"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DISTRIBUTION = PYPROJECT["project"]["name"]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli_reference = _load_tool("cli_reference")


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """(the line before the block, its language, its body) for each ``` block of a Markdown text."""
    pattern = re.compile(r"(?:^([^\n]*)\n)?^ *```(\w*)\n(.*?)^ *```$", re.MULTILINE | re.DOTALL)
    return [(m.group(1) or "", m.group(2), m.group(3)) for m in pattern.finditer(text)]


def block_after(text: str, marker: str) -> str:
    """The body of the fenced block right after the line ``marker``."""
    found = [body for before, _, body in fenced_blocks(text) if before.strip() == marker]
    assert len(found) == 1, f"expected one block after {marker}, found {len(found)}"
    return found[0]


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return re.sub(r"^ *```.*?^ *```$", "", text, flags=re.MULTILINE | re.DOTALL)


# --- the command-line reference, the model table, the layout ------------------------------------------------
def test_the_command_line_reference_is_generated_from_the_parsers():
    written = REFERENCE.read_text()
    assert written == cli_reference.render(), (
        "docs/command-line.md differs from the parsers: run python tools/cli_reference.py --write"
    )


def model_table() -> list[list[str]]:
    text = (ROOT / "docs" / "training.md").read_text()
    table = text.split("<!-- models -->\n", 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return [[row[0].strip("`"), *row[1:]] for row in rows]


def test_the_model_table_lists_the_registry():
    assert [row[0] for row in model_table()] == list(models.MODELS)


@pytest.mark.slow
def test_the_model_table_gives_each_models_input_and_parameters():
    for name, _, input_shape, parameters in model_table():
        model = models.build(name)
        count = sum(p.size for p in model.params.values())
        assert (input_shape, parameters) == (", ".join(map(str, model.input_shape)), f"{count:,}"), name


def layout_paths(block: str) -> list[str]:
    """The paths of a layout block: a path, then its description; a folder's entries are indented under
    it; a line indented to the description column continues the description above."""
    lines = [line for line in block.splitlines() if line.strip()]
    described = next(m for line in lines if (m := re.match(r" *\S+ {2,}(?=\S)", line)))
    description_column = described.end()
    paths, folders = [], []  # folders: (indent, path) of the open folders
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent >= description_column:
            continue
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = (folders[-1][1] if folders else "") + line.split()[0]
        paths.append(path)
        if path.endswith("/"):
            folders.append((indent, path))
    return paths


def test_layout_paths_nest_and_skip_continued_descriptions():
    block = (
        "a/          x\n  b.py      y\n            more of y\n  c/        z\n    d.py    w\ne/          v\n"
    )
    assert layout_paths(block) == ["a/", "a/b.py", "a/c/", "a/c/d.py", "e/"]


def test_the_layout_matches_the_tree():
    listed = layout_paths(block_after((ROOT / "docs" / "contributing.md").read_text(), "<!-- layout -->"))
    missing = [
        path for path in listed if not (ROOT / path).exists() or path.endswith("/") != (ROOT / path).is_dir()
    ]
    assert not missing, f"docs/contributing.md lists paths that are not in the tree: {missing}"
    package = ROOT / "scratchnet"
    modules = {f"scratchnet/{p.name}" for p in package.glob("*.py") if p.name != "__init__.py"}
    subpackages = {f"scratchnet/{p.parent.name}/" for p in package.glob("*/__init__.py")}
    unlisted = sorted((modules | subpackages) - set(listed))
    assert not unlisted, f"docs/contributing.md's layout does not list {unlisted}"


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=_doc_id)
def test_every_path_the_docs_name_exists(doc):
    spans = re.findall(r"`((?:scratchnet|kernels|tests|tools|lessons|docs)/[\w./-]*)`", doc.read_text())
    missing = sorted({span for span in spans if not (ROOT / span).exists()})
    assert not missing, f"{_doc_id(doc)} names paths that do not exist: {missing}"


# --- figures and outputs -----------------------------------------------------------------------------------
FIGURE = re.compile(r"([\w.,]*\w)(?:\*\*)?<!-- fig: (\S+) /(.+?)/ -->")
HEADER = ("$ ", "date: ", "machine: ", "BLAS: ", "load average before")
# A number with a unit of time or speed, an accuracy, a speed ratio or a share, outside a marker: a figure.
UNMARKED_FIGURE = re.compile(
    r"\d[\d,.]*(?:\*\*)? ?(?:s|ms|µs|ns|img/s|images/s)\b|accuracy (?:of )?0\.\d+|\b\d+\.\d+x\b|\d%"
)


def recorded_output(name: str) -> str:
    path = ROOT / name
    assert path.is_file(), f"no recorded output {name}"
    text = path.read_text()
    missing = [field for field in HEADER if not re.search(rf"^{re.escape(field)}", text, re.MULTILINE)]
    assert not missing, f"{name} lacks the header lines {missing} (write it with tools/record_run.py)"
    return text


@pytest.mark.parametrize("doc", GUIDES, ids=_doc_id)
def test_every_quoted_figure_is_the_one_in_its_recorded_output(doc):
    for m in FIGURE.finditer(doc.read_text()):
        quoted, name, pattern = m.groups()
        found = re.search(pattern, recorded_output(name), re.MULTILINE)
        assert found, f"{_doc_id(doc)}: /{pattern}/ finds nothing in {name}"
        assert quoted == found.group(found.re.groups and 1), (
            f"{_doc_id(doc)} quotes {quoted}; {name} says {found}"
        )


@pytest.mark.parametrize("doc", GUIDES, ids=_doc_id)
def test_no_figure_is_quoted_without_its_marker(doc):
    unmarked = [
        (line, m.group(0))
        for line in prose(doc.read_text()).splitlines()
        for m in UNMARKED_FIGURE.finditer(FIGURE.sub("", line))
    ]
    assert not unmarked, f"{_doc_id(doc)}: figures without a <!-- fig: FILE /regex/ --> marker: {unmarked}"


def test_the_figure_detector_sees_figures():
    assert UNMARKED_FIGURE.search("trains at 323 images/s") and UNMARKED_FIGURE.search("in 4.1 s")
    assert UNMARKED_FIGURE.search("test accuracy 0.8350") and UNMARKED_FIGURE.search("**1.48x** PyTorch")
    assert not UNMARKED_FIGURE.search(FIGURE.sub("", "in 33.1<!-- fig: f.txt /x/ --> s"))
    assert not UNMARKED_FIGURE.search("two OS threads, 2 cores, 28x28 images, lessons 9 and 10")


@pytest.mark.parametrize("doc", GUIDES, ids=_doc_id)
def test_sample_outputs_come_from_their_recorded_output(doc):
    for before, _, body in fenced_blocks(doc.read_text()):
        if m := re.fullmatch(r"<!-- output: (\S+) -->", before.strip()):
            recorded = set(recorded_output(m.group(1)).splitlines())
            invented = [line for line in body.splitlines() if line != "..." and line not in recorded]
            assert not invented, f"{_doc_id(doc)}: lines not in {m.group(1)}: {invented}"


def in_order(piece: list[str], lines: list[str]) -> bool:
    remaining = iter(lines)
    return all(any(line == other for other in remaining) for line in piece)


@pytest.mark.parametrize("doc", GUIDES, ids=_doc_id)
def test_code_quoted_from_a_file_is_in_that_file(doc):
    for before, _, body in fenced_blocks(doc.read_text()):
        if m := re.fullmatch(r"<!-- from: (\S+) -->", before.strip()):
            source = (ROOT / m.group(1)).read_text().splitlines()
            piece = [line for line in body.splitlines() if line.strip()]
            assert in_order(piece, source), f"{_doc_id(doc)}: a block is not a piece of {m.group(1)}:\n{body}"


# --- commands ----------------------------------------------------------------------------------------------
COMMAND = re.compile(r"python -m (?:scratchnet|pytest)\b[^`\n#|]*(?:\\\|[^`\n#|]*)*")
SUBCOMMANDS = {sub[0] for module, sub in cli_reference.COMMANDS if sub} | {"kernels"}

# Documented commands run by test_the_documented_runs_work, with what is added to keep them short.
SHORT = ["--limit-train", "300", "--limit-test", "100", "--epochs", "1", "--no-plots", "--no-progress"]
RUN = {
    "python -m scratchnet.train --out runs/lenet5": SHORT,
    "python -m scratchnet.evaluate --checkpoint runs/lenet5": ["--limit-test", "100"],
    "python -m scratchnet.predict scratchnet/data/samples/ankle_boot.png --checkpoint runs/lenet5": [],
    "python -m scratchnet.train --classes 0-4 --out runs/first-five": SHORT,
    "python -m scratchnet.train --classes 5-9 --pretrained runs/first-five --freeze --epochs 3"
    " --out runs/last-five": SHORT,
}
# Documented commands checked only statically (module, options, choices), by pattern, with the reason.
NOT_RUN = [
    (
        r"--dataset (fashion-mnist|mnist|cifar10|folder)\b",
        "needs a full dataset: a download or the system's copy",
    ),
    (
        r"--device (gpu|sim|cpu\\?\|)",
        "gpu needs a GPU; training on sim takes minutes (tests/test_train.py runs it small)",
    ),
    (
        r"--(model|resume|processes|workers|early-stopping|pretrained PATH)\b",
        "a long run or a placeholder; tests/test_train.py, test_parallel.py and test_transfer.py run these"
        " options small",
    ),
    (
        r"^python -m scratchnet\.train( \.\.\.| --no-progress)?$",
        "10 epochs; the same run with --out runs/lenet5 runs here, shortened",
    ),
    (
        r"^python -m scratchnet\.(bench|kernel_bench)\b",
        "benchmarks take minutes; tests/test_bench.py and test_kernel_bench.py run them small",
    ),
    (
        r"^python -m scratchnet\.gpucheck\b",
        "needs a GPU, or takes minutes on sim (CI runs it; tests/test_gpucheck.py)",
    ),
    (
        r"^python -m scratchnet\.exercises\.mutants\b",
        "checks hundreds of mutants (minutes; the kernels' take longer); tests/test_mutants.py runs a sample",
    ),
    (
        r"^python -m scratchnet\.gradcheck\b",
        "checks a learner's exercise; tests/test_exercises.py and test_kernel_exercises.py run the checker",
    ),
    (
        r"^python -m scratchnet\.pretrained\b",
        "needs torchvision's weights file and PyTorch (tests/test_pretrained.py)",
    ),
    (
        r"^python -m scratchnet\.(evaluate|predict) .*(RUN|IMAGE|shoe)",
        "a placeholder run folder or image; the concrete example runs here",
    ),
    (r"^python -m pytest\b", "the test suite itself"),
]


def documented_commands() -> list[tuple[str, str]]:
    """(doc, command) for each ``python -m scratchnet...`` or ``python -m pytest`` command in the docs."""
    found = []
    for doc in COMMAND_DOCS:
        text = doc.read_text()
        for _, language, body in fenced_blocks(text):
            if language != "python":
                found += [(_doc_id(doc), m.group(0)) for m in COMMAND.finditer(body)]
        for span in re.findall(r"`([^`\n]+)`", prose(text)):
            found += [(_doc_id(doc), m.group(0)) for m in COMMAND.finditer(span)]
    return sorted({(doc, " ".join(command.replace("\\|", "|").split())) for doc, command in found})


@functools.cache
def parser_for(module: str, subcommand: tuple[str, ...]) -> argparse.ArgumentParser | None:
    return cli_reference.parser_of(module, subcommand)


def check_options(command: str, parser: argparse.ArgumentParser) -> list[str]:
    """What is wrong with the options of ``command`` for ``parser``: unknown flags, values not among the
    choices (a placeholder in capitals, ``...`` or a ``a|b`` list of choices is fine)."""
    problems, words = [], [w.strip("[]") for w in shlex.split(command)]
    for flag, value in zip(words, [*words[1:], ""], strict=True):
        if not flag.startswith("--"):
            continue
        action = parser._option_string_actions.get(flag.split("=")[0])
        if action is None:
            problems.append(f"unknown option {flag}")
        elif action.choices and action.nargs != 0 and not (value.isupper() or value in ("", "...")):
            problems += [f"{flag} {v}: not a choice" for v in value.split("|") if v not in action.choices]
    return problems


def test_the_option_check_finds_mistakes():
    parser = parser_for("scratchnet.train", ())
    assert check_options("python -m scratchnet.train --device cpu|sim --model NAME", parser) == []
    assert check_options("python -m scratchnet.train --device tpu --epoch 3", parser) == [
        "--device tpu: not a choice",
        "unknown option --epoch",
    ]


@pytest.mark.parametrize("doc, command", documented_commands())
def test_every_documented_command_is_accepted_and_run_or_listed(doc, command):
    words = shlex.split(command)
    module = words[2]
    if module == "pytest":
        paths = [w.split("::")[0] for w in words if w.startswith("tests/")]
        assert all((ROOT / path).exists() for path in paths), f"{doc}: {command}: no such test file"
        markers = {line.split(":")[0] for line in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
        for flag, expression in zip(words[3:], words[4:], strict=False):
            if flag == "-m":
                used = set(re.findall(r"\w+", expression)) - {"and", "or", "not"}
                assert used <= markers, f"{doc}: {command}: unknown markers {used - markers}"
    else:
        assert importlib.util.find_spec(module), f"{doc}: {command}: no module {module}"
        subcommand = tuple(words[3:4]) if words[3:4] and words[3] in SUBCOMMANDS else ()
        parser = parser_for(module, subcommand)
        if parser is None:
            assert not [w for w in words[3:] if w.startswith("-")], (
                f"{doc}: {command}: {module} takes no options"
            )
        else:
            assert not check_options(command, parser), f"{doc}: {command}: {check_options(command, parser)}"
    reasons = [reason for pattern, reason in NOT_RUN if re.search(pattern, command)]
    assert command in RUN or reasons, f"{doc}: add `{command}` to RUN (with substitutions) or to NOT_RUN"


def test_the_listed_runs_are_still_documented():
    documented = {command for _, command in documented_commands()}
    assert set(RUN) <= documented, f"RUN has commands no doc shows any more: {set(RUN) - documented}"


def run_command(command: str, extra: list[str], runs: Path) -> tuple[int, str]:
    """Run a documented command in this process, with ``runs/`` moved under ``runs`` and the sample image
    found in this checkout."""
    words = [
        w.replace("runs/", f"{runs}/").replace("scratchnet/data/", f"{ROOT}/scratchnet/data/")
        for w in shlex.split(command)
    ]
    main = importlib.import_module(words[2]).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*words[3:], *extra])
    return status, out.getvalue()


@pytest.mark.slow
def test_the_documented_runs_work(tmp_path):
    outputs = {}
    for command, extra in RUN.items():
        status, outputs[command] = run_command(command, extra, tmp_path / "runs")
        assert status == 0, f"{command} {extra}: exit status {status}\n{outputs[command]}"
    assert "final test_accuracy=" in outputs["python -m scratchnet.train --out runs/lenet5"]
    prediction = outputs[next(c for c in RUN if "scratchnet.predict" in c)].splitlines()
    assert re.fullmatch(r"model: \S+/runs/lenet5/last\.npz \(lenet5 trained on .+\)", prediction[0]), (
        prediction
    )
    assert prediction[1].endswith("ankle_boot.png") and len(prediction) == 7  # the image, its top 5
    assert all(re.fullmatch(r" +[01]\.\d{4}  \S.*", line) for line in prediction[2:]), prediction


PYTHON_NOT_RUN = {
    "try:": "a fragment: a loaded module and its arrays come before it (tests/test_sim_checks.py)",
}


@pytest.mark.slow
@pytest.mark.parametrize("doc", GUIDES, ids=_doc_id)
def test_the_python_examples_run(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes runs/ writes them here
    for before, language, body in fenced_blocks(doc.read_text()):
        first_line = body.splitlines()[0]
        if language != "python" or before.startswith("<!-- from:") or first_line in PYTHON_NOT_RUN:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(body, f"{_doc_id(doc)} example", "exec"), {})


# --- install hints -----------------------------------------------------------------------------------------
THIRD_PARTY = {
    "pip": "pip itself (CI upgrades it)",
    "torch": "PyTorch, the reference in the comparison tests",
    "threadpoolctl": "to see BLAS threads",
    "jupyterlab": "a notebook front end",
    "nbconvert": "jupyter nbconvert",
    "nvidia-cuda-nvrtc": "NVRTC; unsuffixed from CUDA 13 on, so the hint must pin the major",
    "nvidia-nccl-cu12": "NCCL for CUDA 12",
    "nvidia-nccl-cu13": "NCCL for CUDA 13",
    "cupy-cuda12x": "CuPy for CUDA 12",
    "cupy-cuda13x": "CuPy for CUDA 13",
}
TOKEN = re.compile(r"\s+(-[-\w]+|([\"']?)([^\s\"'`()]+)\2)")
REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[\w,-]+\])?([<>=!~][^\s]*)?")


def wrong_install_hints(text: str) -> list[str]:
    """The requirements after each ``pip install`` in ``text`` that would not install this project or a
    known third-party package (pinned to a CUDA major where the name does not carry one)."""
    wrong = []
    for start in re.finditer(r"pip install", text):
        position, editable, first = start.end(), False, True
        while m := TOKEN.match(text, position):
            position, word = m.end(), m.group(3) or m.group(1)
            if word.startswith("-"):
                editable = word in ("-e", "--editable")
                continue
            if editable or word.startswith("."):  # a local path: this checkout
                editable, first = False, False
                continue
            requirement = REQUIREMENT.fullmatch(word)
            bare = requirement and not m.group(2) and requirement.group(0) == requirement.group(1)
            if requirement is None or (bare and not first and word not in THIRD_PARTY):
                break  # prose after the hint
            name, _, version = requirement.groups()
            unpinned_cuda = (
                name.startswith("nvidia-cuda-") and not re.search(r"-cu\d+$", name) and not version
            )
            if (name != DISTRIBUTION and name not in THIRD_PARTY) or unpinned_cuda:
                wrong.append(word)
            first = False
    return wrong


def test_the_hint_check_finds_another_project():
    assert wrong_install_hints("pip install 'scratchnet[gpu]' (CuPy)") == ["scratchnet[gpu]"]
    assert wrong_install_hints("`pip install scratchnet`") == ["scratchnet"]
    assert wrong_install_hints('pip install "nvidia-cuda-nvrtc"') == ["nvidia-cuda-nvrtc"]
    assert wrong_install_hints(f'pip install -q -e ".[dev]" && pip install "{DISTRIBUTION}[mpi]" torch') == []
    assert wrong_install_hints('pip install "nvidia-cuda-nvrtc==13.*" if you do not have it') == []
    assert wrong_install_hints("pip install threadpoolctl to see them") == []


def hint_sources() -> list[Path]:
    lessons = sorted((ROOT / "lessons").glob("*.ipynb")) + sorted((ROOT / "lessons").rglob("*.md"))
    return [*GUIDES, *lessons, *sorted((ROOT / "scratchnet").rglob("*.py")), ROOT / ".ci" / "run"]


@pytest.mark.parametrize("source", hint_sources(), ids=_doc_id)
def test_install_hints_install_this_project_or_a_named_package(source):
    text = source.read_text()
    if source.suffix == ".ipynb":
        text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    assert not wrong_install_hints(text), f"{_doc_id(source)}: pip install of {wrong_install_hints(text)}"


def test_the_project_names_itself_by_its_distribution_name():
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert f"{DISTRIBUTION}[mpi]" in dev
    wheel = DISTRIBUTION.replace("-", "_")
    assert f"dist/{wheel}-*.whl" in (ROOT / ".ci" / "run").read_text()
