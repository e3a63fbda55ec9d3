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

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from scratchnet import plots, run_folder
from scratchnet._paths import atomic_write_text
from scratchnet.checkpoint import BEST, LAST, Checkpoint, save_checkpoint
from scratchnet.device import Device
from scratchnet.errors import DatasetError
from scratchnet.layers.loss import topk_correct
from scratchnet.run_folder import RunFolderError
from scratchnet.train.config import TrainConfig, TrainingDiverged, TrainResult
from scratchnet.train.data_parallel import DataParallel, this_process
from scratchnet.train.preparation import Run, dropout_layers, parameters_finite, prepare


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
    sharing: DataParallel | None = None,
):
    """One pass over ``loader``; returns {"loss", "accuracy", "images_per_second"} (means over images).

    With several processes (``sharing``, see :mod:`scratchnet.train.data_parallel`) this process computes
    the forward and backward of its shard of each batch, and the SGD step uses the whole batch's gradient.
    Its own parts (``sharing.own_part``) are those a Ctrl-C in a simulated kernel may stop on it alone.

    Raises :class:`TrainingDiverged` as soon as a batch's loss is not finite, or when an update leaves a
    parameter that is not finite (checked after every update), or when the epoch's last update makes that
    batch's loss non-finite (no later batch would notice).
    """
    sharing = sharing or DataParallel()
    stochastic = dropout_layers(model).values()
    seen, correct, loss_sum = 0, 0, 0.0
    start = time.perf_counter()
    bar = tqdm(total=len(loader), desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    # A diverging run overflows inside the layers; the finiteness checks below report it in plain words,
    # so NumPy's overflow warnings would only be noise.
    with bar, np.errstate(over="ignore", invalid="ignore"):
        for batch, (images, labels) in enumerate(loader, start=1):
            shard = sharing.shard(len(labels))  # this process's examples of the batch (all of them alone)
            for layer in stochastic:
                layer.shard_from(shard.start)  # dropout masks follow the example, not the process
            x = device.array(images[shard], dtype=dtype)  # (B / N, C, H, W)
            y = device.array(labels[shard])  # (B / N,) int64
            step = functools.partial(_forward_backward, model, loss_fn, x, y, device)
            takes_part = len(y) or sharing.syncs_batchnorm  # synchronised BatchNorm sums over every shard
            loss, shard_correct = sharing.own_part(step, instead=(0.0, 0)) if takes_part else (0.0, 0)
            loss, shard_correct = sharing.combine_step(model, loss, shard_correct, len(y), len(labels))
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss is {loss} in epoch {epoch}, batch {batch}")
            if not sharing.own_part(functools.partial(_update, optimizer, model), instead=True):
                raise TrainingDiverged(f"the update of epoch {epoch}, batch {batch} made a parameter NaN/inf")
            correct += int(shard_correct)
            seen += len(labels)
            loss_sum += loss * len(labels)
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", img_s=f"{rate:.0f}")
        # No later batch checks the epoch's last update: recompute that batch's loss with the new weights
        # (every process its shard, summed: all of them must reach the same verdict).
        if seen:
            last_loss = functools.partial(_loss, model, loss_fn, x, y)
            loss = sharing.own_part(last_loss, instead=0.0) if len(y) else 0.0
            loss = sharing.batch_loss(loss, len(y), len(labels))
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the last update of epoch {epoch} (batch {batch}) made the loss {loss}"
                )
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / seen, "accuracy": correct / seen, "images_per_second": seen / seconds}


def _forward_backward(model, loss_fn, x, y, device) -> tuple[float, int]:
    """The forward and backward passes of a (shard of a) batch: its mean loss and its correct count. An
    empty shard has no loss, but still runs both passes when synchronised BatchNorm sums over every shard."""
    logits = model.forward(x, training=True)  # (B / N, classes)
    if not len(y):
        model.backward(device.zeros(logits.shape, logits.dtype))
        return 0.0, 0
    loss = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward())  # fills model.grads
    return loss, topk_correct(logits, y, ks=(1,), device=device)[1]


def _update(optimizer, model) -> bool:
    """The SGD step; whether every parameter is still finite."""
    optimizer.step()
    return parameters_finite(model)


def _loss(model, loss_fn, x, y) -> float:
    return loss_fn.forward(model.forward(x, training=False), y)


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
                sharing=run.sharing,
            )
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": fitted["loss"],
                "train_accuracy": fitted["accuracy"],
                "images_per_second": fitted["images_per_second"],
            }
            if data.val is not None:
                val = run.sharing.evaluate(
                    model, data.val, transform=data.eval_transform, batch_size=config.batch_size
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
                run.sharing.on_writer(functools.partial(_save_epoch, run, epoch, improved))
            run.sharing.stop_if_interrupted()  # a Ctrl-C during the validation or the saving
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
    except DatasetError as e:  # a file that went bad during the run, a loader worker that was killed
        raise DatasetError(f"{e}. " + _saved_text(run)) from None
    except KeyboardInterrupt:
        log(f"\ninterrupted during epoch {epoch}. " + _saved_text(run))
        raise
    return run


def finish(run: Run, log: Callable[[str], None] = print) -> TrainResult:
    """Test the trained model, draw the run folder's pictures; the run's :class:`TrainResult`."""
    config, data = run.config, run.data
    test = run.sharing.evaluate(
        run.model, data.test, transform=data.eval_transform, batch_size=config.batch_size, confusion=True
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
        try:
            run.sharing.on_writer(lambda: _write_plots(run.run_dir, result, data.classes))
        except (OSError, ValueError) as e:  # a full disk, a name Matplotlib refuses: the run itself is kept
            log(f"warning: the pictures of {run.run_dir} were not all drawn ({e}); its checkpoints are saved")
    run.sharing.stop_if_interrupted()  # a Ctrl-C during the test pass or the pictures
    return result


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train (or, with ``config.resume``, continue) the run described by ``config``; test; return the result.

    Per-epoch lines go to ``log``. Raises :class:`TrainingDiverged` on a NaN/inf loss or parameter (the last
    good checkpoint stays in the run folder) and re-raises ``KeyboardInterrupt`` after saying how to resume.
    """
    sharing = this_process()
    if not sharing.writes:
        log = _silent  # one process speaks for a data-parallel run
    try:
        run = prepare(config, log, sharing)
        with sharing.stopping_together():  # several processes stop on Ctrl-C at the same step
            fit(run, EarlyStopping(config.early_stopping) if config.early_stopping else None, log)
            return _finish_or_say_where(run, log)
    finally:
        run_folder.release(config.out)  # the lock prepare() took: another run may use the folder now


def _finish_or_say_where(run: Run, log: Callable[[str], None]) -> TrainResult:
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


def _epoch_line(record: dict, epochs: int) -> str:
    line = (
        f"epoch {record['epoch']:>3}/{epochs}  lr {record['lr']:.2e}  "
        f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"
    )
    if "val_accuracy" in record:
        line += f"  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
    return line + f"  {record['images_per_second']:.0f} img/s"


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
