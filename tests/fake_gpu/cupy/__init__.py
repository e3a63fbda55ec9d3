"""``import cupy`` with ``tests/fake_gpu`` on PYTHONPATH: the strict fake of ``tests/fake_cupy.py``, as the
environment describes it (``fake_cupy.ENVIRONMENT``), so that whole processes (the command lines, MPI ranks,
``pytest -m gpu``) run their GPU code paths without a GPU."""

import importlib.util
import sys
from pathlib import Path

if "fake_cupy" not in sys.modules:  # pytest may have imported it already: one module, one ndarray class
    _spec = importlib.util.spec_from_file_location("fake_cupy", Path(__file__).parents[2] / "fake_cupy.py")
    sys.modules["fake_cupy"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fake_cupy"])
sys.modules[__name__] = sys.modules["fake_cupy"].from_environment()
