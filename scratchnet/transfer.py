"""Transfer learning: start a model from the weights another scratchnet run trained.

``--pretrained RUN`` (``TrainConfig.pretrained``) accepts a scratchnet checkpoint (a ``.npz`` file, or a
run folder: its ``best.npz``, else ``last.npz``) of the same architecture. Every parameter is copied, except,
when the two runs have a different number of classes, those of the last layer: its weights are tied to the
old classes, so the new model keeps its fresh random initialisation there (and the layers below start
from what the old task taught them)::

    model = LeNet5(num_classes=5, seed=0)
    reinitialised = load_pretrained(model, "runs/first-five-classes")   # -> ["fc3.W", "fc3.b"]

torchvision's AlexNet weights (``.pth``) are another matter, read by :mod:`scratchnet.pretrained`;
:func:`is_checkpoint` tells the two apart.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from scratchnet.checkpoint import BEST, LAST, CheckpointError, load_checkpoint
from scratchnet.layers import Linear


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a run folder or an ``.npz`` file written by scratchnet's trainer."""
    path = Path(path)
    if path.is_dir():
        return (path / BEST).is_file() or (path / LAST).is_file()
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "skeleton.json.npy" in archive.namelist()
    except zipfile.BadZipFile:
        return False


def check_pretrained_path(path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` can hold pretrained weights: a run folder with a
    checkpoint, or a file that is neither missing, empty nor a damaged ``.npz`` archive."""
    path = Path(path)
    if path.is_dir():
        if not is_checkpoint(path):
            raise CheckpointError(f"--pretrained {path}: the folder holds no {BEST} or {LAST}")
        return
    if not path.is_file():
        raise CheckpointError(f"--pretrained {path}: no such file or run folder")
    if path.stat().st_size == 0:
        raise CheckpointError(f"--pretrained {path}: the file is empty (0 bytes)")
    if path.suffix == ".npz" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"--pretrained {path}: a damaged .npz file (not a whole zip archive)")


def pretrained_checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file ``--pretrained path`` means: a run folder's ``best.npz`` (the weights worth
    keeping), else its ``last.npz``; a file is itself."""
    path = Path(path)
    if path.is_dir() and (path / BEST).is_file():
        return path / BEST
    return path


def last_layer(model) -> str:
    """The name of the model's last Linear layer: the classifier whose outputs are the classes."""
    names = [name for name, layer in model.layers.items() if isinstance(layer, Linear)]
    if not names:
        raise ValueError("the model has no Linear layer to classify with")
    return names[-1]


def load_pretrained(model, path: str | Path) -> list[str]:
    """Copy the parameters of the checkpoint at ``path`` into ``model``, in place; returns the keys left at
    their fresh initialisation (the last layer's, when the class counts differ; else none).

    A run folder gives its ``best.npz`` (the weights to keep), else its ``last.npz``. Raises
    :class:`CheckpointError` when the checkpoint holds another architecture (other layers, channels or
    input size), naming both.
    """
    checkpoint = load_checkpoint(pretrained_checkpoint_path(path))
    stored = checkpoint.meta.get("model_config")
    ours = model.config or {}
    if not stored:
        raise CheckpointError(f"{checkpoint.path} does not say which model it holds (no model_config)")

    def architecture(config: dict) -> dict:
        return {k: v for k, v in config.items() if k != "num_classes"}

    if architecture(stored) != architecture(ours):
        raise CheckpointError(
            f"the pretrained checkpoint {checkpoint.path} holds another architecture: {stored}; this run "
            f"builds {ours}; --pretrained needs a checkpoint of the same model (its number of classes may "
            "differ)"
        )
    skipped: list[str] = []
    state = dict(checkpoint.params)
    if stored.get("num_classes") != ours.get("num_classes"):
        last = last_layer(model)
        skipped = [key for key in model.params if key.startswith(f"{last}.")]
        state = {k: v for k, v in state.items() if k not in skipped}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"the pretrained checkpoint {checkpoint.path} does not fit: {e}") from None
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        raise CheckpointError(
            f"the pretrained checkpoint {checkpoint.path} does not fit the model: missing {missing}, "
            f"unexpected {unexpected}"
        )
    return skipped
