"""The pictures a run folder holds: learning curves, the test confusion matrix, the first-layer filters.

Drawn with Matplotlib's object-oriented API (``matplotlib.figure.Figure``) straight into PNG files, so no
window and no GUI backend are ever involved (it works on servers and in CI), and the global ``pyplot``
state of a notebook is left alone.

Every picture is saved by :func:`save`: a path without a suffix gets ``.png``, and a suffix Matplotlib
cannot write, or a folder that does not exist, is a ValueError or OSError naming the path before any
drawing. Class names are drawn as plain text (a ``$`` in a folder name is not Matplotlib math).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and top-1 accuracy per epoch, train and (when present) validation, side by side."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, title in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "top-1 accuracy")):
        for split in ("train", "val"):
            values = [h.get(f"{split}_{metric}") for h in history]
            if all(v is not None for v in values):
                ax.plot(epochs, values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``counts[i, j]`` = how many images of true class i were predicted as class j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def plot_confusion(counts: np.ndarray, class_names: list[str], path: str | Path) -> Path:
    """The confusion matrix as a heat map, rows normalised to the share of each true class."""
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = max(5.0, 0.55 * n + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    names = [name.replace("$", r"\$") for name in class_names]  # "$x^$" would be parsed as math
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:  # write the counts in the cells while they stay readable
        for i in range(n):
            for j in range(n):
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8, color=color)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"test confusion matrix (accuracy {accuracy:.4f})")
    return save(fig, path)


def filter_grid(weights: np.ndarray, pad: int = 1) -> np.ndarray:
    """First-layer kernels (F, C, kh, kw) tiled into one image, as in Figure 3 of the AlexNet paper.

    Each kernel is scaled to [0, 1] on its own (the shapes matter, not the absolute values). Three input
    channels are shown as RGB; one channel as grey. Returns (rows*(kh+pad)+pad, cols*(kw+pad)+pad, 3).
    """
    if weights.ndim != 4 or weights.shape[1] not in (1, 3):
        raise ValueError(f"filter_grid expects weights of shape (F, 1 or 3, kh, kw), got {weights.shape}")
    f, c, kh, kw = weights.shape
    low = weights.min(axis=(1, 2, 3), keepdims=True)
    high = weights.max(axis=(1, 2, 3), keepdims=True)
    scaled = (weights - low) / np.maximum(high - low, 1e-12)  # (F, C, kh, kw) in [0, 1]
    tiles = np.repeat(scaled, 3 // c, axis=1).transpose(0, 2, 3, 1)  # (F, kh, kw, 3)
    cols = math.ceil(math.sqrt(f))
    rows = math.ceil(f / cols)
    grid = np.ones((rows * (kh + pad) + pad, cols * (kw + pad) + pad, 3))  # white separators
    for i in range(f):
        r, col = divmod(i, cols)
        top, left = pad + r * (kh + pad), pad + col * (kw + pad)
        grid[top : top + kh, left : left + kw] = tiles[i]
    return grid


def plot_filters(weights: np.ndarray, path: str | Path, title: str = "first-layer filters") -> Path:
    """Save :func:`filter_grid` of ``weights`` as a PNG."""
    grid = filter_grid(np.asarray(weights, dtype=np.float64))
    fig = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title} {tuple(weights.shape)}")
    return save(fig, path)


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (``.png`` added when it has no suffix); returns the path written."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    formats = fig.canvas.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise ValueError(f"cannot save a picture as {path}: use one of .{', .'.join(sorted(formats))}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save {path}: the folder {path.parent} does not exist")
    fig.savefig(path, dpi=100)
    return path
