"""Classify image files with a trained model: ``python -m scratchnet.predict shoe.png --checkpoint runs/x``.

Each image is decoded with Pillow into 8-bit pixels (``scratchnet.data.image.read_image``: 16-bit and
float images scaled by their pixel type's range), converted to the model's channels (grey "L" for one
channel, "RGB" for three), resized to the model's input size, scaled to [0, 1] and normalised with the
mean and standard deviation stored in the checkpoint, exactly as the training images were. The class
probabilities are the softmax of the logits,

    p_k = exp(z_k - max z) / Σ_j exp(z_j - max z),

computed in NumPy on the host (subtracting max z avoids overflow and does not change p).

Note: Fashion-MNIST images are light clothes on a black background, 28x28; a photo of a shoe on a white
table is far from anything the model saw, so expect confident nonsense. That is a lesson in itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

import scratchnet.data as D
from scratchnet.checkpoint import describe, load_model
from scratchnet.data.image import read_image
from scratchnet.device import DEVICE_NAMES
from scratchnet.errors import ArgumentParser, DeviceError, fail, parse_args


def load_images(
    paths: list[str | Path], input_shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Decode, convert and resize image files into one float32 batch (N, C, H, W) in [0, 1]; also the
    (width, height) of each file's picture before resizing."""
    channels, height, width = input_shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"images can be read for 1 or 3 input channels, the model has {channels}")
    batch = np.empty((len(paths), channels, height, width), dtype=np.float32)  # (N, C, H, W)
    sizes = []
    for i, path in enumerate(paths):
        image = read_image(path, mode)  # 8-bit, scaled by the pixel type's range (see data/image.py)
        sizes.append(image.size)
        pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
        batch[i] = pixels.reshape(height, width, channels).transpose(2, 0, 1) / np.float32(255.0)
    return batch, sizes


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, computed stably in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictions(NamedTuple):
    probabilities: np.ndarray  # (N, K): one row per image file
    classes: list[str]  # the K class names
    notes: list[str]  # per file, what was done to fit it to the model ("" when nothing)
    model: str  # which checkpoint file was read, and what it holds (see checkpoint.describe)


def predict(paths: list[str | Path], checkpoint: str | Path, device: str = "cpu") -> Predictions:
    """Class probabilities for the image files, with the class names, what was done to fit each file to
    the model ("" when nothing: it already had the model's size) and which checkpoint file was read."""
    model, ckpt = load_model(checkpoint, device=device)
    meta = ckpt.meta
    channels, height, width = meta["input_shape"]
    images, sizes = load_images(paths, (channels, height, width))
    normalize = D.Normalize(meta["normalization"]["mean"], meta["normalization"]["std"])
    x = model.device.array(normalize(images), dtype=model.dtype)  # (N, C, H, W)
    logits = model.device.to_host(model.forward(x, training=False))  # (N, K)
    colour = "grey" if channels == 1 else "RGB"
    notes = [
        f"resized from {w}x{h} to the model's {width}x{height} {colour}" if (w, h) != (width, height) else ""
        for w, h in sizes
    ]
    return Predictions(softmax(logits), meta["classes"], notes, describe(meta, ckpt.path))


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m scratchnet.predict", description="Classify image files.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", required=True, help="checkpoint .npz or run folder (uses its last.npz)")
    p.add_argument("--device", choices=DEVICE_NAMES, default="cpu")
    p.add_argument("--top", type=int, help="how many classes to list per image (default 5, or all if fewer)")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    if args.top is not None and args.top < 1:
        return fail(f"--top must be >= 1, got {args.top}")
    try:
        probabilities, classes, notes, model = predict(args.images, args.checkpoint, device=args.device)
    except (DeviceError, OSError, ValueError) as e:  # CheckpointError and bad images are ValueErrors
        return fail(e)
    top = min(5, len(classes)) if args.top is None else args.top
    if top > len(classes):
        return fail(f"--top must be at most the number of classes, {len(classes)}, got {top}")
    print(model)
    for path, p_image, note in zip(args.images, probabilities, notes, strict=True):
        print(f"{path}  ({note})" if note else path)
        for k in np.argsort(-p_image, kind="stable")[:top]:
            print(f"  {p_image[k]:.4f}  {classes[k]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
