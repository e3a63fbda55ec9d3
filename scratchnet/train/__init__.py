"""Training: the loop that turns a model, a dataset and SGD into a trained network.

One module per concern, read in this order:

* :mod:`.config`: :class:`TrainConfig` (everything that defines a run, checked when made),
  :class:`TrainResult`, the errors, and :func:`resume_config` (the configuration stored in a checkpoint);
* :mod:`.preparation`: :func:`prepare` (device, data, model, SGD, run folder, resumed state) -> :class:`Run`;
* :mod:`.loop`: :func:`train_epoch`, :func:`fit` (the epochs), :func:`finish` (the test pass and the
  pictures), and :func:`train`, which chains prepare, fit and finish;
* :mod:`.data_parallel`: :class:`DataParallel`, the one interface through which processes share a run;
* :mod:`.cli`: ``python -m scratchnet.train``.

Notebooks call :func:`train` with a :class:`TrainConfig`; every name below is importable from here.
"""

from scratchnet.run_folder import RunFolderError
from scratchnet.train.cli import build_parser, config_from_args, main, new_run_dir
from scratchnet.train.config import (
    DTYPES,
    PRETRAINED_MODEL,
    RESUME_META,
    RESUME_OVERRIDES,
    SCHEDULES,
    ConfigError,
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    resume_config,
)
from scratchnet.train.data_parallel import DataParallel
from scratchnet.train.loop import EarlyStopping, StopCondition, finish, fit, train, train_epoch
from scratchnet.train.preparation import (
    Data,
    Run,
    build_model,
    dropout_layers,
    load_data,
    make_optimizer,
    parameters_finite,
    prepare,
)

__all__ = [
    "DTYPES",
    "PRETRAINED_MODEL",
    "RESUME_META",
    "RESUME_OVERRIDES",
    "SCHEDULES",
    "ConfigError",
    "Data",
    "DataParallel",
    "EarlyStopping",
    "Run",
    "RunFolderError",
    "StopCondition",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "build_model",
    "build_parser",
    "config_from_args",
    "dropout_layers",
    "finish",
    "fit",
    "load_data",
    "main",
    "make_optimizer",
    "new_run_dir",
    "parameters_finite",
    "prepare",
    "resume_config",
    "train",
    "train_epoch",
]
