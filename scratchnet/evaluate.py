"""Evaluate a trained checkpoint: ``python -m scratchnet.evaluate --checkpoint runs/x``.

Prints top-1 and top-5 accuracy, the mean cross-entropy loss and a per-class accuracy table (the diagonal
of the confusion matrix divided by the row sums). By default it uses the test split of the dataset the
run trained on, prepared exactly as in training (same image size, same normalization).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import scratchnet.data as D
from scratchnet import plots
from scratchnet.checkpoint import describe, load_model, resolve_checkpoint
from scratchnet.data.classes import parse_classes, select_classes
from scratchnet.data.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES
from scratchnet.device import DEVICE_NAMES
from scratchnet.errors import ArgumentParser, DatasetError, DeviceError, fail, parse_args
from scratchnet.layers import SoftmaxCrossEntropy
from scratchnet.layers.loss import topk_correct
from scratchnet.optim import check_count

# Datasets whose class names are known without reading them.
KNOWN_CLASSES = {
    "mnist": MNIST_CLASSES,
    "fashion-mnist": FASHION_MNIST_CLASSES,
    "fashion-mnist-mini": FASHION_MNIST_CLASSES,
}


@dataclass
class Evaluation:
    """Metrics of a model on a dataset. ``confusion[i, j]``: images of class i predicted as j."""

    loss: float
    accuracy: float
    top5: float
    images: int
    confusion: np.ndarray | None = None

    def per_class_accuracy(self) -> np.ndarray:
        if self.confusion is None:
            raise ValueError("evaluate(..., confusion=True) is needed for per-class accuracy")
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(axis=1), 1)


def evaluate(
    model,
    dataset: D.Dataset,
    *,
    transform: Callable | None = None,
    batch_size: int = 256,
    confusion: bool = False,
    progress: bool = False,
    world=None,
) -> Evaluation:
    """Loss, top-1 and top-5 accuracy of ``model`` on ``dataset`` (``training=False``: no dropout).

    ``transform``: the training run's normalization (``Data.eval_transform``); ``confusion=True`` also
    counts the confusion matrix, which copies each batch's logits to the host. ``world``: with several
    processes (:mod:`scratchnet.parallel`), each evaluates its contiguous part of ``dataset`` and the
    counts are summed, so every rank returns the whole dataset's figures.
    """
    device, dtype = model.device, model.dtype
    loss_fn = SoftmaxCrossEntropy(device=device, dtype=dtype)
    num_classes = dataset.num_classes
    total = len(dataset)
    if world is not None and world.size > 1:
        dataset = D.Subset(dataset, np.arange(total)[world.shard(total)])  # may be empty
    loader = D.DataLoader(dataset, batch_size, shuffle=False, transform=transform) if len(dataset) else []
    counts = np.zeros((num_classes, num_classes), dtype=np.int64) if confusion else None
    ks = (1, 5) if num_classes > 5 else (1,)  # with 5 classes or fewer, top-5 is always right
    seen, loss_sum, correct = 0, 0.0, {1: 0, 5: 0}
    several = world is not None and world.size > 1
    interrupted = False
    # A diverged model overflows: its loss is reported as NaN/inf and its NaN rows count as wrong
    # (topk_correct), so NumPy's overflow warnings would only be noise.
    batches = tqdm(loader, desc="evaluate", leave=False, disable=not progress)
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            for images, labels in batches:
                x = device.array(images, dtype=dtype)
                y = device.array(labels)
                logits = model.forward(x, training=False)  # (B, classes)
                loss_sum += loss_fn.forward(logits, y) * len(labels)
                for k, n in topk_correct(logits, y, ks=ks, device=device).items():
                    correct[k] += n
                if counts is not None:
                    host_logits = device.to_host(logits)  # (B, classes)
                    predicted = host_logits.argmax(axis=1)
                    nan_rows = np.isnan(host_logits).any(axis=1)  # argmax would pick the NaN: count it wrong
                    predicted[nan_rows] = (labels[nan_rows] + 1) % num_classes
                    counts += plots.confusion_matrix(labels, predicted, num_classes)
                seen += len(labels)
        except KeyboardInterrupt:  # a Ctrl-C that stopped a simulated kernel of this process alone: the
            if not several:  # others wait in the sum below, so this one joins it and all stop after it
                raise
            interrupted = True
    if several:
        sums = world.sum(
            [interrupted, seen, loss_sum, correct[1], correct[5], *(counts.ravel() if confusion else [])]
        )
        if sums[0]:
            raise KeyboardInterrupt(
                f"evaluation interrupted (Ctrl-C) in {int(sums[0])} of {world.size} processes"
            )
        seen, loss_sum, correct = int(sums[1]), float(sums[2]), {1: int(sums[3]), 5: int(sums[4])}
        if confusion:
            counts = sums[5:].astype(np.int64).reshape(num_classes, num_classes)
    if seen == 0:
        raise ValueError(f"cannot evaluate on an empty dataset ({dataset!r})")
    top5 = correct[5] / seen if 5 in ks else 1.0
    return Evaluation(loss_sum / seen, correct[1] / seen, top5, seen, counts)


def evaluate_checkpoint(
    path: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    device: str = "cpu",
    limit: int | None = None,
    batch_size: int = 256,
) -> tuple[Evaluation, list[str], dict]:
    """Evaluate the checkpoint at ``path`` on a split of ``dataset`` (default: the run's own dataset).

    Returns the :class:`Evaluation` (with the confusion matrix), the class names and the checkpoint's meta.
    """
    check_count("batch_size", batch_size)
    if limit is not None:
        check_count("limit", limit)
    model, checkpoint = load_model(path, device=device)
    meta, config = checkpoint.meta, checkpoint.meta["config"]
    name = dataset or config["dataset"]
    selection = config.get("classes")  # a run trained on some classes (--classes) is tested on those alone
    if name in KNOWN_CLASSES:  # refused before any file is looked for (or downloaded)
        known = KNOWN_CLASSES[name]
        if selection is not None:
            known = [known[c] for c in _parse_selection(selection, len(known), name)]
        _check_classes(name, known, meta["classes"], config["dataset"])
    if dataset is None:  # the run's own dataset: also its folder, unless another is given
        data_dir = data_dir or config["data_dir"]
    data = D.load_dataset(
        name,
        split=split,
        data_dir=data_dir,
        download=config["download"],
        image_size=meta["input_shape"][-1],
    )
    if selection is not None:  # the same classes, renumbered in the same order as in training
        data = select_classes(data, _parse_selection(selection, data.num_classes, name))
    _check_classes(name, data.classes, meta["classes"], config["dataset"])
    if tuple(data.shape) != tuple(meta["input_shape"]):
        raise DatasetError(
            f"{name} gives images of shape {tuple(data.shape)}, the model takes {tuple(meta['input_shape'])}"
        )
    data = D.subset(data, limit, seed=config["seed"])
    normalize = D.Normalize(meta["normalization"]["mean"], meta["normalization"]["std"])
    result = evaluate(model, data, transform=normalize, batch_size=batch_size, confusion=True)
    return result, meta["classes"], meta


def _parse_selection(selection: str, num_classes: int, name: str) -> list[int]:
    try:
        return parse_classes(selection, num_classes)
    except ValueError as e:
        raise DatasetError(
            f"the run was trained on classes {selection!r}, which {name} does not have: {e}"
        ) from None


def _check_classes(name: str, classes: list[str], trained: list[str], trained_on: str) -> None:
    if list(classes) != list(trained):
        raise DatasetError(
            f"{name} has the classes {list(classes)}, but the checkpoint's model predicts {list(trained)}: "
            f"evaluate it on the dataset it was trained on ({trained_on})"
        )


def report(result: Evaluation, classes: list[str]) -> str:
    """The metrics and the per-class table as text."""
    width = max(len("class"), *(len(c) for c in classes))
    top5 = f"top-5 accuracy {result.top5:.4f}  " if len(classes) > 5 else ""  # (always 1 with 5 or fewer)
    lines = [
        f"images {result.images}  top-1 accuracy {result.accuracy:.4f}  {top5}loss {result.loss:.4f}",
        "",
        f"{'class':<{width}}  accuracy  images",
    ]
    per_class = result.per_class_accuracy()
    counts = result.confusion.sum(axis=1)
    for name, accuracy, count in zip(classes, per_class, counts, strict=True):
        lines.append(f"{name:<{width}}  {accuracy:8.4f}  {count:6d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        prog="python -m scratchnet.evaluate",
        description="Evaluate a checkpoint: top-1, top-5, loss, per class.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint .npz or run folder (uses its last.npz)")
    p.add_argument("--dataset", choices=D.DATASETS, help="default: the dataset the run trained on")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--device", choices=DEVICE_NAMES, default="cpu")
    p.add_argument("--limit-test", type=int, metavar="M", help="use only M images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--confusion", metavar="PNG", help="also save the confusion matrix as this image")
    args = parse_args(p, argv)
    if isinstance(args, int):
        return args
    try:
        result, classes, meta = evaluate_checkpoint(
            args.checkpoint,
            dataset=args.dataset,
            data_dir=args.data_dir,
            split=args.split,
            device=args.device,
            limit=args.limit_test,
            batch_size=args.batch_size,
        )
    except (ValueError, DatasetError, DeviceError, OSError) as e:  # CheckpointError is a ValueError
        return fail(e)
    print(describe(meta, resolve_checkpoint(args.checkpoint)))  # a run folder: its last.npz
    print(report(result, classes))
    if args.confusion:
        try:
            saved = plots.plot_confusion(result.confusion, classes, args.confusion)
        except (ValueError, OSError) as e:
            return fail(f"the evaluation above is complete, but the confusion matrix was not saved: {e}")
        print(f"confusion matrix saved to {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
