"""``python -m scratchnet.train``: the command line over :func:`scratchnet.train.train`.

Its flags are :class:`~scratchnet.train.TrainConfig`'s fields; ``--resume`` continues a stored run,
``--processes N`` starts N data-parallel ranks under ``mpiexec``. Exit codes as in :mod:`scratchnet.errors`
(0, 1 diverged, 2 bad input, 130 interrupted); the last line printed is the run's summary.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import scratchnet.data as D
import scratchnet.models as M
from scratchnet import parallel, run_folder
from scratchnet._memory import keep_freed_memory
from scratchnet.checkpoint import BEST, LAST, CheckpointError
from scratchnet.device import DEVICE_NAMES
from scratchnet.errors import ArgumentParser, DatasetError, DeviceError, fail, parse_args
from scratchnet.run_folder import RunFolderError
from scratchnet.train.config import (
    DTYPES,
    PRETRAINED_MODEL,
    RESUME_OVERRIDES,
    SCHEDULES,
    TrainConfig,
    TrainingDiverged,
    resume_config,
)
from scratchnet.train.data_parallel import InterruptedTogether
from scratchnet.train.loop import train
from scratchnet.transfer import check_pretrained_path, is_checkpoint


# --- the command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()  # the defaults, shown in --help
    p = ArgumentParser(
        prog="python -m scratchnet.train",
        description="Train a CNN from scratch. With no arguments: LeNet-5 on the bundled mini Fashion-MNIST, "
        "on the CPU, in well under a minute on an idle 2-core machine (several minutes under load).",
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
        help=f"continue from a checkpoint .npz or run folder (uses its {LAST}); default: the --out folder",
    )
    p.add_argument(
        "--pretrained",
        metavar="PATH",
        help=f"start from a checkpoint .npz or run folder (uses its {BEST}, else {LAST}) of the same model, "
        f"or torchvision AlexNet weights (model {PRETRAINED_MODEL})",
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
    p.add_argument(
        "--sync-bn",
        action="store_true",
        default=None,
        help="with --processes: BatchNorm statistics over the whole batch, as PyTorch's SyncBatchNorm (cpu)",
    )
    p.add_argument(
        "--oversubscribe",
        action="store_true",
        help="allow more processes on a machine than it has cores (slower; for tests)",
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
    for name in ("data_dir", "pretrained"):  # stored absolute: a resume from another folder finds them
        if given.get(name):
            given[name] = str(Path(given[name]).resolve())
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
    if args.pretrained:
        check_pretrained_path(args.pretrained)  # a missing or broken file is not "torchvision's weights"
    if args.pretrained and "model" not in given and not is_checkpoint(args.pretrained):
        given["model"] = PRETRAINED_MODEL
    config = TrainConfig(**given)
    if config.out is None:  # one default name for all ranks of a data-parallel run, made by rank 0
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.model}-{config.dataset}"
        config.out = str(parallel.world().on_root(lambda: new_run_dir(Path("runs"), name)))
    return config


def new_run_dir(parent: Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``name-2``, ``name-3``, ... when taken: unique even for runs
    started in the same second, because ``mkdir`` either creates the folder or fails, atomically."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        path = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()
            run_folder.created(path)  # a run that fails to start removes it again
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
    keep_freed_memory()  # each step reuses the last one's memory instead of faulting in fresh pages
    if args.processes is not None and args.processes < 1:
        return fail(f"--processes must be >= 1, got {args.processes}")
    try:
        if args.processes is not None and args.processes > 1 and not parallel.launched_by_mpi():
            parallel.check_cores(args.processes, args.oversubscribe)
            return _launch_processes(args.processes, argv)
        world = parallel.world()
        parallel.check_world_cores(world, args.oversubscribe)
    except parallel.ParallelError as e:
        return fail(e)
    try:
        code = _main(args)
    except InterruptedTogether:  # every rank stopped at the same step: none waits for another, so no
        return 130  # abort, which could cut rank 0's last words (how to resume) short
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
        parallel.check_started_alike(parallel.world(), vars(args))  # before any other collective
        config = config_from_args(args)
        result = train(config)
    except TrainingDiverged as e:
        return _fail(e, 1)
    except (ValueError, RunFolderError, DeviceError, DatasetError, OSError, parallel.ParallelError) as e:
        # ValueError: ConfigError and CheckpointError; OSError: a file or folder the system refused
        return _fail(e)
    except MemoryError as e:  # sizes no check foresaw (a huge dataset, a batch too large for this machine)
        return _fail(f"not enough memory: {e or 'an allocation failed'}; try smaller images or batches")
    except InterruptedTogether:
        raise
    except KeyboardInterrupt:
        return 130
    if parallel.world().is_root:
        print(result.final_line())
    return 0


def _fail(error: Exception | str, code: int = 2) -> int:
    """:func:`fail` from rank 0; another rank waits a second first and names itself. Most errors strike
    every rank alike, and then rank 0's abort (half a second) ends the others before they speak; an error
    of one rank alone (its data missing) is still told."""
    world = parallel.world()
    if world.is_root:
        return fail(error, code)
    time.sleep(1.0)
    return fail(f"rank {world.rank}: {error}", code)
