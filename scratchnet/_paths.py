"""Where scratchnet keeps files, and the one way it writes them.

Cache folders: ``cache_root(variable)`` is ``$<variable>`` when that environment variable is set, else
``$XDG_CACHE_HOME/scratchnet``, else ``~/.cache/scratchnet``. Datasets live under
``cache_root("SCRATCHNET_DATA")/<dataset>``, simulator builds under ``cache_root("SCRATCHNET_CACHE")/sim``.

Atomic writes (:func:`atomic_write`), in this order of steps::

    "create"        a temporary file beside the target: .<name>.<pid>.<random>.tmp
    "write"         the content goes into it
    "fsync"         its bytes reach the disk before anyone can see the file under the real name
    "replace"       os.replace(temporary, target): atomic, readers see the old file or the new, never half
    "fsync-folder"  the folder's entry (the rename itself) reaches the disk

A crash at any step leaves the previous file whole. A crash before "replace" may leave the temporary file;
:func:`remove_orphans` deletes those whose writing process (the pid in the name) is no longer alive.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def cache_root(variable: str = "SCRATCHNET_CACHE") -> Path:
    """``$<variable>`` if set, else ``$XDG_CACHE_HOME/scratchnet``, else ``~/.cache/scratchnet``."""
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "scratchnet"


class DiskFullError(OSError):
    """The disk (or the user's quota) is full; nothing was written under the target name."""


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that records this process's id (see :func:`remove_orphans`)."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then atomically rename it to ``path``.

    On any error (KeyboardInterrupt included) the temporary file is removed and ``path`` is untouched.
    A full disk raises :class:`DiskFullError`, which says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(e.errno, f"the disk is full: could not write {path}") from None
        raise
    fsync_folder(path.parent)  # make the rename itself durable
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    if os.name != "posix":  # Windows cannot open a folder for fsync; os.replace is enough there
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete the temporary files (and folders) of :func:`atomic_write` and :func:`temp_path` in ``folder``
    whose writer is no longer running.

    A file whose pid is alive (another process still writing, or this one) is spared. Returns the removed.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        parts = tmp.name.split(".")  # ["", name..., pid, random, "tmp"]
        if len(parts) < 5 or not parts[-3].isdigit() or _alive(int(parts[-3])):
            continue
        if tmp.is_dir():  # a half-unpacked folder (the CIFAR-10 extraction)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
