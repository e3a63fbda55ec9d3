"""The layers. Each file holds one family: its math in the docstring, the NumPy code, the kernel launches."""

from scratchnet.layers.activation import ReLU
from scratchnet.layers.base import Layer
from scratchnet.layers.batchnorm import BatchNorm1D, BatchNorm2D
from scratchnet.layers.conv import Conv2D
from scratchnet.layers.dropout import Dropout
from scratchnet.layers.global_pool import GlobalAvgPool2D
from scratchnet.layers.linear import Linear
from scratchnet.layers.loss import SoftmaxCrossEntropy
from scratchnet.layers.lrn import LocalResponseNorm
from scratchnet.layers.pool import MaxPool2D
from scratchnet.layers.residual import ResidualBlock
from scratchnet.layers.shape import Flatten

__all__ = [
    "BatchNorm1D",
    "BatchNorm2D",
    "GlobalAvgPool2D",
    "ResidualBlock",
    "Conv2D",
    "Dropout",
    "Flatten",
    "Layer",
    "Linear",
    "LocalResponseNorm",
    "MaxPool2D",
    "ReLU",
    "SoftmaxCrossEntropy",
]
