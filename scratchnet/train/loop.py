"""Training: the loop that turns a model, a dataset and SGD into a trained network.

Library first: notebooks call :func:`train` with a :class:`TrainConfig`; ``python -m scratchnet.train`` is
a thin command line over it. One training step, per batch of B images::

    x = device.array(images)         # (B, C, H, W)  the one host->device copy of the images
    y = device.array(labels)         # (B,) int64    the one host->device copy of the labels
    logits = model.forward(x)        # (B, classes)
    L = loss.forward(logits, y)      # a Python float: one device->host copy of a scalar
    model.backward(loss.backward())  # fills model.grads
    optimizer.step()                 # updates model.params in place
    correct = topk_correct(logits, y)  # one more scalar copy, for the running accuracy

Everything else stays on the device, so a GPU (or the simulator) is never waiting on the host.

A run is reproducible: the seed fixes the initial weights, the validation split, the shuffling and
augmentation of every epoch (the loader derives them from (seed, epoch)) and the dropout masks (a hash of
(seed, call counter, element)). A checkpoint therefore only has to store the parameters, the optimizer
and schedule state, the dropout call counters and the epoch; resuming from epoch k gives, on the CPU,
bit-for-bit the same weights as a run that was never stopped.

A run is three steps, each usable alone: :func:`prepare` (device, data, model, SGD, run folder, resumed
state) -> :func:`fit` (the epochs, until a :class:`StopCondition` such as :class:`EarlyStopping` gives a
reason) -> :func:`finish` (the test pass and the pictures); :func:`train` chains them, and
``bench.time_to_accuracy`` runs the same loop with its own stop condition.

A run folder (``out``) holds ``config.json``, ``metrics.jsonl`` (one JSON line per epoch; a value that is
not finite is written as null), ``best.npz`` and ``last.npz`` (checkpoints, written atomically after every
epoch, best first), and, at the end, ``curves.png``, ``confusion.png`` and ``filters.png``. A new run
refuses a non-empty folder unless ``overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

import scratchnet.data as D
import scratchnet.models as M
import scratchnet.optim as O
from scratchnet import parallel, plots
from scratchnet._paths import atomic_write_text, remove_orphans, temp_path
from scratchnet.checkpoint import (
    BEST,
    LAST,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    require_meta,
    save_checkpoint,
)
from scratchnet.data.classes import select_classes
from scratchnet.device import DEVICE_NAMES, Device, get_device
from scratchnet.errors import ArgumentParser, DatasetError, DeviceError, fail, parse_args
from scratchnet.evaluate import Evaluation, evaluate
from scratchnet.layers import SoftmaxCrossEntropy
from scratchnet.layers.loss import topk_correct
from scratchnet.pretrained import IMAGENET_MEAN, IMAGENET_STD, load_torchvision_alexnet
from scratchnet.transfer import is_checkpoint
from scratchnet.transfer import load_pretrained as load_pretrained_checkpoint

SCHEDULES = ("none", "step", "cosine")
DTYPES = ("float32", "float64")
PRETRAINED_MODEL = "alexnet-torchvision"  # the architecture torchvision's AlexNet weights fit
# What a resumed run may change; everything else comes from the checkpoint, so the run stays the same run.
RESUME_OVERRIDES = ("epochs", "device", "progress", "plots", "out", "workers", "overwrite")
# What a checkpoint's meta must hold to continue a run from it.
RESUME_META = ("epoch", "config", "model_config", "dropout_rng_calls", "history", "best", "bad_epochs")


class ConfigError(ValueError):
    """A configuration that cannot work (bad value, or a model that does not fit the dataset)."""


class TrainingDiverged(RuntimeError):
    """The loss or a parameter became NaN or infinite; the message says where and what to try."""


class RunFolderError(RuntimeError):
    """The run folder cannot be used: a file, read-only, full, or holding another run (no --overwrite)."""


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults train LeNet-5 on the bundled mini Fashion-MNIST
    (4,500 training images after the 10% validation split) to about 0.83 test accuracy (0.832-0.838 over
    seeds 0-2) in well under a minute on two CPU cores: SGD with momentum 0.9, learning rate 0.02 on a
    cosine schedule, weight decay 5e-4, batches of 64, 10 epochs."""

    model: str = "lenet5"
    dataset: str = "fashion-mnist-mini"
    data_dir: str | None = None
    image_size: int | None = None  # resize images to this side (None: the dataset's own size)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "none" | "step" (lr *= gamma every step_size epochs) | "cosine" (to min_lr)
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    val_fraction: float = 0.1  # share of the training images held out to validate after each epoch
    limit_train: int | None = None  # use only this many training images (validation included), for quick runs
    limit_test: int | None = None
    augment: bool = False  # random crops (and flips, except for digits) of the training images
    early_stopping: int | None = None  # stop after this many epochs without a better validation accuracy
    # (the test then uses the last weights; best.npz in the run folder holds the best ones)
    out: str | None = None  # run folder for checkpoints, metrics and plots (None: write nothing)
    resume: str | None = None  # checkpoint file or run folder to continue from
    pretrained: str | None = None  # start from: a checkpoint or run folder of the same model, or torchvision
    # AlexNet weights (.pth); a different class count gets a fresh last layer
    classes: str | None = None  # keep only these classes, "0-4" or "0,2,7" (renumbered 0..k-1 in that order)
    freeze: bool = False  # train only the classifier (the fully connected layers)
    progress: bool = True  # tqdm progress bar (only shown when stderr is a terminal)
    plots: bool = True  # draw curves.png, confusion.png, filters.png into the run folder at the end
    download: bool = True  # fetch missing datasets (the bundled mini dataset never needs it)
    overwrite: bool = False  # allow a new run in an existing, non-empty run folder (its files are replaced)
    workers: int = 0  # processes preparing the next training batches (image folders: decoding is slow)

    def __post_init__(self):
        """Refuse, with :class:`ConfigError` naming the field, any value that cannot make a sensible run."""
        try:
            self._check()
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def _check(self) -> None:
        choices = [
            ("model", self.model, M.MODELS),
            ("dataset", self.dataset, D.DATASETS),
            ("schedule", self.schedule, SCHEDULES),
            ("dtype", self.dtype, DTYPES),
            ("device", self.device, DEVICE_NAMES),
        ]
        for name, value, allowed in choices:
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            O.check_range(name, getattr(self, name))
        O.check_min_lr(self.min_lr, self.lr)
        for name in ("epochs", "batch_size", "step_size"):
            O.check_count(name, getattr(self, name))
        for name in ("image_size", "limit_train", "limit_test", "early_stopping"):
            if getattr(self, name) is not None:
                O.check_count(name, getattr(self, name))
        checks = [
            (
                isinstance(self.seed, int) and 0 <= self.seed < 2**32,
                f"seed must be an integer in [0, 2^32), got {self.seed!r}",
            ),
            (
                isinstance(self.val_fraction, int | float) and 0 <= self.val_fraction < 1,
                f"val_fraction must be in [0, 1), got {self.val_fraction!r}",
            ),
            (
                isinstance(self.workers, int) and self.workers >= 0,
                f"workers must be an integer >= 0, got {self.workers!r}",
            ),
            (
                self.early_stopping is None or self.val_fraction > 0,
                "early stopping watches the validation accuracy: give a val_fraction > 0 as well",
            ),
            (
                self.pretrained is None or self.model == PRETRAINED_MODEL or is_checkpoint(self.pretrained),
                f"pretrained weights are a scratchnet checkpoint or run folder, or torchvision's AlexNet "
                f"(then use model {PRETRAINED_MODEL!r}); {self.pretrained} is neither",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class TrainResult:
    test_accuracy: float
    test_loss: float
    test_top5: float
    epochs: int  # the last epoch trained (counting epochs before a resume)
    seconds: float  # wall time of this call: data, training, testing
    history: list[dict]  # one dict per epoch, as in metrics.jsonl
    model: object = field(repr=False)
    test: Evaluation = field(repr=False)
    run_dir: Path | None = None
    stopped_early: bool = False

    def final_line(self) -> str:
        """The run's summary as key=value pairs; the command line prints it last."""
        line = (
            f"final test_accuracy={self.test_accuracy:.4f} test_loss={self.test_loss:.4f} "
            f"epochs={self.epochs} seconds={self.seconds:.1f} top5={self.test_top5:.4f}"
        )
        return line + (f" run_dir={self.run_dir}" if self.run_dir else "")


@dataclass
class Data:
    """The three splits of a run and how their images are prepared."""

    train: D.Dataset
    val: D.Dataset | None
    test: D.Dataset
    classes: list[str]
    shape: tuple[int, int, int]  # (C, H, W)
    mean: list[float]
    std: list[float]
    train_transform: Callable
    eval_transform: Callable


# --- data --------------------------------------------------------------------------------------------
def load_data(config: TrainConfig) -> Data:
    """Load the train and test splits, hold out the validation split, choose the transforms."""
    options = dict(data_dir=config.data_dir, download=config.download, image_size=config.image_size)
    # An image folder augments while decoding: a random crop of random size and aspect ratio per image.
    folder_crop = {"crop": "random-resized"} if config.dataset == "folder" and config.augment else {}
    train_set = D.load_dataset(config.dataset, split="train", **options, **folder_crop)
    test_set = D.load_dataset(config.dataset, split="test", **options)
    try:
        train_set, test_set = (select_classes(s, config.classes) for s in (train_set, test_set))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    # limit first, then split: --limit-train N means N images in all, validation included
    train_set = D.subset(train_set, config.limit_train, seed=config.seed)
    test_set = D.subset(test_set, config.limit_test, seed=config.seed)
    val_set = None
    if config.val_fraction > 0:
        try:
            train_set, val_set = D.random_split(train_set, config.val_fraction, seed=config.seed)
        except ValueError as e:
            raise ConfigError(
                f"{e}: give more images (--limit-train) or a --val-fraction that fits"
            ) from None
        val_set = val_set.with_crop("center")  # validation images are never randomly cropped

    # Pretrained weights expect the normalization they were trained with (ImageNet's).
    torchvision = config.pretrained and not is_checkpoint(config.pretrained)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if torchvision else D.MEAN_STD[config.dataset]
    normalize = D.Normalize(mean, std)
    train_transform = normalize
    if config.augment:
        augmentations = []
        if config.dataset != "folder":  # (the folder crops while decoding, above)
            side = train_set.shape[1]
            augmentations.append(D.RandomCrop(side, padding=max(2, side // 8)))  # shifts of up to 1/8
        if config.dataset != "mnist":  # a mirrored shirt is a shirt; a mirrored 2 is not a digit
            augmentations.append(D.RandomHorizontalFlip())
        train_transform = D.Compose([*augmentations, normalize])
    return Data(
        train=train_set,
        val=val_set,
        test=test_set,
        classes=list(test_set.classes),
        shape=tuple(train_set.shape),
        mean=list(mean),
        std=list(std),
        train_transform=train_transform,
        eval_transform=normalize,
    )


# --- model and optimizer -----------------------------------------------------------------------------
def build_model(config: TrainConfig, shape: tuple[int, int, int], num_classes: int, load_pretrained=True):
    """The model of ``config`` for images of ``shape`` (C, H, W); with ``pretrained``, torchvision's
    ImageNet weights and a new, randomly initialised classifier for ``num_classes``."""
    channels, height, _ = shape
    options = dict(in_channels=channels, device=config.device, dtype=config.dtype)
    if "input_size" in inspect.signature(M.MODELS[config.model]).parameters:
        options["input_size"] = height  # LeNet-5 pads its first convolution to fit 28x28 or 32x32 images
    if config.pretrained and load_pretrained and not is_checkpoint(config.pretrained):
        try:
            model = load_torchvision_alexnet(config.pretrained, seed=config.seed, **options)
        except (OSError, KeyError, ValueError, ImportError) as e:
            raise ConfigError(f"cannot use the pretrained weights {config.pretrained}: {e}") from None
        model.replace_classifier(num_classes, seed=config.seed)
    else:
        try:
            model = M.build(config.model, num_classes=num_classes, seed=config.seed, **options)
        except ValueError as e:  # LeNet-5 takes 28x28 or 32x32 images only
            raise ConfigError(
                f"model {config.model} cannot take {config.dataset} images of shape {tuple(shape)} ({e}); "
                "resize them with --image-size 28 (image_size in TrainConfig) or choose another model"
            ) from None
    if config.pretrained and load_pretrained and is_checkpoint(config.pretrained):
        load_pretrained_checkpoint(model, config.pretrained)  # same architecture; a new class count: fresh fc
    if tuple(model.input_shape) != tuple(shape):
        raise ConfigError(
            f"model {config.model} takes images of shape {tuple(model.input_shape)}, but {config.dataset} "
            f"gives {tuple(shape)}; resize them with --image-size {model.input_shape[-1]} "
            "(image_size in TrainConfig) or choose another model"
        )
    return model


def make_optimizer(config: TrainConfig, model):
    """SGD over all parameters (or, with ``freeze``, over the classifier's only) and its schedule."""
    params = None
    if config.freeze:
        frozen = set(model.feature_param_names())
        params = [name for name in model.params if name not in frozen]
    optimizer = O.SGD(
        model,
        config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        params=params,
    )
    if config.schedule == "step":
        scheduler = O.StepLR(optimizer, config.step_size, config.gamma)
    elif config.schedule == "cosine":
        scheduler = O.CosineLR(optimizer, config.epochs, config.min_lr)
    else:
        scheduler = None
    return optimizer, scheduler


def dropout_layers(model) -> dict:
    """The stochastic layers (they count their random draws in ``rng_calls``), by name."""
    return {name: layer for name, layer in model.layers.items() if hasattr(layer, "rng_calls")}


# --- one epoch ---------------------------------------------------------------------------------------
def train_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    device: Device,
    dtype,
    *,
    epoch: int,
    progress: bool,
    world: parallel.World | None = None,
):
    """One pass over ``loader``; returns {"loss", "accuracy", "images_per_second"} (means over images).

    With several processes (``world``) every rank builds the whole batch (so augmentation draws are the
    ones one process makes), computes the forward and backward of its shard only, and one allreduce
    gives every rank the whole batch's gradient before the same SGD step (see :mod:`scratchnet.parallel`).

    Raises :class:`TrainingDiverged` as soon as a batch's loss is not finite, or when an update leaves a
    parameter that is not finite (checked after every update), or when the epoch's last update makes that
    batch's loss non-finite (no later batch would notice).
    """
    world = world or parallel.World()
    allreduce = parallel.GradientAllreduce(model, world) if world.size > 1 else None
    stochastic = dropout_layers(model).values()
    seen, correct, loss_sum = 0, 0, 0.0
    start = time.perf_counter()
    bar = tqdm(total=len(loader), desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    # A diverging run overflows inside the layers; the finiteness checks below report it in plain words,
    # so NumPy's overflow warnings would only be noise.
    with bar, np.errstate(over="ignore", invalid="ignore"):
        for batch, (images, labels) in enumerate(loader, start=1):
            shard = world.shard(len(labels))  # this rank's examples of the batch (all of them alone)
            for layer in stochastic:
                layer.first_example = shard.start  # dropout masks follow the example, not the rank
            x = device.array(images[shard], dtype=dtype)  # (B / N, C, H, W)
            y = device.array(labels[shard])  # (B / N,) int64
            logits = model.forward(x, training=True)  # (B / N, classes)
            loss = loss_fn.forward(logits, y) if len(y) else 0.0
            if len(y):
                model.backward(loss_fn.backward())
            shard_correct = topk_correct(logits, y, ks=(1,), device=device)[1] if len(y) else 0
            if allreduce is not None:
                allreduce(len(y), len(labels))
                loss_total, shard_correct = world.sum([loss * len(y), shard_correct])
                loss = float(loss_total) / len(labels)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss is {loss} in epoch {epoch}, batch {batch}")
            optimizer.step()
            if not parameters_finite(model):
                raise TrainingDiverged(f"the update of epoch {epoch}, batch {batch} made a parameter NaN/inf")
            correct += int(shard_correct)
            seen += len(labels)
            loss_sum += loss * len(labels)
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}")
        # No later batch checks the epoch's last update: recompute that batch's loss with the new weights
        # (every rank its shard, summed: all ranks must reach the same verdict).
        if seen:
            loss = loss_fn.forward(model.forward(x, training=False), y) if len(y) else 0.0
            if allreduce is not None:
                loss = float(world.sum([loss * len(y)])[0]) / len(labels)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the last update of epoch {epoch} (batch {batch}) made the loss {loss}"
                )
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / seen, "accuracy": correct / seen, "images_per_second": seen / seconds}


def parameters_finite(model) -> bool:
    """Whether every parameter is finite; one scalar comes back to the host whatever the device.

    max - min of an array is NaN or inf as soon as one element is (NaN propagates through both reductions,
    +inf through max, -inf through min), and no temporary array is made: cheap enough for every update.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf is NaN: the answer, not a warning
        spreads = [p.max() - p.min() for p in model.params.values() if p.size]
        return math.isfinite(float(sum(spreads)))


# --- the run: prepare, fit, finish -------------------------------------------------------------------
@dataclass
class Run:
    """A run in progress: what :func:`prepare` builds, :func:`fit` advances and :func:`finish` tests."""

    config: TrainConfig
    device: Device
    dtype: np.dtype
    data: Data
    model: object
    optimizer: O.SGD
    scheduler: object | None
    loss_fn: SoftmaxCrossEntropy
    loader: D.DataLoader
    run_dir: Path | None
    start: float  # time.perf_counter() when the run began
    world: parallel.World  # the processes sharing each batch (one, unless started by mpiexec)
    history: list[dict] = field(default_factory=list)  # one record per epoch, as in metrics.jsonl
    best: dict = field(default_factory=dict)  # {"metric", "value", "epoch"}
    bad_epochs: int = 0  # epochs in a row without a better validation accuracy
    first_epoch: int = 1
    saved_epoch: int = 0  # the epoch of the newest good checkpoint (0: none)
    saved_path: Path | None = None  # that checkpoint: the resumed one, then this run's last.npz
    stop_reason: str | None = None  # why fit() stopped before config.epochs, if it did


class StopCondition(Protocol):
    """Decides after each epoch whether to stop: returns the reason (logged) or None to go on."""

    def __call__(self, run: Run, record: dict) -> str | None: ...


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs in a row without a better validation accuracy."""

    patience: int

    def __call__(self, run: Run, record: dict) -> str | None:
        if run.bad_epochs < self.patience:
            return None
        where = f"; its weights are in {run.run_dir / BEST}" if run.run_dir is not None else ""
        return (
            f"early stopping: no better validation accuracy for {run.bad_epochs} epochs "
            f"(best {run.best['value']:.4f} after epoch {run.best['epoch']}{where}); testing the last weights"
        )


def prepare(config: TrainConfig, log: Callable[[str], None] = print) -> Run:
    """Everything a run needs before its first epoch: device, data, model, SGD, run folder, resumed state."""
    start = time.perf_counter()
    world = parallel.world()
    device = get_device(config.device)  # an unusable device fails here, before any work
    dtype = np.dtype(config.dtype)
    resumed = load_checkpoint(config.resume) if config.resume else None
    if config.out:
        world.on_root(lambda: _claim_run_dir(Path(config.out), config, resumed))
    data = load_data(config)
    model = build_model(config, data.shape, len(data.classes), load_pretrained=resumed is None)
    optimizer, scheduler = make_optimizer(config, model)
    loader = D.DataLoader(
        data.train,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        transform=data.train_transform,
        workers=config.workers,
    )
    run = Run(
        config=config,
        device=device,
        dtype=dtype,
        data=data,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=SoftmaxCrossEntropy(device=device, dtype=dtype),
        loader=loader,
        run_dir=Path(config.out) if config.out else None,
        start=start,
        world=world,
        best={
            "metric": "val_accuracy" if data.val is not None else "train_accuracy",
            "value": -1.0,
            "epoch": 0,
        },
    )
    if resumed is not None:
        _restore(resumed, model, optimizer, scheduler)
        run.history, run.best = resumed.meta["history"], resumed.meta["best"]
        run.bad_epochs = resumed.meta["bad_epochs"]
        run.saved_epoch, run.saved_path = resumed.meta["epoch"], resumed.path
        run.first_epoch = run.saved_epoch + 1
        log(f"resuming from {resumed.path} after epoch {resumed.meta['epoch']}")
        if run.run_dir is not None:
            world.on_root(lambda: _restore_best(run.run_dir, resumed, log))

    val_text = f", {len(data.val)} validation" if data.val is not None else ""
    log(
        f"{config.model} on {config.dataset}: {len(data.train)} training{val_text}, {len(data.test)} test "
        f"images of shape {data.shape}, {len(data.classes)} classes; device {device.name}, {dtype}"
    )
    if world.size > 1:
        log(f"data parallel: {world.size} processes, {parallel.blas_threads(world)} BLAS thread(s) each")
    if run.run_dir is not None:
        world.on_root(lambda: _write_json(run.run_dir / "config.json", dataclasses.asdict(config)))
        log(f"run folder: {run.run_dir}")
    return run


def fit(run: Run, stop: StopCondition | None = None, log: Callable[[str], None] = print) -> Run:
    """Train epochs ``run.first_epoch .. config.epochs``, or until ``stop`` gives a reason; returns ``run``.

    After each epoch: validate, step the schedule, log, write best.npz (when better), last.npz and
    metrics.jsonl, then ask ``stop``. Raises :class:`TrainingDiverged` (the last good checkpoint stays in
    the run folder) and re-raises ``KeyboardInterrupt`` after saying how to resume.
    """
    config, data, model, optimizer = run.config, run.data, run.model, run.optimizer
    show_bar = config.progress and sys.stderr.isatty()
    epoch = run.first_epoch
    try:
        for epoch in range(run.first_epoch, config.epochs + 1):
            lr = optimizer.lr
            run.loader.set_epoch(epoch)
            fitted = train_epoch(
                model,
                run.loader,
                run.loss_fn,
                optimizer,
                run.device,
                run.dtype,
                epoch=epoch,
                progress=show_bar,
                world=run.world,
            )
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": fitted["loss"],
                "train_accuracy": fitted["accuracy"],
                "images_per_second": fitted["images_per_second"],
            }
            if data.val is not None:
                val = evaluate(
                    model,
                    data.val,
                    transform=data.eval_transform,
                    batch_size=config.batch_size,
                    world=run.world,
                )
                if not math.isfinite(val.loss):  # finite weights whose logits overflow: diverged all the same
                    raise TrainingDiverged(f"the validation loss is {val.loss} after epoch {epoch}")
                record.update(val_loss=val.loss, val_accuracy=val.accuracy, val_top5=val.top5)
            run.history.append(record)
            if run.scheduler is not None:
                run.scheduler.step()
            improved = record[run.best["metric"]] > run.best["value"]
            if improved:
                run.best = {"metric": run.best["metric"], "value": record[run.best["metric"]], "epoch": epoch}
            run.bad_epochs = 0 if improved else run.bad_epochs + 1
            log(_epoch_line(record, config.epochs))
            if run.run_dir is not None:
                run.world.on_root(functools.partial(_save_epoch, run, epoch, improved))
            run.stop_reason = stop(run, record) if stop is not None else None
            if run.stop_reason is not None:
                log(run.stop_reason)
                break
    except TrainingDiverged as e:
        raise TrainingDiverged(
            f"training diverged: {e} (learning rate {optimizer.lr}). Try a smaller --lr (e.g. a tenth). "
            + _saved_text(run)
        ) from None
    except OSError as e:  # writing the run folder failed: full disk, folder made read-only, ...
        raise RunFolderError(f"cannot write the run folder {run.run_dir}: {e}. " + _saved_text(run)) from None
    except KeyboardInterrupt:
        log(f"\ninterrupted during epoch {epoch}. " + _saved_text(run))
        raise
    return run


def finish(run: Run, log: Callable[[str], None] = print) -> TrainResult:
    """Test the trained model, draw the run folder's pictures; the run's :class:`TrainResult`."""
    config, data = run.config, run.data
    test = evaluate(
        run.model,
        data.test,
        transform=data.eval_transform,
        batch_size=config.batch_size,
        confusion=True,
        world=run.world,
    )
    result = TrainResult(
        test_accuracy=test.accuracy,
        test_loss=test.loss,
        test_top5=test.top5,
        epochs=run.history[-1]["epoch"] if run.history else 0,
        seconds=time.perf_counter() - run.start,
        history=run.history,
        model=run.model,
        test=test,
        run_dir=run.run_dir,
        stopped_early=run.stop_reason is not None,
    )
    if run.run_dir is not None and config.plots:
        run.world.on_root(lambda: _write_plots(run.run_dir, result, data.classes))
    return result


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train (or, with ``config.resume``, continue) the run described by ``config``; test; return the result.

    Per-epoch lines go to ``log``. Raises :class:`TrainingDiverged` on a NaN/inf loss or parameter (the last
    good checkpoint stays in the run folder) and re-raises ``KeyboardInterrupt`` after saying how to resume.
    """
    if not parallel.world().is_root:
        log = _silent  # rank 0 alone speaks for a data-parallel run
    run = prepare(config, log)
    fit(run, EarlyStopping(config.early_stopping) if config.early_stopping else None, log)
    try:
        return finish(run, log)
    except KeyboardInterrupt:
        where = (
            f"the checkpoints are in {run.run_dir} ({LAST}, {BEST})" if run.run_dir else "nothing was saved"
        )
        log(
            f"\ninterrupted after training finished (epoch {run.saved_epoch or run.history[-1]['epoch']}), "
            f"during the test pass or the plots; {where}. Test them with: python -m scratchnet.evaluate "
            f"--checkpoint {run.run_dir or 'RUN'}"
        )
        raise


def _silent(line: str) -> None:
    pass


def resume_config(path: str | Path, **overrides) -> TrainConfig:
    """The configuration stored in the checkpoint at ``path``, set to resume from it.

    Only the fields in ``RESUME_OVERRIDES`` (epochs, device, progress, plots, out) may be changed; by
    default the run folder is the checkpoint's own folder, so the resumed run keeps writing there.
    """
    not_allowed = set(overrides) - set(RESUME_OVERRIDES)
    if not_allowed:
        raise ValueError(
            f"a resumed run keeps its configuration; only {', '.join(RESUME_OVERRIDES)} can change, "
            f"not {', '.join(sorted(not_allowed))}"
        )
    checkpoint = load_checkpoint(path)
    require_meta(checkpoint, *RESUME_META)
    stored = checkpoint.meta["config"]
    unknown = set(stored) - set(TrainConfig.__dataclass_fields__) if isinstance(stored, dict) else {"?"}
    if unknown:
        raise CheckpointError(
            f"{checkpoint.path} is a damaged checkpoint: unknown config keys {sorted(unknown)}"
        )
    stored.update(resume=str(checkpoint.path), out=str(checkpoint.path.parent))
    stored.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**stored)


# --- checkpoint and run-folder helpers ---------------------------------------------------------------
def _checkpoint(run: Run, epoch: int) -> Checkpoint:
    model, data = run.model, run.data
    meta = {
        "epoch": epoch,
        "config": dataclasses.asdict(run.config),
        "model_config": model.config,
        "classes": data.classes,
        "input_shape": list(data.shape),
        "normalization": {"mean": data.mean, "std": data.std},
        "dropout_rng_calls": {name: layer.rng_calls for name, layer in dropout_layers(model).items()},
        "history": run.history,
        "best": run.best,
        "bad_epochs": run.bad_epochs,
    }
    return Checkpoint(
        params=model.state_dict(),
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
        meta=meta,
    )


def _restore(checkpoint: Checkpoint, model, optimizer, scheduler) -> None:
    """Put the checkpoint's weights, SGD and schedule state and dropout counters into the new run."""
    require_meta(checkpoint, *RESUME_META)
    stored = checkpoint.meta["model_config"]
    if stored != json.loads(json.dumps(model.config)):  # compare as stored: JSON turns tuples into lists
        raise CheckpointError(
            f"{checkpoint.path} holds a model {stored}, but this run builds {model.config}; "
            "resume with the same model and dataset"
        )
    try:
        model.load_state_dict(checkpoint.params)
        optimizer.load_state_dict(checkpoint.optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint.scheduler)
        for name, layer in dropout_layers(model).items():
            layer.rng_calls = int(checkpoint.meta["dropout_rng_calls"][name])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint.path} is a damaged checkpoint: {e}") from None
    if not parameters_finite(model):
        raise CheckpointError(f"{checkpoint.path} holds NaN/inf parameters (a diverged run): cannot resume")


