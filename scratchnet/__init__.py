"""scratchnet: convolutional networks from scratch, from LeNet-5 (1998) to AlexNet (2012).

NumPy layers with hand-written forward and backward passes, the same layers as CUDA kernels, and a
CUDA-on-CPU simulator that runs those kernels on any machine. See README.md for the learning path.
"""

from scratchnet import gradcheck, layers
from scratchnet.device import Device, get_device
from scratchnet.errors import DatasetError, DeviceError, KernelLaunchError

__version__ = "0.1.0"

__all__ = [
    "DatasetError",
    "Device",
    "DeviceError",
    "KernelLaunchError",
    "get_device",
    "gradcheck",
    "layers",
]
