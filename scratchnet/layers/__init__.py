"""The layers. Each file holds one family: its math in the docstring, the NumPy code, the kernel launches.

Every layer follows :class:`~scratchnet.layers.base.Layer`'s protocol (forward, backward, the backward
cache) and passes the contract in :mod:`scratchnet.testing`. "How to add a layer" in
docs/contributing.md walks through one.

Notation, the same in every layer, kernel and lesson::

    N        batch size                      x, y      a layer's input and output
    C        input channels                  dx, dy    their gradients dL/dx, dL/dy
    H, W     input height and width          weight, bias     conv/linear parameters (keys "W", "b")
    F        output channels (filters)       dweight, dbias   their gradients
    KH, KW   kernel height and width         n, c, f   batch, channel, filter indices
    S        stride (SH, SW if they differ)  oh, ow    output position
    P        padding (PH, PW)                kh, kw    kernel offset
    G        groups                          h, w      input position
    OH, OW   output height and width         i         a kernel's flat (long long) element index
    D, M     Linear: x (N, D), weight (D, M), y (N, M)
    K        classes: logits (N, K)
    cols_batch_first im2col columns in kernels/conv.cu and lessons 04-05: (C·KH·KW, N·OH·OW)
    cols_per_image   im2col on the CPU and in kernel exercise 06: (N, C·KH·KW, OH·OW), one matrix per image

``W`` is always a width, never the weight: the weight is the local ``weight`` (the parameter key stays "W").
A kernel's number of elements, the bound of ``i``, is ``count`` (``if (i >= count) return;``).

This legend is the one; the contributor guide quotes the block above verbatim (``tests/test_notation.py``).
"""

from scratchnet.layers.activation import ReLU
from scratchnet.layers.base import Layer
from scratchnet.layers.batchnorm import BatchNorm1D, BatchNorm2D
from scratchnet.layers.conv import Conv2D
from scratchnet.layers.dropout import Dropout
from scratchnet.layers.global_pool import GlobalAvgPool2D
from scratchnet.layers.linear import Linear
from scratchnet.layers.loss import SoftmaxCrossEntropy
from scratchnet.layers.lrn import LocalResponseNorm
from scratchnet.layers.pool import AvgPool2D, MaxPool2D
from scratchnet.layers.residual import ResidualBlock
from scratchnet.layers.shape import Flatten

__all__ = [
    "AvgPool2D",
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
