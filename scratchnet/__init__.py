"""scratchnet: convolutional networks from scratch, from LeNet-5 (1998) to AlexNet (2012).

NumPy layers with hand-written forward and backward passes, the same layers as CUDA kernels, and a
CUDA-on-CPU simulator that runs those kernels on any machine. See README.md for the learning path.

    import scratchnet as sn
    model = sn.models.LeNet5(device="cpu")
    sn.layers.Conv2D(1, 6, 5, padding=2), sn.optim.SGD(model, lr=0.05, momentum=0.9)
    sn.data.load_dataset("fashion-mnist-mini"), sn.train.train(sn.train.TrainConfig())
"""

import importlib

from scratchnet import data, layers, models, optim
from scratchnet.device import Device, get_device
from scratchnet.errors import DatasetError, DeviceError, KernelLaunchError

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "Device",
    "DeviceError",
    "KernelLaunchError",
    "data",
    "get_device",
    "gradcheck",
    "layers",
    "models",
    "optim",
    "train",
]

# Imported on first use: the trainer pulls in tqdm and matplotlib, which a layer-only user does not need, and
# `python -m scratchnet.gradcheck` must not find its module already imported.
_LAZY = ("gradcheck", "train", "evaluate", "predict", "pretrained", "bench")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"scratchnet.{name}")
    raise AttributeError(f"module 'scratchnet' has no attribute {name!r}")
