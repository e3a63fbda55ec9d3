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

Files are written atomically (:func:`scratchnet._paths.atomic_write`): to a temporary file in the same
folder, flushed and ``fsync``-ed, then renamed over the old file with :func:`os.replace` (atomic on POSIX
and Windows). A crash or Ctrl-C in the middle of a write therefore leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchnet import models
from scratchnet._paths import atomic_write

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
    """Read a checkpoint written by :func:`save_checkpoint` (a file, or a run folder: its ``last.npz``).

    Anything else (an empty or random file, a damaged archive, bad JSON, a missing entry) is a
    :class:`CheckpointError` that names the file and the problem.
    """
    path = resolve_checkpoint(path)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint; was its writer killed?")
    if not zipfile.is_zipfile(path):  # an .npz is a zip archive; never let np.load guess (it tries pickle)
        raise CheckpointError(f"{path} is not a scratchnet checkpoint (not an .npz archive, {size} bytes)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        skeleton = json.loads(str(arrays.pop("skeleton.json")))
    except KeyError:
        raise CheckpointError(
            f"{path} is an .npz file but not a scratchnet checkpoint (no skeleton.json)"
        ) from None
    except Exception as e:  # any failure to parse a damaged file: a zip "version needed", zlib, NumPy's
        # header tokenizer, JSON nested 100,000 deep, a size that cannot be allocated
        raise CheckpointError(f"{path} is a damaged checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(skeleton, dict) or skeleton.get("format") != FORMAT_VERSION:
        found = skeleton.get("format") if isinstance(skeleton, dict) else type(skeleton).__name__
        raise CheckpointError(f"{path} has checkpoint format {found}, this scratchnet reads {FORMAT_VERSION}")
    missing = [k for k in ("params", "optimizer", "scheduler", "meta") if k not in skeleton]
    if missing or not isinstance(skeleton["meta"], dict) or not isinstance(skeleton["params"], dict):
        raise CheckpointError(
            f"{path} is a damaged checkpoint: its index lacks {missing or 'a params/meta dict'}"
        )
    try:
        parts = {k: _join(skeleton[k], arrays) for k in ("params", "optimizer", "scheduler")}
    except (KeyError, TypeError) as e:  # TypeError: an entry name that is not a string
        raise CheckpointError(f"{path} is a damaged checkpoint: the array {e} is missing") from None
    not_numbers = [k for k, v in parts["params"].items() if not _numeric_array(v)]
    if not_numbers:
        raise CheckpointError(
            f"{path} is a damaged checkpoint: parameters {not_numbers} are not number arrays"
        )
    return Checkpoint(**parts, meta=skeleton["meta"], path=path)


def _numeric_array(value) -> bool:
    return isinstance(value, np.ndarray) and (value.dtype.kind in "fiu")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# What each entry of a checkpoint's meta must be (JSON types, as save_checkpoint writes them).
META_RULES = {
    "epoch": ("an integer >= 0", _count),
    "bad_epochs": ("an integer >= 0", _count),
    "config": (
        "a dict with the model, dataset and dtype names",
        lambda v: (
            isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("model", "dataset", "dtype"))
        ),
    ),
    "model_config": ("a dict", lambda v: isinstance(v, dict)),
    "classes": ("a non-empty list of names", lambda v: _strings(v) and len(v) > 0),
    "input_shape": (
        "[channels, height, width]",
        lambda v: isinstance(v, list) and len(v) == 3 and all(_count(n) and n > 0 for n in v),
    ),
    "normalization": ("a dict of mean and std", lambda v: isinstance(v, dict) and {"mean", "std"} <= set(v)),
    "dropout_rng_calls": (
        "a dict of counts",
        lambda v: isinstance(v, dict) and all(_count(n) for n in v.values()),
    ),
    "history": ("a list of dicts", lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)),
    "best": (
        "a dict of metric, value and epoch",
        lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("metric"), str)
            and _number(v.get("value"))
            and _count(v.get("epoch"))
        ),
    ),
}


def require_meta(checkpoint: Checkpoint, *keys: str) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's meta has every key in ``keys``, each of the
    type :data:`META_RULES` gives (so no consumer meets a list where it expects a dict)."""
    missing = [k for k in keys if k not in checkpoint.meta]
    if missing:
        raise CheckpointError(
            f"{checkpoint.path} is a damaged checkpoint: its meta lacks {', '.join(missing)}"
        )
    for key in keys:
        rule, ok = META_RULES.get(key, ("anything", lambda v: True))
        if not ok(checkpoint.meta[key]):
            raise CheckpointError(
                f"{checkpoint.path} is a damaged checkpoint: its meta {key} must be {rule}, "
                f"got {_shorten(checkpoint.meta[key])}"
            )


def _shorten(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_model(path: str | Path, device: str = "cpu", dtype=None):
    """Rebuild the trained model stored at ``path`` on ``device``; returns ``(model, checkpoint)``.

    ``dtype`` defaults to the one the run trained in. A checkpoint whose parameters are not all finite
    (a diverged model) is refused: its predictions would mean nothing.
    """
    checkpoint = load_checkpoint(path)
    require_meta(checkpoint, "config", "model_config", "classes", "input_shape", "normalization", "epoch")
    if not all(np.isfinite(p).all() for p in checkpoint.params.values()):
        raise CheckpointError(
            f"{checkpoint.path} holds NaN/inf parameters (a diverged run); it cannot be used"
        )
    classes = len(checkpoint.meta["classes"])
    if checkpoint.meta["model_config"].get("num_classes", classes) != classes:  # before any allocation
        stored = _shorten(checkpoint.meta["model_config"].get("num_classes"))
        raise CheckpointError(
            f"{checkpoint.path} is a damaged checkpoint: a model for {stored} classes, {classes} class names"
        )
    try:
        dtype = dtype or checkpoint.meta["config"]["dtype"]
        model = models.build(**checkpoint.meta["model_config"], device=device, dtype=dtype)
        model.load_state_dict(checkpoint.params)
        _check_normalization(checkpoint.meta["normalization"], channels=model.input_shape[0])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{checkpoint.path} does not hold a usable model: {e}") from None
    return model, checkpoint


def _check_normalization(normalization: dict, channels: int) -> None:
    """The input normalization: a finite mean and a finite std > 0 per channel (else every prediction is
    NaN, or a division by zero)."""
    for name in ("mean", "std"):
        values = normalization[name]
        if not isinstance(values, list) or len(values) != channels:
            raise ValueError(
                f"the normalization {name} must be {channels} numbers, one per channel: {values!r}"
            )
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values):
            raise ValueError(f"the normalization {name} must be finite numbers, got {values!r}")
    if min(normalization["std"]) <= 0:
        raise ValueError(f"the normalization std must be > 0, got {normalization['std']!r}")


def describe(meta: dict, path: Path) -> str:
    """The line by which ``evaluate`` and ``predict`` say which file they read and what it holds, e.g.
    ``model: runs/x/last.npz (lenet5 trained on fashion-mnist-mini for 3 epochs)``."""
    epochs = meta["epoch"]
    trained = f"{meta['config']['model']} trained on {meta['config']['dataset']}"
    return f"model: {path} ({trained} for {epochs} epoch{'' if epochs == 1 else 's'})"


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
    """Inverse of :func:`_split` (a KeyError names a missing array)."""
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
