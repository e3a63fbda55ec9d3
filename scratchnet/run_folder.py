"""Claiming a run folder: one rule for every run, and a lock held for the run's life.

A run (new or resumed) claims its folder before writing anything into it::

    mkdir (if missing)  ->  flock(folder/.lock, exclusive, non-blocking)  ->  check what the folder holds

The lock decides between runs started together: ``flock`` either takes the lock or fails, atomically, so
of two runs given the same ``--out`` exactly one goes on; the other is refused, whether the folder was
named by the user or made by :func:`scratchnet.train.new_run_dir`. The operating system releases the lock
when the run's process ends in any way (kill -9 included), so a lock is never left behind; the lock file
itself is removed when the run releases the folder.

With the lock held, a folder may be used when it is empty (the lock file aside), when ``overwrite`` is
given, or when the run resumes from this folder's own ``last.npz``. Resuming from another checkpoint in
the folder (``best.npz``, a kept ``epochN.npz``) would replace the newer ``last.npz`` and metrics, so it is
refused: such a run continues in a new folder (``--out NEW``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from scratchnet._paths import remove_orphans, temp_path
from scratchnet.checkpoint import LAST

LOCK = ".lock"  # the file in the run folder that the running run holds locked

_held: dict[Path, int] = {}  # run folder (resolved) -> the open file descriptor holding its lock
_created: set[Path] = set()  # run folders (resolved) this process made: removed again if left empty


class RunFolderError(RuntimeError):
    """The run folder cannot be used: a file, read-only, full, in use, or holding another run."""


def claim(run_dir: str | Path, *, overwrite: bool = False, resumed_from: Path | None = None) -> Path:
    """Create ``run_dir`` if needed, lock it for this process and check that this run may write into it.

    ``resumed_from``: the checkpoint a resumed run continues from. Leftover temporary files of crashed
    writers are removed. Raises :class:`RunFolderError` naming the problem and the way out.
    """
    run_dir = Path(run_dir)
    if not str(run_dir):
        raise RunFolderError("the run folder is an empty path; give --out a folder path")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} is a file; give --out a folder path")
    try:
        if not run_dir.exists():
            run_dir.mkdir(parents=True)
            created(run_dir)
        _lock(run_dir)
        remove_orphans(run_dir)
        probe = temp_path(run_dir / "write-test")
        probe.touch()
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise RunFolderError(f"cannot create run folder {run_dir}: a part of that path is a file") from None
    except OSError as e:
        hint = "a writable --out for the continued run" if resumed_from else "--out a writable folder"
        raise RunFolderError(f"cannot write into run folder {run_dir} ({e.strerror}); give {hint}") from None
    try:
        _check_contents(run_dir, overwrite, resumed_from)
    except RunFolderError:
        release(run_dir)
        raise
    return run_dir


def created(run_dir: Path) -> None:
    """Note that this process made ``run_dir`` (for a new run): :func:`release` removes it if left empty."""
    _created.add(run_dir.resolve())


def release(run_dir: str | Path | None) -> None:
    """Unlock ``run_dir`` (if this process holds it) and remove its lock file; a folder this process made
    and the run left empty (a run that failed before writing anything) is removed too."""
    if run_dir is None or not str(run_dir):
        return
    key = Path(run_dir).resolve()
    fd = _held.pop(key, None)
    if fd is None:
        return
    (key / LOCK).unlink(missing_ok=True)  # still locked: no other run can have taken it
    os.close(fd)
    if key in _created:
        _created.discard(key)
        try:
            key.rmdir()  # only succeeds when empty
        except OSError:
            pass


def _lock(run_dir: Path) -> None:
    """Take ``run_dir/.lock`` for this process, or raise :class:`RunFolderError` naming its holder."""
    key = run_dir.resolve()
    if key in _held:  # this process holds it already (a notebook running train() again)
        return
    path = run_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise RunFolderError(
                f"run folder {run_dir} is in use by another run (process {holder}); wait for it to end, "
                "or give another --out"
            ) from None
        # The lock file may have been removed (and a new one made) by a run that released the folder
        # between our open and our flock: then we hold a lock on a file nobody else sees. Try again.
        if os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def _check_contents(run_dir: Path, overwrite: bool, resumed_from: Path | None) -> None:
    own_folder = resumed_from is not None and resumed_from.parent.resolve() == run_dir.resolve()
    if own_folder and resumed_from.name != LAST:
        raise RunFolderError(
            f"resuming from {resumed_from} would write into {run_dir} and replace its newer {LAST} and "
            f"metrics; continue in a new folder with --out NEW (or resume from {run_dir / LAST})"
        )
    holds_files = any(p.name != LOCK for p in run_dir.iterdir())
    if holds_files and not own_folder and not overwrite:
        raise RunFolderError(
            f"run folder {run_dir} is not empty (it holds another run); choose a new --out, continue that "
            f"run with --resume {run_dir}, or replace it with --overwrite"
        )