def _save_epoch(run: Run, epoch: int, improved: bool) -> None:
    """Write the end of ``epoch`` into the run folder: best.npz (when better), last.npz, metrics.jsonl."""
    checkpoint = _checkpoint(run, epoch)
    if improved:
        save_checkpoint(run.run_dir / BEST, checkpoint)
    save_checkpoint(run.run_dir / LAST, checkpoint)
    run.saved_epoch, run.saved_path = epoch, run.run_dir / LAST
    _write_metrics(run.run_dir / "metrics.jsonl", run.history)


def _saved_text(run: Run) -> str:
    """Which checkpoint to continue from, and the command that does it (or why there is none)."""
    if run.saved_path is None:
        if run.run_dir is None:
            return "Nothing was saved (no run folder: give --out DIR to keep checkpoints)."
        return "No checkpoint was written yet, so there is none to resume from."
    out = f" --out {run.run_dir}" if run.run_dir is not None and run.saved_path.parent != run.run_dir else ""
    return (
        f"The last good checkpoint (end of epoch {run.saved_epoch}) is {run.saved_path}; continue with: "
        f"python -m scratchnet.train --resume {run.saved_path}{out}"
    )


def _claim_run_dir(run_dir: Path, config: TrainConfig, resumed: Checkpoint | None) -> None:
    """Create the run folder, or check that this run may write into the existing one.

    A new run refuses a non-empty folder unless ``config.overwrite``; a resumed run writes into its own
    checkpoint's folder. Leftover temporary files of crashed writers are removed first.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} is a file; give --out a folder path")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_orphans(run_dir)
        probe = temp_path(run_dir / "write-test")
        probe.touch()
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise RunFolderError(f"cannot create run folder {run_dir}: a part of that path is a file") from None
    except OSError as e:
        hint = "give a writable --out for the continued run" if resumed else "give --out a writable folder"
        raise RunFolderError(f"cannot write into run folder {run_dir} ({e.strerror}); {hint}") from None
    own_folder = resumed is not None and resumed.path.parent.resolve() == run_dir.resolve()
    if any(run_dir.iterdir()) and not own_folder and not config.overwrite:
        raise RunFolderError(
            f"run folder {run_dir} is not empty (it holds another run); choose a new --out, continue that "
            f"run with --resume {run_dir}, or replace it with --overwrite"
        )


def _restore_best(run_dir: Path, resumed: Checkpoint, log: Callable[[str], None]) -> None:
    """Re-create best.npz when it is missing but the resumed checkpoint is the best epoch itself."""
    best_path = run_dir / BEST
    if best_path.exists() or resumed.meta["best"]["epoch"] != resumed.meta["epoch"]:
        return
    save_checkpoint(best_path, resumed)
    log(f"re-created {best_path} from {resumed.path} (the best epoch, {resumed.meta['epoch']})")


def _epoch_line(record: dict, epochs: int) -> str:
    line = (
        f"epoch {record['epoch']:>3}/{epochs}  lr {record['lr']:.2e}  "
        f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"
    )
    if "val_accuracy" in record:
        line += f"  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
    return line + f"  {record['images_per_second']:.0f} img/s"


def _write_json(path: Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def _write_metrics(path: Path, history: list[dict]) -> None:
    """One JSON line per epoch; a value that is not finite is written as null (strict JSON has no NaN).

    Rewritten whole from the history (which checkpoints carry), so a resumed run never duplicates lines.
    """
    lines = [{k: v if _finite_or_not_float(v) else None for k, v in record.items()} for record in history]
    atomic_write_text(path, "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))


def _finite_or_not_float(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _write_plots(run_dir: Path, result: TrainResult, classes: list[str]) -> None:
    plots.plot_curves(result.history, run_dir / "curves.png")
    plots.plot_confusion(result.test.confusion, classes, run_dir / "confusion.png")
    first_conv = next(
        (p for name, p in result.model.params.items() if name.endswith(".W") and p.ndim == 4), None
    )
    if first_conv is not None:
        plots.plot_filters(result.model.device.to_host(first_conv), run_dir / "filters.png")


# --- the command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()  # the defaults, shown in --help
    p = ArgumentParser(
        prog="python -m scratchnet.train",
        description="Train a CNN from scratch. With no arguments: LeNet-5 on the bundled mini Fashion-MNIST, "
        "on the CPU, in about a minute.",
        epilog="The last line printed is 'final test_accuracy=... test_loss=... epochs=... seconds=...'.",
    )
    # Defaults are None here so that --resume can tell which flags were given; TrainConfig fills the rest.
    p.add_argument("--model", choices=M.MODELS, help=f"architecture (default {d.model})")
    p.add_argument("--dataset", choices=D.DATASETS, help=f"dataset (default {d.dataset}, bundled)")
    p.add_argument("--data-dir", help="folder holding the dataset files (or the image folder)")
    p.add_argument("--image-size", type=int, help="resize images to this side (default: as stored)")
    p.add_argument("--epochs", type=int, help=f"number of epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, help=f"images per SGD step (default {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"learning rate (default {d.lr})")
    p.add_argument("--momentum", type=float, help=f"SGD momentum (default {d.momentum})")
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    p.add_argument("--weight-decay", type=float, help=f"L2 weight decay (default {d.weight_decay})")
    p.add_argument("--schedule", choices=SCHEDULES, help=f"learning-rate schedule (default {d.schedule})")
    p.add_argument("--step-size", type=int, help=f"step schedule: epochs per decay (default {d.step_size})")
    p.add_argument("--gamma", type=float, help=f"step schedule: decay factor (default {d.gamma})")
    p.add_argument("--min-lr", type=float, help=f"cosine schedule: final learning rate (default {d.min_lr})")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--device", choices=DEVICE_NAMES, help="cpu (NumPy), gpu (CUDA kernels), sim (simulated)")
    p.add_argument("--dtype", choices=DTYPES, help=f"floating-point type (default {d.dtype})")
    p.add_argument("--limit-train", type=int, metavar="N", help="use only N training images")
    p.add_argument("--limit-test", type=int, metavar="M", help="use only M test images")
    p.add_argument("--val-fraction", type=float, help=f"validation share (default {d.val_fraction})")
    p.add_argument("--augment", action="store_true", default=None, help="random crops and flips")
    p.add_argument("--early-stopping", type=int, metavar="N", help="stop after N epochs without improvement")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<time>-<model>-<dataset>)")
    p.add_argument(
        "--overwrite", action="store_true", default=None, help="allow a new run in a non-empty run folder"
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="PATH",
        help="continue from a checkpoint file or run folder (default: the --out folder)",
    )
    p.add_argument(
        "--pretrained",
        metavar="PATH",
        help=f"start from a checkpoint or run folder of the same model, or torchvision AlexNet weights "
        f"(model {PRETRAINED_MODEL})",
    )
    p.add_argument("--classes", metavar="IDS", help="keep only these classes, e.g. 0-4 or 0,2,7")
    p.add_argument("--freeze", action="store_true", default=None, help="train only the classifier")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG files of the run folder")
    p.add_argument("--no-download", action="store_true", help="never download; fail if files are missing")
    p.add_argument(
        "--workers", type=int, metavar="N", help="processes preparing training batches (default 0: none)"
    )
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="data parallelism: train with N processes on this machine (starts mpiexec -n N for you)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the command line asks for (for ``--resume``: the stored one).

    Raises ``ValueError`` (``CheckpointError`` included) naming the problem.
    """
    given = {
        name: value
        for name, value in vars(args).items()
        if value is not None and name in TrainConfig.__dataclass_fields__
    }
    given.pop("resume", None)
    given["progress"] = not args.no_progress
    given["plots"] = not args.no_plots
    if args.no_download:
        given["download"] = False
    if args.resume is not None:
        path = args.resume or args.out
        if not path:
            raise CheckpointError("--resume needs a checkpoint file or run folder (or --out DIR)")
        overrides = {k: given.pop(k) for k in RESUME_OVERRIDES if k in given}
        given.pop("download", None)
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given))
            raise ValueError(f"a resumed run keeps its configuration; {flags} cannot be changed")
        return resume_config(path, **overrides)
    if args.pretrained and "model" not in given and not is_checkpoint(args.pretrained):
        given["model"] = PRETRAINED_MODEL
    config = TrainConfig(**given)
    if config.out is None:
        config.out = str(
            new_run_dir(Path("runs"), f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model}-{config.dataset}")
        )
    return config


