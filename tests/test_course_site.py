"""The course site's build (tools/course_site.py) without Sphinx or a browser: how a lesson's cells are
marked for its page, where the executed lessons are stored, and how the build sorts its warnings.
tests/test_site.py reads the built site in a browser."""

from __future__ import annotations

import nbformat
import pytest
from site_tool import course_site


def _lesson():
    cells = [
        nbformat.v4.new_code_cell(
            "fc = Linear(784, 10)\nprint(fc.num_params())", metadata={"tags": ["predict"]}
        ),
        nbformat.v4.new_markdown_cell("**Answer.** 7850", metadata={"tags": ["answer"]}),
        nbformat.v4.new_code_cell(
            "def f(x):\n    raise NotImplementedError", metadata={"tags": ["exercise"]}
        ),
        nbformat.v4.new_code_cell("claim('a', True)", metadata={"tags": ["claim"]}),
        nbformat.v4.new_markdown_cell("Plain prose."),
    ]
    return nbformat.v4.new_notebook(cells=cells)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(course_site, "CACHE", tmp_path)
    return tmp_path


def test_a_lesson_page_hides_claims_and_collapses_predictions_and_answers(cache):
    text = nbformat.writes(_lesson())
    nbformat.write(_lesson(), course_site.cached_copy(text))
    predict, answer, exercise, claim, prose = course_site.read_lesson(text).cells
    assert "hide-output" in predict.metadata.tags and "remove-cell" in claim.metadata.tags
    assert answer.source.startswith('<details class="answer">\n<summary>Answer</summary>')
    assert "**Answer.** 7850" in answer.source and answer.source.endswith("</details>")
    assert exercise.metadata.tags == ["exercise"] and prose.source == "Plain prose."


def test_the_stored_copy_follows_the_committed_text(cache):
    text = nbformat.writes(_lesson())
    assert course_site.cached_copy(text) != course_site.cached_copy(text.replace("7850", "7840"))
    with pytest.raises(FileNotFoundError, match="no executed copy of this lesson's text"):
        course_site.read_lesson(text)


def test_docstring_warnings_are_told_apart_and_lose_their_line_numbers():
    root = course_site.ROOT
    log = (
        f"{root}/scratchnet/viz.py:docstring of scratchnet.viz.saliency_maps:1: ERROR: Undefined "
        'substitution referenced: "x". [docutils]\n'
        f"{course_site.STAGE}/docs/gpu.md:12: WARNING: Unknown source document 'docs/x' [myst.xref_missing]\n"
        "\x1b[91mWARNING: a warning without a place\x1b[39;49;00m\n"
    )
    api, pages = course_site.split_warnings(log)
    assert api == [
        "scratchnet/viz.py:docstring of scratchnet.viz.saliency_maps: "
        'ERROR: Undefined substitution referenced: "x". [docutils]'
    ]
    assert pages == [
        "docs/gpu.md:12: WARNING: Unknown source document 'docs/x' [myst.xref_missing]",
        "WARNING: a warning without a place",
    ]


def test_the_docstring_warnings_list_may_only_shrink_and_must_follow_the_fixes():
    listed = ["old: WARNING: a", "old: WARNING: b"]
    assert course_site.compare_api_warnings(["old: WARNING: a", "old: WARNING: b"], listed) == []
    new, fixed = course_site.compare_api_warnings(["old: WARNING: a", "new: WARNING: c"], listed)
    assert new.startswith("new docstring warning") and new.endswith("new: WARNING: c")
    assert fixed.startswith("fixed, still in docs/site/api-warnings.txt") and fixed.endswith(
        "old: WARNING: b"
    )


def test_the_listed_docstring_warnings_are_sorted_and_unique():
    listed = course_site.read_api_warnings()
    assert listed == sorted(set(listed))


def test_the_home_page_lists_the_lessons_in_order_and_every_kernel_exercise():
    kernel_pages = course_site._kernel_pages()
    assert len(kernel_pages) == len(list(course_site.KERNEL_EXERCISES.glob("*.cu")))
    home = course_site._home_page(list(kernel_pages))
    lessons = [line for line in home.splitlines() if line.startswith("lessons/") and line[8:10].isdigit()]
    assert lessons == [f"lessons/{name.removesuffix('.ipynb')}" for name in course_site.lesson_order()]
    assert all(page.removesuffix(".md") in home for page in kernel_pages)


def test_shrinking_the_list_keeps_its_header_and_drops_the_fixed(tmp_path, monkeypatch):
    listed = tmp_path / "api-warnings.txt"
    listed.write_text("# only shrinks\nold: WARNING: a\nold: WARNING: b\n", encoding="utf-8")
    monkeypatch.setattr(course_site, "API_WARNINGS", listed)
    course_site.shrink_api_warnings(["old: WARNING: b"])
    assert listed.read_text(encoding="utf-8") == "# only shrinks\nold: WARNING: b\n"
    assert course_site.read_api_warnings() == ["old: WARNING: b"]
