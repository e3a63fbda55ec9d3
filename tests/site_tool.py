"""tools/course_site.py (the course site's build), loaded for the tests: tools/ is not a package."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "course_site", Path(__file__).resolve().parent.parent / "tools" / "course_site.py"
)
course_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(course_site)
