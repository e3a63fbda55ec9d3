"""One notation: the legend in ``scratchnet.layers``'s docstring is the one, the guide quotes it verbatim,
and the kernels name their element count ``count`` as it says."""

from __future__ import annotations

import re
from pathlib import Path

import scratchnet.layers

ROOT = Path(__file__).resolve().parent.parent
# `long long n_out` as a kernel parameter: the other names an element count has gone by.
OTHER_COUNT_NAMES = re.compile(r"[(,]\s*long long (n|n_in|n_out|n_elements|size|numel)\s*[,)]")


def _legend_block(text: str) -> str:
    """The indented (docstring) or fenced (Markdown) block that starts with the "N  batch size" row."""
    rows = re.search(r"^[ \t]*N +batch size.*?(?=\n\s*\n|\n\s*```)", text, re.S | re.M)
    assert rows, "no notation legend (a block starting with the 'N  batch size' row)"
    return "\n".join(line.strip() for line in rows[0].splitlines())


def test_the_guide_quotes_the_legend_verbatim():
    legend = _legend_block(scratchnet.layers.__doc__)
    guides = [
        p
        for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
        if "## Notation" in p.read_text()
    ]
    assert guides, "no guide has a '## Notation' section"
    for guide in guides:
        assert _legend_block(guide.read_text().split("## Notation", 1)[1]) == legend, guide.name


def test_kernels_name_their_element_count_count():
    for path in sorted((ROOT / "kernels").rglob("*.cu")):
        found = OTHER_COUNT_NAMES.findall(path.read_text())
        assert not found, f"{path.name}: an element count named {found} (the notation says count)"