def new_run_dir(parent: Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``name-2``, ``name-3``, ... when taken: unique even for runs
    started in the same second, because ``mkdir`` either creates the folder or fails, atomically."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        path = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunFolderError(f"no free run folder name {name}-N in {parent}; give --out")


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (see ``scratchnet.errors``: 0, 1 diverged, 2, 130)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.processes is not None and args.processes < 1:
        return fail(f"--processes must be >= 1, got {args.processes}")
    if args.processes is not None and args.processes > 1 and not parallel.launched_by_mpi():
        return _launch_processes(args.processes, argv)
    world = parallel.world()
    try:
        code = _main(args)
    except Exception:
        if world.size > 1:  # an error on this rank alone: the others would wait for it forever
            sys.stderr.write(traceback.format_exc())  # in one write, so it reaches mpiexec whole
            world.abort(1)
        raise
    if code != 0 and world.size > 1:
        world.abort(code)  # whether or not the other ranks failed too, none may be left waiting
    return code


def _launch_processes(processes: int, argv: list[str]) -> int:
    """``--processes N``: start N ranks of this same command under mpiexec (without the flag)."""
    rest, skip = [], False
    for arg in argv:
        if skip or arg == "--processes":
            skip = not skip and arg == "--processes"
            continue
        if not arg.startswith("--processes="):
            rest.append(arg)
    try:
        return parallel.launch(processes, "scratchnet.train", rest)
    except parallel.ParallelError as e:
        return fail(e)


def _main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        result = train(config)
    except TrainingDiverged as e:
        return _fail(e, 1)
    except (ValueError, RunFolderError, DeviceError, DatasetError, OSError, parallel.ParallelError) as e:
        # ValueError: ConfigError and CheckpointError; OSError: a file or folder the system refused
        return _fail(e)
    except KeyboardInterrupt:
        return 130
    if parallel.world().is_root:
        print(result.final_line())
    return 0


def _fail(error: Exception, code: int = 2) -> int:
    """:func:`fail` from rank 0 alone: with several processes, every rank has the same error."""
    return fail(error, code) if parallel.world().is_root else code


if __name__ == "__main__":
    sys.exit(main())
