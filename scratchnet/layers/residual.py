"""The residual block of ResNet (He, Zhang, Ren & Sun 2016): two 3×3 convolutions and a shortcut around them.

Shapes: x (N, C, H, W) -> y (N, F, OH, OW), with F = ``out_channels`` and OH = ceil(H / S), OW = ceil(W / S)
for the block's stride S (1, or 2 where a stage halves the image and doubles the channels).

Forward: a *main branch* of layers, and a *shortcut* that carries x past them::

    h = bn2(conv2(relu1(bn1(conv1(x)))))       conv1 3×3 stride S, conv2 3×3 stride 1, both pad 1, no bias
    z = h + shortcut(x)
    y = relu2(z)

The convolutions have no bias: the BatchNorm after each subtracts the channel mean anyway (a bias would be
cancelled) and adds its own β. The shortcut is the identity when S = 1 and F = C. Otherwise it is He et
al.'s "option A", which adds no parameters: keep every S-th pixel, then pad the channels with zeros, half
of the F − C new channels before the copy and half after::

    shortcut(x)[n, f, oh, ow] = x[n, f − P, oh·S, ow·S]  when 0 <= f − P < C, else 0,   P = (F − C) / 2

Backward. x feeds *both* branches, so by the multivariable chain rule dL/dx is the *sum* of what comes back
along each::

    dz = relu2.backward(dy)
    dx = main.backward(dz) + shortcut.backward(dz)
    shortcut.backward(dz)[n, c, h, w] = dz[n, c + P, h / S, w / S]  when S divides h and w, else 0

The shortcut's term is dz itself for the identity: however small the main branch's gradient becomes in a
deep network, the gradient from above reaches x undiminished. This is why a 20- or 110-layer ResNet trains
where a plain stack of the same layers does not (lesson 14 measures it).

The block owns its layers (``block.layers``: conv1, bn1, relu1, conv2, bn2, relu2) and shows their
parameters, gradients and buffers under dotted names (``"conv1.W"``, ``"bn1.gamma"``), so in a model they
read ``"stage2_block1.conv1.W"`` and the optimizer, state dicts, checkpoints and ``summary()`` need nothing
special. It is not a general autograd graph: the two branches are written out in ``forward`` and
``backward``.

Kernels (``kernels/residual.cu``, gpu and sim): ``residual_add`` for the sums, ``shortcut_pad_forward`` and
``shortcut_pad_backward`` for option A; the layers launch their own.
"""

from __future__ import annotations

import numpy as np

from scratchnet.device import Device
from scratchnet.layers.activation import ReLU
from scratchnet.layers.base import Layer
from scratchnet.layers.batch_threads import batch_parts
from scratchnet.layers.batchnorm import BatchNorm2D
from scratchnet.layers.conv import Conv2D

MAIN_BRANCH = ("conv1", "bn1", "relu1", "conv2", "bn2")  # in forward order; relu2 comes after the sum


class DottedStore(dict):
    """``{"conv1.W": array, ...}``: one store (``"params"``, ``"grads"`` or ``"buffers"``) of each sub-layer
    under dotted names. The values are the sub-layers' own arrays, so updating one in place updates the
    layer; assigning an entry (``store["conv1.W"] = new``) assigns it in the sub-layer too."""

    def __init__(self, layers: dict[str, Layer], store: str):
        self._layers, self._store = layers, store
        super().__init__(
            {f"{n}.{k}": v for n, layer in layers.items() for k, v in getattr(layer, store).items()}
        )

    def __setitem__(self, key: str, value) -> None:
        name, _, k = key.partition(".")
        if key not in self:
            raise KeyError(f"no {self._store[:-1]} called {key!r}; there are: {', '.join(self)}")
        getattr(self._layers[name], self._store)[k] = value
        super().__setitem__(key, value)

    def __reduce__(self):  # copy and pickle as a view over the (copied) sub-layers
        return DottedStore, (self._layers, self._store)


