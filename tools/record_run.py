"""Run a command and save its output under a header that says where and when it ran.

    python tools/record_run.py docs/benchmarks/quickstart-train.txt -- python -m scratchnet.train

Every figure the docs quote comes from such a file (tests/test_docs.py checks them). The header holds the
command, the date, the machine, its load average before and after, and the BLAS threads NumPy uses,
because all of these change the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def blas_threads() -> str:
    """NumPy's BLAS and its thread count, as threadpoolctl reports them (in a fresh interpreter, which sees
    the same environment variables as the recorded command)."""
    probe = (
        "import numpy, threadpoolctl\n"
        "for p in threadpoolctl.threadpool_info():\n"
        "    if p['user_api'] == 'blas': print(p['internal_api'], p['num_threads'], 'threads')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    found = done.stdout.strip().replace("\n", "; ") if done.returncode == 0 else "unknown (no threadpoolctl)"
    settings = " ".join(f"{name}={os.environ[name]}" for name in BLAS_VARIABLES if name in os.environ)
    return f"{found}; {settings or 'no thread variables set'}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("output", type=Path, help="the file to write")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (put it after --)")
    header = [
        f"$ {shlex.join(command)}",
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.machine()} {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}",
        f"BLAS: {blas_threads()}",
        f"load average before (1, 5, 15 min): {load_average()}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    footer = [
        f"exit status: {done.returncode}; wall time {time.perf_counter() - start:.1f} s",
        f"load average after (1, 5, 15 min): {load_average()}",
    ]
    args.output.write_text("\n".join(header) + "\n\n" + done.stdout + "\n" + "\n".join(footer) + "\n")
    print(args.output.read_text())
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
