"""What defines a training run: :class:`TrainConfig` (every value checked when it is made), what a run
returns (:class:`TrainResult`), the errors a run reports, and the configuration stored in a checkpoint
(:func:`resume_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import scratchnet.data as D
import scratchnet.models as M
import scratchnet.optim as O
from scratchnet.checkpoint import CheckpointError, load_checkpoint, require_meta
from scratchnet.device import DEVICE_NAMES
from scratchnet.evaluate import Evaluation
from scratchnet.transfer import is_checkpoint

SCHEDULES = ("none", "step", "cosine")
DTYPES = ("float32", "float64")
MAX_IMAGE_SIZE = 1024  # pixels a side: 1024 x 1024 x 3 float32 is 12 MB an image, already a lot for NumPy
PRETRAINED_MODEL = "alexnet-torchvision"  # the architecture torchvision's AlexNet weights fit
# What a resumed run may change; everything else comes from the checkpoint, so the run stays the same run.
RESUME_OVERRIDES = ("epochs", "device", "progress", "plots", "out", "workers", "overwrite", "data_dir")
# What a checkpoint's meta must hold to continue a run from it.
RESUME_META = ("epoch", "config", "model_config", "dropout_rng_calls", "history", "best", "bad_epochs")


class ConfigError(ValueError):
    """A configuration that cannot work (bad value, or a model that does not fit the dataset)."""


class TrainingDiverged(RuntimeError):
    """The loss or a parameter became NaN or infinite; the message says where and what to try."""


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
    sync_bn: bool = False  # data parallelism: BatchNorm statistics over the whole batch, every rank's shard

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
                not self.sync_bn or self.device == "cpu",
                f"sync_bn (--sync-bn) runs on the cpu device only, got device {self.device!r}",
            ),
            (
                self.image_size is None or self.image_size <= MAX_IMAGE_SIZE,
                f"image_size must be at most {MAX_IMAGE_SIZE}, got {self.image_size!r}",
            ),
            (
                self.out is None or bool(str(self.out).strip()),
                "out (--out) must name a run folder, not an empty string (None: write nothing)",
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
            f"epochs={self.epochs} seconds={self.seconds:.1f}"
        )
        if len(self.test.confusion) > 5:  # with 5 classes or fewer top-5 is always right: not worth a word
            line += f" top5={self.test_top5:.4f}"
        return line + (f" run_dir={self.run_dir}" if self.run_dir else "")


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