class ResidualBlock(Layer):
    """ResNet's basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` (module docstring).

    ``stride`` 1 with ``out_channels == in_channels`` gives the identity shortcut; otherwise the option-A
    shortcut, which needs ``out_channels >= in_channels`` with an even difference. ``shortcut=False`` leaves
    the shortcut out (y = relu2(h)): the block of the paper's "plain" networks, for comparison. ``seed``
    seeds the two convolutions (He-normal weights).
    """

    kernel_file = "residual.cu"  # the sum and the shortcut; the sub-layers launch their own

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        shortcut: bool = True,
        *,
        device: str | Device = "cpu",
        dtype=np.float32,
        seed=None,
    ):
        super().__init__(device=device, dtype=dtype)
        C, F = in_channels, out_channels
        if stride not in (1, 2):
            raise ValueError(f"ResidualBlock: stride must be 1 or 2, got {stride!r}")
        if F < C or (F - C) % 2:
            raise ValueError(
                f"ResidualBlock: the zero-padding shortcut needs out_channels >= in_channels with an even "
                f"difference, got {C} -> {F}"
            )
        self.in_channels, self.out_channels, self.stride, self.shortcut = C, F, stride, bool(shortcut)
        seeds = (
            [None, None] if seed is None else [int(s) for s in np.random.SeedSequence(seed).generate_state(2)]
        )
        common = {"device": device, "dtype": dtype}
        self.layers: dict[str, Layer] = {
            "conv1": Conv2D(C, F, 3, stride=stride, padding=1, bias=False, seed=seeds[0], **common),
            "bn1": BatchNorm2D(F, **common),
            "relu1": ReLU(**common),
            "conv2": Conv2D(F, F, 3, padding=1, bias=False, seed=seeds[1], **common),
            "bn2": BatchNorm2D(F, **common),
            "relu2": ReLU(**common),
        }
        self._collect()

    @property
    def identity_shortcut(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    def _collect(self) -> None:
        """Show the sub-layers' arrays under dotted names (see :class:`DottedStore`)."""
        for store in ("params", "grads", "buffers"):
            setattr(self, store, DottedStore(self.layers, store))

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 4 or shape[1] != self.in_channels:
            self._fail_shape(f"(N, {self.in_channels}, H, W)", shape)

    def _sums_over_ranks(self, training: bool) -> bool:
        return any(layer._sums_over_ranks(training) for layer in self.layers.values())

    def output_shape(self, input_shape: tuple) -> tuple:
        self.check_input_shape(tuple(input_shape))
        N, _, H, W = input_shape
        S = self.stride
        return (N, self.out_channels, -(-H // S), -(-W // S))

    def torch_equivalent(self, torch):
        block, C, F, S = self, self.in_channels, self.out_channels, self.stride

        class TorchResidualBlock(torch.nn.Module):
            def __init__(self):
                super().__init__()
                main = (block.layers[name].torch_equivalent(torch) for name in MAIN_BRANCH)
                self.main = torch.nn.Sequential(*main)

            def forward(self, x):
                h = self.main(x)
                if block.shortcut:
                    pad = (F - C) // 2  # option A: every S-th pixel, zero channels on both sides
                    h = h + torch.nn.functional.pad(x[:, :, ::S, ::S], (0, 0, 0, 0, pad, pad))
                return torch.relu(h)

        return TorchResidualBlock()

    def extra_repr(self) -> str:
        shortcut = "none" if not self.shortcut else "identity" if self.identity_shortcut else "zero-pad"
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, shortcut={shortcut}"

    def to(self, device: str | Device, dtype=None) -> ResidualBlock:
        for layer in self.layers.values():
            layer.to(device, dtype)
        super().to(device, dtype)  # (the stores hold the sub-layers' old arrays until _collect)
        self._collect()
        return self

    # --- the two branches (the same code on every device; the sub-layers pick their kernels) -------------
    def _forward_numpy(self, x, training):
        keep = self._keep  # keep what backward needs in every sub-layer exactly when this block does
        h = x
        for name in MAIN_BRANCH:
            h = self.layers[name].forward(h, training=training, keep_for_backward=keep)  # main branch
        z = self._add(h, self._shortcut_forward(x)) if self.shortcut else h  # (N, F, OH, OW)
        self._save_for_backward(x_shape=tuple(x.shape))
        return self.layers["relu2"].forward(z, training=training, keep_for_backward=keep)

    def _backward_numpy(self, dy):
        dz = self.layers["relu2"].backward(dy)  # dL/dz, z = h + shortcut(x)
        dx_main = dz
        for name in reversed(MAIN_BRANCH):
            dx_main = self.layers[name].backward(dx_main)  # back along the main branch
        self._collect()  # the sub-layers' backward put new gradient arrays in their grads
        if not self.shortcut:
            return dx_main
        dx_shortcut = self._shortcut_backward(dz)  # back along the shortcut
        return self._add(dx_main, dx_shortcut)  # x fed both branches: their gradients add up

    _forward_kernels = _forward_numpy
    _backward_kernels = _backward_numpy

    # --- the sum and the shortcut: NumPy on cpu, kernels/residual.cu on gpu and sim -----------------------
    # On cpu a large batch runs as one part per BLAS thread (batch_parts), each writing its slice of the
    # result.
    def _add(self, a, b):
        """a + b (same shapes). ``a`` is the main branch's result, which nothing reads afterwards: on cpu the
        sum goes into it, sparing an allocation (and, under the allocator's defaults, the page faults of
        writing a fresh array, which cost about as much as the adding at ResNet-20's sizes)."""
        if not self.device.uses_kernels:
            batch_parts(len(a), a.size)(lambda images: np.add(a[images], b[images], out=a[images]))
            return a
        y = self.device.empty(a.shape, self.dtype)
        self._kernel("residual_add").launch_1d(y.size, (a, b, y, y.size))
        return y

    def _shortcut_sizes(self, x_shape: tuple) -> tuple[int, ...]:
        """N, C, H, W, F, OH, OW, S, P: the arguments of the option-A kernels."""
        N, C, H, W = x_shape
        _, F, OH, OW = self.output_shape(x_shape)
        return N, C, H, W, F, OH, OW, self.stride, (F - C) // 2

    def _shortcut_forward(self, x):
        if self.identity_shortcut:
            return x
        N, C, H, W, F, OH, OW, S, P = sizes = self._shortcut_sizes(tuple(x.shape))
        if not self.device.uses_kernels:
            y = np.empty((N, F, OH, OW), dtype=self.dtype)

            def pad_part(images):  # every S-th pixel, P zero channels on each side
                y[images, :P] = 0
                y[images, P : P + C] = x[images, :, ::S, ::S]
                y[images, P + C :] = 0

            batch_parts(N, y.size)(pad_part)
            return y
        y = self.device.empty((N, F, OH, OW), self.dtype)
        self._kernel("shortcut_pad_forward").launch_1d(y.size, (x, y, *sizes))
        return y

    def _shortcut_backward(self, dz):
        if self.identity_shortcut:
            return dz
        x_shape = self._saved().x_shape
        N, C, H, W, F, OH, OW, S, P = sizes = self._shortcut_sizes(x_shape)
        if not self.device.uses_kernels:
            dx = np.empty(x_shape, dtype=self.dtype)

            def unpad_part(images):  # the kept pixels get their gradient, the others none
                dx[images] = 0
                dx[images, :, ::S, ::S] = dz[images, P : P + C]

            batch_parts(N, dx.size)(unpad_part)
            return dx
        dx = self.device.empty(x_shape, self.dtype)
        self._kernel("shortcut_pad_backward").launch_1d(dx.size, (dz, dx, *sizes))
        return dx
