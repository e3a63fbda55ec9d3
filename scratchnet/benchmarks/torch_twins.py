"""The same model in PyTorch: the ``torch.nn`` twin of a scratchnet layer or model, with its weights copied.

The speed table times both libraries on it, the parallel benchmark trains it, and the parity tests compare
outputs with it. ``torch`` is passed in, never imported here, so the library runs without PyTorch.
"""

from __future__ import annotations

import numpy as np

from scratchnet.layers import (
    BatchNorm2D,
    Conv2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Linear,
    LocalResponseNorm,
    MaxPool2D,
    ReLU,
    ResidualBlock,
)
from scratchnet.layers.residual import MAIN_BRANCH


def torch_layer(layer, torch):
    """The ``torch.nn`` module computing what ``layer`` computes, with a copy of its parameters (in the
    layer's dtype, so that float64 weights are not rounded to float32 on the way)."""
    nn = torch.nn
    dtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    if isinstance(layer, Conv2D):
        W = np.asarray(layer.device.to_host(layer.params["W"]))  # (F, C/groups, kh, kw)
        groups = getattr(layer, "groups", 1)
        module = nn.Conv2d(
            W.shape[1] * groups,
            W.shape[0],
            W.shape[2:],
            layer.stride,
            layer.padding,
            groups=groups,
            bias=layer.bias,
            dtype=dtype,
        )
        return _with_params(module, torch, W, layer.device.to_host(layer.params["b"]) if layer.bias else None)
    if isinstance(layer, Linear):
        W = np.asarray(layer.device.to_host(layer.params["W"]))  # (in, out); torch keeps (out, in)
        module = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        return _with_params(module, torch, W.T, layer.device.to_host(layer.params["b"]))
    if isinstance(layer, MaxPool2D):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, BatchNorm2D):
        module = nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, dtype=dtype)
        with torch.no_grad():
            for theirs, ours in ((module.running_mean, "running_mean"), (module.running_var, "running_var")):
                theirs.copy_(torch.from_numpy(np.asarray(layer.device.to_host(layer.buffers[ours]))))
        return _with_params(
            module, torch, *(layer.device.to_host(layer.params[k]) for k in ("gamma", "beta"))
        )
    if isinstance(layer, GlobalAvgPool2D):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(layer, ResidualBlock):
        return _torch_residual_block(layer, torch)
    if isinstance(layer, LocalResponseNorm):  # PyTorch divides alpha by size; the paper does not
        return nn.LocalResponseNorm(layer.size, layer.alpha * layer.size, layer.beta, layer.k)
    raise TypeError(f"no PyTorch equivalent known for {type(layer).__name__}")


def _with_params(module, torch, W, b):
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
        if b is not None:
            module.bias.copy_(torch.from_numpy(np.asarray(b)))
    return module


def _torch_residual_block(block, torch):
    """A ``torch.nn.Module`` computing what the :class:`ResidualBlock` ``block`` computes (same weights)."""
    C, F, S = block.in_channels, block.out_channels, block.stride

    class TorchResidualBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.main = torch.nn.Sequential(*(torch_layer(block.layers[name], torch) for name in MAIN_BRANCH))

        def forward(self, x):
            h = self.main(x)
            if block.shortcut:
                pad = (F - C) // 2  # option A: every S-th pixel, zero channels on both sides
                h = h + torch.nn.functional.pad(x[:, :, ::S, ::S], (0, 0, 0, 0, pad, pad))
            return torch.relu(h)

    return TorchResidualBlock()


def torch_model(model, torch):
    """``model`` as a ``torch.nn.Sequential`` with the same layers and weights (float32 or float64)."""
    net = torch.nn.Sequential(*(torch_layer(layer, torch) for layer in model.layers.values()))
    return net.to(torch.float64 if model.dtype == np.float64 else torch.float32)
