"""The same model in PyTorch: a ``torch.nn.Sequential`` of the twins that each layer declares
(:meth:`Layer.torch_equivalent <scratchnet.layers.base.Layer.torch_equivalent>`), weights copied.

The speed table times both libraries on it, the parallel benchmark trains it, and the parity tests compare
outputs with it. ``torch`` is passed in, never imported here, so the library runs without PyTorch.
"""

from __future__ import annotations

import numpy as np


def torch_model(model, torch):
    """``model`` as a ``torch.nn.Sequential`` with the same layers and weights (float32 or float64)."""
    net = torch.nn.Sequential(*(layer.torch_equivalent(torch) for layer in model.layers.values()))
    return net.to(torch.float64 if model.dtype == np.float64 else torch.float32)


def twin_forward_backward(layer, x, dy, torch) -> dict[str, np.ndarray]:
    """Forward and backward through ``layer``'s twin on host arrays ``x`` and ``dy``: ``{"y": ..., "dx": ...,
    "dweight": ..., "dbias": ...}``, one ``d<name>`` per parameter of the twin, as PyTorch names and
    lays them out (a Linear's ``dweight`` is ours, ``grads["W"]``, transposed)."""
    twin = layer.torch_equivalent(torch)
    xt = torch.tensor(x, requires_grad=True)
    yt = twin(xt)
    yt.backward(torch.tensor(dy))
    grads = {f"d{name}": p.grad.numpy() for name, p in twin.named_parameters()}
    return {"y": yt.detach().numpy(), "dx": xt.grad.numpy(), **grads}
