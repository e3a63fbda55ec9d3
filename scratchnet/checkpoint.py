"""Checkpoints: everything needed to continue a training run exactly, in one ``.npz`` file.

A checkpoint holds

* ``params``: the model's state dict, ``"conv1.W" -> array`` (host NumPy arrays): its parameters and its
  buffers (BatchNorm's ``running_mean`` and ``running_var``), so a resumed run continues from both;
* ``optimizer`` and ``scheduler``: their ``state_dict()`` (momentum buffers, learning rate, step counts);
* ``meta``: a JSON-able dict: the epoch, the run's configuration, the model's configuration, the class
  names and input normalization, the random-number state (dropout call counters), the metric history.

Inside the ``.npz`` every array is its own entry (``params/conv1.W``, ``optimizer/momentum/conv1.W``) and
everything else is one JSON string, so loading never needs ``pickle``. Nested state dicts are split into
arrays and a JSON "skeleton" in which each array is replaced by ``{"__array__": "<entry name>"}``.

Files are written atomically: to a temporary file in the same folder, flushed and ``fsync``-ed, then
renamed over the old file with :func:`os.replace` (atomic on POSIX and Windows). A crash or Ctrl-C in the
middle of a write therefore leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchnet import models

FORMAT_VERSION = 1
LAST, BEST = "last.npz", "best.npz"  # the two checkpoints a run folder holds


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not a scratchnet checkpoint."""


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict = field(default_factory=dict)
    scheduler: dict | None = None
    meta: dict = field(default_factory=dict)
    path: Path | None = None


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns the path."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    skeleton = {
        "format": FORMAT_VERSION,
        "params": _split(checkpoint.params, "params", arrays),
        "optimizer": _split(checkpoint.optimizer, "optimizer", arrays),
        "scheduler": _split(checkpoint.scheduler, "scheduler", arrays),
        "meta": checkpoint.meta,
    }
    arrays["skeleton.json"] = np.array(json.dumps(skeleton, default=_json_default))
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (a file, or a run folder: its ``last.npz``)."""
    path = resolve_checkpoint(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({e})") from None
    if "skeleton.json" not in arrays:
        raise CheckpointError(f"{path} is an .npz file but not a scratchnet checkpoint (no skeleton.json)")
    skeleton = json.loads(str(arrays["skeleton.json"]))
    if skeleton.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {skeleton.get('format')}, this scratchnet reads {FORMAT_VERSION}"
        )
    return Checkpoint(
        params=_join(skeleton["params"], arrays),
        optimizer=_join(skeleton["optimizer"], arrays),
        scheduler=_join(skeleton["scheduler"], arrays),
        meta=skeleton["meta"],
        path=path,
    )


def load_model(path: str | Path, device: str = "cpu", dtype=None):
    """Rebuild the trained model stored at ``path`` on ``device``; returns ``(model, checkpoint)``.

    ``dtype`` defaults to the one the run trained in.
    """
    checkpoint = load_checkpoint(path)
    dtype = dtype or checkpoint.meta["config"]["dtype"]
    model = models.build(**checkpoint.meta["model_config"], device=device, dtype=dtype)
    model.load_state_dict(checkpoint.params)
    return model, checkpoint


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file; ``path/last.npz`` if it is a run folder. Clear error otherwise."""
    path = Path(path)
    if path.is_dir():
        if not (path / LAST).is_file():
            raise CheckpointError(f"run folder {path} has no checkpoint {LAST} (no epoch finished yet?)")
        return path / LAST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: give a .npz file or a run folder holding {LAST}")
    return path


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then atomically rename it to ``path``.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # make the rename itself durable


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; os.replace is enough there
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split(value, prefix: str, arrays: dict):
    """Replace every array in a nested dict/list by ``{"__array__": key}``, storing it in ``arrays[key]``."""
    if isinstance(value, dict):
        return {str(k): _split(v, f"{prefix}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_split(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    if hasattr(value, "__cuda_array_interface__"):  # a CuPy array: copy it to the host
        value = value.get()
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    return value


def _join(skeleton, arrays: dict):
    """Inverse of :func:`_split`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__array__"}:
            return arrays[skeleton["__array__"]]
        return {k: _join(v, arrays) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [_join(v, arrays) for v in skeleton]
    return skeleton


def _json_default(value):
    if isinstance(value, np.generic):  # NumPy scalars (np.float32 learning rates, np.int64 counts)
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON part: {value!r}")
