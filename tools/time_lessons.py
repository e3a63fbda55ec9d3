"""Time each lesson as committed with one BLAS thread and with the BLAS library's default, alternating.

    python tools/record_run.py docs/benchmarks/lesson-times.txt -- python tools/time_lessons.py

For every lesson (or the notebooks named on the command line) it runs the notebook once with
``SCRATCHNET_BLAS_THREADS`` unset (the lessons then pin one thread) and once with ``=default`` (no pinning),
the two runs back to back so that both see about the same load, and prints one line per run with the load
average before it. The figures in lessons/README.md's "Threads" table come from its recorded output.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
SETTINGS = (None, "default")  # SCRATCHNET_BLAS_THREADS: unset (one thread), then no pinning
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def run_once(path: Path, setting: str | None, timeout_s: float) -> float:
    """Seconds to run the notebook at ``path`` to its end, in a fresh kernel, with ``setting``."""
    os.environ.pop("SCRATCHNET_BLAS_THREADS", None)
    if setting is not None:
        os.environ["SCRATCHNET_BLAS_THREADS"] = setting
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(LESSONS)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="*", help="lesson notebooks (default: every lessons/NN_*.ipynb)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per cell (default 900)")
    args = p.parse_args(argv)
    paths = [Path(n) for n in args.notebooks] or sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
    overridden = [name for name in BLAS_VARIABLES if name in os.environ]
    if overridden:  # they would cap the "default" runs too
        p.error(f"unset {', '.join(overridden)} first: the default runs must see the BLAS library's choice")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    print(f"{'lesson':34} {'SCRATCHNET_BLAS_THREADS':24} {'seconds':>8}  load average before (1, 5, 15 min)")
    for path in paths:
        for setting in SETTINGS:
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            seconds = run_once(path, setting, args.timeout)
            print(f"{path.name:34} {setting or 'unset':24} {seconds:8.1f}  {load}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
