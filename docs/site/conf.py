"""Sphinx configuration of the course site; tools/course_site.py runs the build (see its docstring)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]  # scratchnet for autodoc, course_site for the lesson reader

project = "scratchnet"
author = "the scratchnet authors"
copyright = "scratchnet authors, MIT licence"

extensions = [
    "myst_nb",  # Markdown (MyST) pages and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx-mathjax-offline",  # MathJax 3 and its fonts copied into _static: no CDN
]

# Only these files are pages; everything else in the staging folder (the lesson exercises' Python files,
# the benchmark outputs) is there to be included or linked.
include_patterns = [
    "index.md",
    "README.md",
    "docs/*.md",
    "lessons/README.md",
    "lessons/*.ipynb",
    "lessons/exercises/kernels/README.md",
    "kernel-exercises/*.md",
    "api/*",
    "docs/*/index.md",  # the generated lists of a folder's files (docs/benchmarks/)
]

# The lessons: executed once per build, before Sphinx runs, and read from the cache with their cells marked.
nb_execution_mode = "off"
nb_custom_formats = {".ipynb": ["course_site.read_lesson", {}, False]}
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
highlight_language = "none"  # a guide's unmarked ``` block is a shell command or output, not Python
myst_heading_anchors = 3  # the guides link to their own sections (#what-has-and-has-not-run-on-a-real-gpu)

# The GPU backend imports CuPy, which a CPU machine has not got; the layer-test contract imports pytest,
# which only the dev extra brings.
autodoc_mock_imports = ["cupy", "pytest"]
autodoc_member_order = "bysource"

html_theme = "sphinx_book_theme"
html_title = "scratchnet"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "use_fullscreen_button": False}
html_show_sourcelink = False
