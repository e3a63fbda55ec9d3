"""Pictures for the lessons: each function draws one idea on a matplotlib figure and returns the figure.

They take sizes, not data, where the idea is about indices (which input pixel lands where), so that a
learner can redraw them for other sizes: ``plot_im2col(H=4, W=4, KH=2, KW=2, S=1, P=0)``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from scratchnet.layers.base import window_output_hw

_WINDOW_COLOURS = plt.get_cmap("tab10").colors


def _grid(ax, values: np.ndarray, title: str, fmt: str = "{}") -> None:
    """An array of small numbers drawn as a grid of labelled squares (row 0 at the top)."""
    ax.imshow(np.zeros(values.shape), cmap="Greys", vmin=0, vmax=1)
    for (r, c), value in np.ndenumerate(values):
        ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=8)
    ax.set_xticks(np.arange(values.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(values.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.6", lw=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title, fontsize=9)


def plot_im2col(H: int = 4, W: int = 4, KH: int = 2, KW: int = 2, S: int = 1, P: int = 0, windows: int = 3):
    """Left: one input channel (H, W), its pixels numbered, padded by P (padding shows as "·"), with the
    first ``windows`` positions of the KH×KW window as it slides by S. Right: the column matrix
    (KH·KW, OH·OW) of im2col: column (oh, ow) holds the pixels of window (oh, ow), top to bottom."""
    OH, OW = window_output_hw((H, W), (KH, KW), S, P)
    numbers = np.full((H + 2 * P, W + 2 * P), -1)
    numbers[P : P + H, P : P + W] = np.arange(H * W).reshape(H, W)
    labels = np.where(numbers >= 0, numbers.astype(str), "·")
    columns = np.empty((KH * KW, OH * OW), dtype=object)
    for oh in range(OH):
        for ow in range(OW):
            columns[:, oh * OW + ow] = labels[oh * S : oh * S + KH, ow * S : ow * S + KW].ravel()

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(3 + 0.45 * OH * OW, 3.2), gridspec_kw={"width_ratios": [W + 2 * P, OH * OW]}
    )
    _grid(left, labels, f"input {H}×{W}, padding {P}: a {KH}×{KW} window, stride {S}")
    _grid(right, columns, f"im2col: ({KH}·{KW}, {OH}·{OW}) = ({KH * KW}, {OH * OW}), one column per window")
    for number in range(min(windows, OH * OW)):
        oh, ow = divmod(number, OW)
        colour = _WINDOW_COLOURS[number % len(_WINDOW_COLOURS)]
        inset = 0.08 * (number + 1)  # nested outlines stay visible where the windows overlap
        left.add_patch(
            Rectangle(
                (ow * S - 0.5 + inset, oh * S - 0.5 + inset),
                KW - 2 * inset,
                KH - 2 * inset,
                fill=False,
                ec=colour,
                lw=2,
            )
        )
        right.add_patch(Rectangle((number - 0.45, -0.45), 0.9, KH * KW - 0.1, fill=False, ec=colour, lw=2))
    fig.tight_layout()
    return fig


def plot_overlap_counts(H: int = 7, W: int = 7, KH: int = 3, KW: int = 3, S: int = 2, P: int = 0):
    """How many windows read each input pixel: the number of terms that col2im (and conv's dx, and
    max-pooling's dx) must ADD at that pixel. Overlap appears when S < KH or S < KW."""
    OH, OW = window_output_hw((H, W), (KH, KW), S, P)
    counts = np.zeros((H + 2 * P, W + 2 * P), dtype=int)
    for oh in range(OH):
        for ow in range(OW):
            counts[oh * S : oh * S + KH, ow * S : ow * S + KW] += 1
    counts = counts[P : P + H, P : P + W]
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(counts.max(), 1))
    for (r, c), value in np.ndenumerate(counts):
        ax.text(
            c,
            r,
            str(value),
            ha="center",
            va="center",
            fontsize=9,
            color="white" if value > counts.max() / 2 else "black",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"windows per input pixel\n{KH}×{KW} window, stride {S}, padding {P}", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, ticks=range(counts.max() + 1))
    fig.tight_layout()
    return fig


# --- the training lessons: rows of images, saliency maps ---------------------------------------------
def plot_images(images: np.ndarray, titles: list[str] | None = None, columns: int = 8, title: str = ""):
    """Images (N, C, H, W), C = 1 (grey) or 3 (RGB, values in [0, 1]), in rows of ``columns``, each with its
    title; returns the figure."""
    N = len(images)
    rows = max(1, -(-N // columns))  # ceil(N / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.7 * rows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < N:
            image = images[i]
            ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def saliency_maps(model, x, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels sway a class score most: max over channels of |∂ score / ∂ x|, scaled to [0, 1] per image
    (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop track).

    ``x`` (N, C, H, W): input images as the model takes them (normalised, on its device); ``classes`` (N,):
    the class whose score to explain in each image (None: the predicted one). The forward is an evaluation
    forward (no dropout) that keeps what backward needs; backward starts from d(score)/d(logits), one-hot.
    Returns ``(maps (N, H, W), classes (N,))`` on the host.
    """
    device = model.device
    previous = model.input_grad
    model.input_grad = True  # backward then returns dL/dx for the input as well
    try:
        logits = device.to_host(model.forward(x, training=False, keep_for_backward=True))  # (N, K)
        N = len(logits)
        classes = logits.argmax(axis=1) if classes is None else np.asarray(classes)
        dscores = np.zeros_like(logits)
        dscores[np.arange(N), classes] = 1.0  # the gradient of score[n, classes[n]] w.r.t. the logits
        dx = device.to_host(model.backward(device.array(dscores)))  # (N, C, H, W)
    finally:
        model.input_grad = previous
    strength = np.abs(dx).max(axis=1)  # (N, H, W)
    return strength / np.maximum(strength.max(axis=(1, 2), keepdims=True), 1e-30), classes
