"""Everything a run needs before its first epoch (:func:`prepare`): the data splits and their transforms,
the model, SGD and its schedule, the run folder, and the state of a resumed run."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import scratchnet.data as D
import scratchnet.models as M
import scratchnet.optim as O
from scratchnet import parallel, run_folder
from scratchnet._paths import atomic_write_text
from scratchnet.checkpoint import (
    BEST,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    require_meta,
    save_checkpoint,
)
from scratchnet.data.classes import select_classes
from scratchnet.device import Device
from scratchnet.layers import Dropout, SoftmaxCrossEntropy
from scratchnet.pretrained import IMAGENET_MEAN, IMAGENET_STD, load_torchvision_alexnet
from scratchnet.train.config import RESUME_META, ConfigError, TrainConfig
from scratchnet.train.data_parallel import DataParallel, this_process
from scratchnet.transfer import is_checkpoint, pretrained_checkpoint_path
from scratchnet.transfer import load_pretrained as load_pretrained_checkpoint


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


# --- data ---------------------------------------------------------------------------------------------------
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


# --- model and optimizer ------------------------------------------------------------------------------------
def build_model(
    config: TrainConfig,
    shape: tuple[int, int, int],
    num_classes: int,
    load_pretrained=True,
    log: Callable[[str], None] = lambda line: None,
):
    """The model of ``config`` for images of ``shape`` (C, H, W); with ``pretrained``, torchvision's
    ImageNet weights and a new, randomly initialised classifier for ``num_classes``, or a checkpoint's
    weights (``log`` says which file, and which layers start fresh)."""
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
        log(f"pretrained: torchvision's AlexNet weights from {config.pretrained}; a new classifier")
    else:
        try:
            model = M.build(config.model, num_classes=num_classes, seed=config.seed, **options)
        except ValueError as e:  # LeNet-5 takes 28x28 or 32x32 images only
            raise ConfigError(
                f"model {config.model} cannot take {config.dataset} images of shape {tuple(shape)} ({e}); "
                "resize them with --image-size 28 (image_size in TrainConfig) or choose another model"
            ) from None
    if config.pretrained and load_pretrained and is_checkpoint(config.pretrained):
        fresh = load_pretrained_checkpoint(model, config.pretrained)  # a new class count: a fresh last layer
        kept = f"every layer but {', '.join(fresh)} (new classes)" if fresh else "every layer"
        log(f"pretrained: {kept} from {pretrained_checkpoint_path(config.pretrained)}")
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
    """The Dropout layers (each counts its random draws in ``rng_calls``), by name."""
    return {name: layer for name, layer in model.layers.items() if isinstance(layer, Dropout)}


def parameters_finite(model) -> bool:
    """Whether every parameter is finite; one scalar comes back to the host whatever the device.

    max - min of an array is NaN or inf as soon as one element is (NaN propagates through both reductions,
    +inf through max, -inf through min), and no temporary array is made: cheap enough for every update.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf is NaN: the answer, not a warning
        spreads = [p.max() - p.min() for p in model.params.values() if p.size]
        return math.isfinite(float(sum(spreads)))


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
    sharing: DataParallel  # the processes sharing each batch (one, unless started by mpiexec)
    history: list[dict] = field(default_factory=list)  # one record per epoch, as in metrics.jsonl
    best: dict = field(default_factory=dict)  # {"metric", "value", "epoch"}
    bad_epochs: int = 0  # epochs in a row without a better validation accuracy
    first_epoch: int = 1
    saved_epoch: int = 0  # the epoch of the newest good checkpoint (0: none)
    saved_path: Path | None = None  # that checkpoint: the resumed one, then this run's last.npz
    stop_reason: str | None = None  # why fit() stopped before config.epochs, if it did


def prepare(
    config: TrainConfig, log: Callable[[str], None] = print, sharing: DataParallel | None = None
) -> Run:
    """Everything a run needs before its first epoch: device, data, model, SGD, run folder, resumed state.

    ``sharing``: the processes of the run (default: this process's, see :func:`this_process`)."""
    start = time.perf_counter()
    sharing = sharing or this_process()
    device = sharing.device(config.device)  # an unusable device fails here, before any work
    dtype = np.dtype(config.dtype)
    resumed = load_checkpoint(config.resume) if config.resume else None
    if config.out:
        claim = functools.partial(
            run_folder.claim, config.out, overwrite=config.overwrite, resumed_from=resumed and resumed.path
        )
        sharing.on_writer(claim)  # locks the folder for this run; train() releases it at the end
    data = load_data(config)
    model = build_model(config, data.shape, len(data.classes), load_pretrained=resumed is None, log=log)
    if config.sync_bn:
        sharing.sync_batchnorm(model)
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
        sharing=sharing,
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
            sharing.on_writer(lambda: _restore_best(run.run_dir, resumed, log))

    val_text = f", {len(data.val)} validation" if data.val is not None else ""
    log(
        f"{config.model} on {config.dataset}: {len(data.train)} training{val_text}, {len(data.test)} test "
        f"images of shape {data.shape}, {len(data.classes)} classes; device {device.name}, {dtype}"
    )
    world = sharing.world
    if world.size > 1:
        log(f"data parallel: {world.size} processes, {parallel.blas_threads(world)} BLAS thread(s) each")
    if config.freeze:
        log(f"frozen: only the classifier is trained ({', '.join(optimizer.keys)})")
    if run.run_dir is not None:
        sharing.on_writer(lambda: _write_json(run.run_dir / "config.json", dataclasses.asdict(config)))
        log(f"run folder: {run.run_dir}")
    return run


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
            layer.rewind(int(checkpoint.meta["dropout_rng_calls"][name]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint.path} is a damaged checkpoint: {e}") from None
    if not parameters_finite(model):
        raise CheckpointError(f"{checkpoint.path} holds NaN/inf parameters (a diverged run): cannot resume")


def _restore_best(run_dir: Path, resumed: Checkpoint, log: Callable[[str], None]) -> None:
    """Re-create best.npz when it is missing but the resumed checkpoint is the best epoch itself."""
    best_path = run_dir / BEST
    if best_path.exists() or resumed.meta["best"]["epoch"] != resumed.meta["epoch"]:
        return
    save_checkpoint(best_path, resumed)
    log(f"re-created {best_path} from {resumed.path} (the best epoch, {resumed.meta['epoch']})")


def _write_json(path: Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")
