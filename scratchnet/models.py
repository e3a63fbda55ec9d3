"""Models: :class:`Sequential`, a named chain of layers, and the networks built with it.

============================  ==========  =========================================================
``build(name)``               input       what it is
============================  ==========  =========================================================
``"lenet5"``                  1×28×28     LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling
``"alexnet"``                 3×227×227   AlexNet as in Krizhevsky, Sutskever & Hinton (2012)
``"alexnet-torchvision"``     3×224×224   torchvision's AlexNet, which loads its ImageNet weights
``"alexnet-cifar"``           3×32×32     a small AlexNet-style net that trains on a CPU in minutes
``"vgg-cifar"``               3×32×32     VGG-style 3×3 stacks with BatchNorm (:func:`VGGCifar`)
``"resnet20-cifar"``          3×32×32     ResNet-20 of He et al. (2016), section 4.2 (:func:`ResNet20`)
``"plain20-cifar"``           3×32×32     the same 20 layers without shortcuts, the paper's "plain" net
============================  ==========  =========================================================

The last three also build for 1×28×28 images (``in_channels=1, input_size=28``, the bundled set).

A model runs its layers in order: ``forward`` feeds each layer's output to the next, ``backward`` sends
dL/dy back through them in reverse (the chain rule, one layer at a time), and each layer keeps the
gradients of its own parameters. The model only names things: ``model.params["conv1.W"]`` is the very
array that layer ``conv1`` holds as ``params["W"]``, so an optimizer that updates it in place trains the
layer.

Weights are initialised by the layers: He (Kaiming) normal, W ~ N(0, 2 / fan_in), and zero biases. A model
``seed`` derives one seed per random layer, so the same seed gives the same parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import numpy as np

from scratchnet.device import Device, get_device
from scratchnet.layers import (
    BatchNorm2D,
    Conv2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    Linear,
    LocalResponseNorm,
    MaxPool2D,
    ReLU,
    ResidualBlock,
)
from scratchnet.layers.base import float_dtype


class Sequential:
    """Layers applied one after another. ``layers``: ``[(name, layer), ...]``, names unique, without dots.

    Every layer is moved to ``device`` and ``dtype``. ``input_shape`` (C, H, W), when given, is what
    :meth:`summary` uses by default and what error messages quote; ``config`` is how to rebuild the model
    with :func:`build` (the factories below fill it in).

    ``input_grad``: whether :meth:`backward` returns dL/dx for the model's input. Training never reads it (the
    input is data, not a parameter), so by default it is off: ``backward`` returns None, and a first layer
    that can skip computing it (``Conv2D.needs_input_grad``) does, as PyTorch does for an input without
    ``requires_grad``. That saves about a third of the first layer's backward. Turn it on (here, or later by
    setting ``model.input_grad = True``) for a gradient check of the whole model or a saliency map.

    ``exact_input``: refuse inputs whose (C, H, W) is not ``input_shape``, even if every layer could run on
    them (LeNet-5 runs on 29x29 images, but its pooling silently drops the last row and column).
    """

    def __init__(
        self,
        layers: Iterable[tuple[str, Layer]],
        *,
        device: str | Device = "cpu",
        dtype=np.float32,
        input_shape: tuple[int, ...] | None = None,
        config: dict | None = None,
        input_note: str = "",
        input_grad: bool = False,
        exact_input: bool = False,
    ):
        self.layers: dict[str, Layer] = {}
        for name, layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: {name!r} must be a Layer, got {type(layer).__name__}")
            if "." in name or not name:
                raise ValueError(f"Sequential: layer names must be non-empty and without dots, got {name!r}")
            if name in self.layers:
                raise ValueError(f"Sequential: two layers are called {name!r}")
            self.layers[name] = layer
        self.device = get_device(device)
        self.dtype = float_dtype(dtype)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.config = config
        self.input_note = input_note  # appended to input-shape errors (e.g. which sizes a model accepts)
        self.exact_input = exact_input and self.input_shape is not None
        self._checked_shape: tuple | None = None  # the last input shape that passed the shape check
        for layer in self.layers.values():
            if layer.device is not self.device or layer.dtype != self.dtype:
                layer.to(self.device, self.dtype)
        self.input_grad = input_grad

    @property
    def input_grad(self) -> bool:
        """Whether :meth:`backward` computes and returns dL/dx (see the class docstring)."""
        return self._input_grad

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        self._input_grad = bool(value)
        first = next(iter(self.layers.values()), None)
        if hasattr(first, "needs_input_grad"):
            first.needs_input_grad = self._input_grad

    # --- running ------------------------------------------------------------------------------------
    def forward(self, x, training: bool = True, keep_for_backward: bool | None = None):
        """x: (N, C, H, W) on the model's device, in its dtype -> the last layer's output (logits).

        ``keep_for_backward`` goes to every layer (None: same as ``training``): an evaluation forward keeps
        nothing for backward unless asked, e.g. ``forward(x, training=False, keep_for_backward=True)`` then
        ``backward(dlogits)`` with ``input_grad`` on gives a saliency map dL/dx of the evaluation network.
        """
        if tuple(x.shape) != self._checked_shape:
            self._walk_shapes(tuple(x.shape))  # a clear error now instead of one deep in the math
            if self.exact_input and tuple(x.shape[1:]) != self.input_shape:
                name = (self.config or {}).get("name", "this model")
                raise ValueError(
                    f"input of shape ({_join(x.shape)}) does not fit: {name} expects exactly "
                    f"(N, {_join(self.input_shape)}); other sizes run but lose pixels or misalign. "
                    f"{self.input_note}".rstrip()
                )
            self._checked_shape = tuple(x.shape)
        for layer in self.layers.values():
            x = layer.forward(x, training=training, keep_for_backward=keep_for_backward)
        return x

    def backward(self, dout):
        """dL/d(output) -> dL/dx, filling every layer's ``grads`` on the way (call after a ``forward`` that
        kept what backward needs: ``training=True`` or ``keep_for_backward=True``).

        Returns None unless ``input_grad`` is on.
        """
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        return dout if self.input_grad else None

    # --- parameters ---------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """``{"<layer>.<param>": array}``: the layers' own arrays (update them in place), in layer order."""
        return {f"{name}.{k}": v for name, layer in self.layers.items() for k, v in layer.params.items()}

    @property
    def grads(self) -> dict:
        """``{"<layer>.<param>": dL/dparam}`` from the last ``backward``; same keys and shapes as params."""
        return {f"{name}.{k}": v for name, layer in self.layers.items() for k, v in layer.grads.items()}

    @property
    def buffers(self) -> dict:
        """``{"<layer>.<buffer>": array}``: state that is not trained (BatchNorm's running statistics)."""
        return {f"{name}.{k}": v for name, layer in self.layers.items() for k, v in layer.buffers.items()}

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers.values())

    def feature_param_names(self) -> list[str]:
        """Keys of the parameters before the first Flatten: the convolutional features (for freezing)."""
        keys = []
        for name, layer in self.layers.items():
            if isinstance(layer, Flatten):
                return keys
            keys += [f"{name}.{k}" for k in layer.params]
        raise ValueError(
            "feature_param_names: this model has no Flatten layer separating features from classifier"
        )

    def to(self, device: str | Device, dtype=None) -> Sequential:
        """Move every layer's parameters to ``device`` (and cast them to ``dtype`` if given); returns self."""
        self.device = get_device(device)
        self.dtype = self.dtype if dtype is None else float_dtype(dtype)
        for layer in self.layers.values():
            layer.to(self.device, self.dtype)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of all parameters and buffers: ``{"conv1.W": np.ndarray, "bn1.running_mean": ...}``
        (safe to keep while training)."""
        return {k: np.array(self.device.to_host(v), copy=True) for k, v in self._state().items()}

    def _state(self) -> dict:
        """The arrays of the state dict: parameters, then buffers."""
        return self.params | self.buffers

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy ``state`` (host arrays) into the parameters and buffers, in place; returns ``(missing,
        unexpected)`` keys.

        Shapes must match exactly; values are cast to the model's dtype. With ``strict`` any missing or
        unexpected key is an error; without it only the keys present in both are loaded.
        """
        params = self._state()
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: missing keys {missing}, unexpected keys {unexpected} "
                f"(the model has {list(params)})"
            )
        common = [k for k in params if k in state]
        bad_shapes = [
            f"{k}: model {tuple(params[k].shape)}, given {tuple(np.shape(state[k]))}"
            for k in common
            if tuple(np.shape(state[k])) != tuple(params[k].shape)
        ]
        if bad_shapes:
            raise ValueError("load_state_dict: shape mismatch for " + "; ".join(bad_shapes))
        values = {}  # every value is checked before any is loaded: a refused load changes nothing
        for k in common:
            value = np.asarray(state[k])
            if value.dtype.kind not in "fiu":
                raise ValueError(f"load_state_dict: {k} must hold numbers, got dtype {value.dtype}")
            if not np.isfinite(value).all():
                raise ValueError(f"load_state_dict: {k} holds NaN or infinite values")
            with np.errstate(over="ignore"):
                cast = value.astype(self.dtype)
            if not np.isfinite(cast).all():
                big = np.abs(value).max()
                raise ValueError(
                    f"load_state_dict: {k} holds values too large for {self.dtype} (up to {big:g})"
                )
            values[k] = cast
        for k, value in values.items():
            params[k][...] = self.device.array(value)
        return missing, unexpected

    def replace_classifier(self, num_classes: int, seed: int | None = None) -> None:
        """Put a fresh, randomly initialised last Linear layer with ``num_classes`` outputs (fine-tuning)."""
        linear_names = [name for name, layer in self.layers.items() if isinstance(layer, Linear)]
        if not linear_names:
            raise ValueError("replace_classifier: the model has no Linear layer")
        name = linear_names[-1]
        in_features = self.layers[name].params["W"].shape[0]  # the weight (in_features, out_features)
        self.layers[name] = Linear(in_features, num_classes, device=self.device, dtype=self.dtype, seed=seed)
        self._checked_shape = None
        if self.config is not None and "num_classes" in self.config:
            self.config = {**self.config, "num_classes": num_classes}

    # --- shapes and printing ------------------------------------------------------------------------
    def output_shapes(self, input_shape: tuple[int, ...] | None = None) -> dict[str, tuple[int, ...]]:
        """``{layer name: output shape}`` for one sample of ``input_shape`` (C, H, W), without computing."""
        shapes = self._walk_shapes((1, *self._input_shape(input_shape)))  # layers see batches: a batch of 1
        return {name: shape[1:] for name, shape in shapes.items()}

    def _walk_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Each layer's output shape for an input batch of ``shape``; a ValueError names the failing layer."""
        input_shape, shapes = shape, {}
        for name, layer in self.layers.items():
            try:
                layer.check_input_shape(shape)
                shape = tuple(layer.output_shape(shape))
            except ValueError as e:
                expected = (
                    "" if self.input_shape is None else f"; the model expects (N, {_join(self.input_shape)})"
                )
                raise ValueError(
                    f"input of shape ({_join(input_shape)}) does not fit: layer '{name}' gets {shape} ({e})"
                    f"{expected}. {self.input_note}".rstrip()
                ) from None
            shapes[name] = shape
        return shapes

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A table of layers: name, type and arguments, output shape and parameter count; returns it."""
        input_shape = self._input_shape(input_shape)
        shapes = self.output_shapes(input_shape)
        rows = [("layer", "type", "output shape", "params"), ("input", "", str(input_shape), "")]
        for name, layer in self.layers.items():
            rows.append((name, repr(layer), str(shapes[name]), f"{layer.num_params():,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"
            for r in rows
        ]
        rule = "-" * len(lines[0])
        total = f"total parameters: {self.num_params():,}"
        return "\n".join([lines[0], rule, *lines[1:], rule, total])

    def _input_shape(self, input_shape) -> tuple[int, ...]:
        if input_shape is None:
            if self.input_shape is None:
                raise ValueError("give input_shape (C, H, W): this model was built without one")
            return self.input_shape
        return tuple(int(s) for s in input_shape)

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}" for name, layer in self.layers.items()]
        return "Sequential(\n" + "\n".join(lines) + f"\n) on {self.device.name}, {self.dtype}"


def _join(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


def _layer_seeds(seed: int | None) -> Iterator[int | None]:
    """One seed per random layer, all derived from the model's ``seed`` (None: fresh randomness)."""
    if seed is None:
        while True:
            yield None
    for s in np.random.SeedSequence(seed).generate_state(64):
        yield int(s)


def LeNet5(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    device: str | Device = "cpu",
    dtype=np.float32,
    seed: int | None = None,
    input_grad: bool = False,
) -> Sequential:
    """LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998) with ReLU and max-pooling instead of tanh and
    trainable sub-sampling, as most modern versions do.

    ::

        input      C × S × S        (S = 28 for MNIST/Fashion-MNIST, 32 for CIFAR-10)
        conv1      6 @ 5×5, pad p   -> 6 × 28 × 28      p = (32 − S) / 2, so that conv1 sees a 32×32 image
        relu1, pool1 2×2            -> 6 × 14 × 14
        conv2      16 @ 5×5         -> 16 × 10 × 10
        relu2, pool2 2×2            -> 16 × 5 × 5
        flatten                     -> 400
        fc1 120, relu3, fc2 84, relu4, fc3 num_classes

    For 1×28×28 inputs and 10 classes: 61,706 parameters. ``input_grad``: see :class:`Sequential`.
    """
    pad2 = 32 - input_size
    if pad2 < 0 or pad2 % 2 or pad2 // 2 > 4:
        raise ValueError(
            f"LeNet5: input_size must make conv1's output 28x28, i.e. 32 - 2 * padding with padding 0..4 "
            f"(28 for MNIST, 32 for CIFAR-10), got {input_size}"
        )
    seeds = _layer_seeds(seed)
    common = {"device": device, "dtype": dtype}
    layers = [
        ("conv1", Conv2D(in_channels, 6, 5, padding=pad2 // 2, seed=next(seeds), **common)),
        ("relu1", ReLU(**common)),
        ("pool1", MaxPool2D(2, **common)),
        ("conv2", Conv2D(6, 16, 5, seed=next(seeds), **common)),
        ("relu2", ReLU(**common)),
        ("pool2", MaxPool2D(2, **common)),
        ("flatten", Flatten(**common)),
        ("fc1", Linear(16 * 5 * 5, 120, seed=next(seeds), **common)),
        ("relu3", ReLU(**common)),
        ("fc2", Linear(120, 84, seed=next(seeds), **common)),
        ("relu4", ReLU(**common)),
        ("fc3", Linear(84, num_classes, seed=next(seeds), **common)),
    ]
    config = {
        "name": "lenet5",
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": input_size,
    }
    shape = (in_channels, input_size, input_size)
    return Sequential(
        layers, input_shape=shape, config=config, input_grad=input_grad, exact_input=True, **common
    )


ALEXNET_VARIANTS = ("paper", "torchvision", "cifar")
ALEXNET_INPUT_SIZES = {"paper": 227, "torchvision": 224, "cifar": 32}

# Our layer names in the torchvision variant -> torchvision's module names (its state_dict keys).
TORCHVISION_NAMES = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}


def AlexNet(
    num_classes: int = 1000,
    variant: str = "paper",
    device: str | Device = "cpu",
    dtype=np.float32,
    seed: int | None = None,
    in_channels: int = 3,
    input_grad: bool = False,
) -> Sequential:
    """AlexNet (Krizhevsky, Sutskever & Hinton 2012) in three variants; layer names follow Caffe's.

    ``"paper"``, 3×227×227 input (the paper's text says 224, but 227 is what makes the sizes work);
    60,965,224 parameters with 1000 classes. "groups 2" is the two-GPU split: each half of the filters sees
    only half of the input channels::

        conv1  96 @ 11×11 stride 4        -> 96 × 55 × 55,  relu1, norm1 (LRN), pool1 3×3 s2 -> 27 × 27
        conv2 256 @ 5×5 pad 2, groups 2   -> 256 × 27 × 27, relu2, norm2 (LRN), pool2 3×3 s2 -> 13 × 13
        conv3 384 @ 3×3 pad 1             -> 384 × 13 × 13, relu3
        conv4 384 @ 3×3 pad 1, groups 2   -> 384 × 13 × 13, relu4
        conv5 256 @ 3×3 pad 1, groups 2   -> 256 × 13 × 13, relu5, pool5 3×3 s2 -> 256 × 6 × 6
        flatten 9216, fc6 4096, relu6, drop6, fc7 4096, relu7, drop7, fc8 num_classes

    LRN is the paper's b = a / (2 + 1e-4 Σ a²)^0.75 over 5 channels; dropout p = 0.5 follows fc6 and fc7.
    Initialisation: the paper drew weights from N(0, 0.01²) and set some biases to 1; we use He normal
    and zero biases (our default), which trains a ReLU net of this depth reliably from scratch.

    ``"torchvision"``, 3×224×224 input: torchvision's single-GPU ("one weird trick") version, 61,100,840
    parameters with 1000 classes, no LRN and no groups, dropout *before* fc6 and fc7. Its layers map to
    torchvision's module names through :data:`TORCHVISION_NAMES` (conv1 = ``features.0``, ...,
    fc8 = ``classifier.6``), so ``scratchnet.pretrained`` loads its ImageNet weights. torchvision's
    ``AdaptiveAvgPool2d((6, 6))`` is left out: it is the identity when the features are already 6×6, which
    holds for inputs of 224×224 to 227×227, and other sizes are refused with a clear error.

    ``"cifar"``, 3×32×32 input: the same ideas at CIFAR-10 scale (543,946 parameters with 10 classes),
    small enough to train on a CPU in minutes: five 3×3 convolutions (32, 64, 96, 96, 64 channels, pad 1),
    ReLU, LRN after the first two, three overlapping max-pools 3×3 stride 2 pad 1 (32 -> 16 -> 8 -> 4),
    then fc6 256, fc7 256 with dropout 0.5 after each, and fc8 num_classes.

    ``input_grad``: see :class:`Sequential`.
    """
    if variant not in ALEXNET_VARIANTS:
        raise ValueError(f"AlexNet: unknown variant {variant!r}; choose one of {', '.join(ALEXNET_VARIANTS)}")
    size = ALEXNET_INPUT_SIZES[variant]
    seeds = _layer_seeds(seed)
    common = {"device": device, "dtype": dtype}

    def conv(name, c_in, c_out, k, **kwargs):
        return name, Conv2D(c_in, c_out, k, seed=next(seeds), **kwargs, **common)

    def fc(name, n_in, n_out):
        return name, Linear(n_in, n_out, seed=next(seeds), **common)

    def relu(name):
        return name, ReLU(**common)

    def lrn(name):
        return name, LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, **common)

    def pool(name, **kwargs):
        return name, MaxPool2D(3, stride=2, **kwargs, **common)

    def drop(name):
        return name, Dropout(p=0.5, seed=next(seeds), **common)

    flatten = ("flatten", Flatten(**common))
    note = ""
    if variant == "paper":
        layers = [
            conv("conv1", in_channels, 96, 11, stride=4), relu("relu1"), lrn("norm1"), pool("pool1"),
            conv("conv2", 96, 256, 5, padding=2, groups=2), relu("relu2"), lrn("norm2"), pool("pool2"),
            conv("conv3", 256, 384, 3, padding=1), relu("relu3"),
            conv("conv4", 384, 384, 3, padding=1, groups=2), relu("relu4"),
            conv("conv5", 384, 256, 3, padding=1, groups=2), relu("relu5"), pool("pool5"),
            flatten,
            fc("fc6", 256 * 6 * 6, 4096), relu("relu6"), drop("drop6"),
            fc("fc7", 4096, 4096), relu("relu7"), drop("drop7"),
            fc("fc8", 4096, num_classes),
        ]  # fmt: skip
    elif variant == "torchvision":
        note = (
            "torchvision's AlexNet ends its features with AdaptiveAvgPool2d((6, 6)), which scratchnet leaves "
            "out: it is the identity for 224x224 to 227x227 inputs, the only sizes this model accepts."
        )
        layers = [
            conv("conv1", in_channels, 64, 11, stride=4, padding=2), relu("relu1"), pool("pool1"),
            conv("conv2", 64, 192, 5, padding=2), relu("relu2"), pool("pool2"),
            conv("conv3", 192, 384, 3, padding=1), relu("relu3"),
            conv("conv4", 384, 256, 3, padding=1), relu("relu4"),
            conv("conv5", 256, 256, 3, padding=1), relu("relu5"), pool("pool5"),
            flatten,
            drop("drop6"), fc("fc6", 256 * 6 * 6, 4096), relu("relu6"),
            drop("drop7"), fc("fc7", 4096, 4096), relu("relu7"),
            fc("fc8", 4096, num_classes),
        ]  # fmt: skip
    else:
        layers = [
            conv("conv1", in_channels, 32, 3, padding=1), relu("relu1"), lrn("norm1"),
            pool("pool1", padding=1),
            conv("conv2", 32, 64, 3, padding=1), relu("relu2"), lrn("norm2"),
            pool("pool2", padding=1),
            conv("conv3", 64, 96, 3, padding=1), relu("relu3"),
            conv("conv4", 96, 96, 3, padding=1), relu("relu4"),
            conv("conv5", 96, 64, 3, padding=1), relu("relu5"), pool("pool5", padding=1),
            flatten,
            fc("fc6", 64 * 4 * 4, 256), relu("relu6"), drop("drop6"),
            fc("fc7", 256, 256), relu("relu7"), drop("drop7"),
            fc("fc8", 256, num_classes),
        ]  # fmt: skip
    name = {"paper": "alexnet", "torchvision": "alexnet-torchvision", "cifar": "alexnet-cifar"}[variant]
    config = {"name": name, "num_classes": num_classes, "in_channels": in_channels}
    return Sequential(
        layers,
        input_shape=(in_channels, size, size),
        config=config,
        input_note=note,
        input_grad=input_grad,
        exact_input=variant != "torchvision",  # torchvision's takes 224 to 227 (see above)
        **common,
    )


def _check_input_size(model: str, input_size: int, smallest: int) -> int:
    if isinstance(input_size, bool) or not isinstance(input_size, int | np.integer) or input_size < smallest:
        raise ValueError(f"{model}: input_size must be an integer >= {smallest}, got {input_size!r}")
    return int(input_size)


def ResNet20(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    device: str | Device = "cpu",
    dtype=np.float32,
    seed: int | None = None,
    input_grad: bool = False,
    shortcuts: bool = True,
) -> Sequential:
    """ResNet-20 for CIFAR-10 (He, Zhang, Ren & Sun 2016, section 4.2): 19 convolutions and a classifier.

    ::

        input      C × S × S                         (S = 32 for CIFAR-10, 28 for the bundled set)
        conv1      16 @ 3×3 pad 1, no bias, bn1, relu1 -> 16 × S × S
        stage1_block1..3   ResidualBlock(16, 16)          -> 16 × S × S
        stage2_block1      ResidualBlock(16, 32, stride 2) -> 32 × S/2 × S/2   (zero-padding shortcut)
        stage2_block2..3   ResidualBlock(32, 32)
        stage3_block1      ResidualBlock(32, 64, stride 2) -> 64 × S/4 × S/4
        stage3_block2..3   ResidualBlock(64, 64)
        pool (global average) -> 64 × 1 × 1, flatten -> 64, fc num_classes

    Each block holds two 3×3 convolutions with BatchNorm (see :mod:`scratchnet.layers.residual`), so
    1 + 3·3·2 = 19 convolutions and the fc make the 20 layers. The shortcuts are the paper's "option A"
    (identity, and subsampling with zero-padded channels where the shape changes): no parameters. With 10
    classes: 269,722 parameters (bias-free convolutions, BatchNorm γ and β, fc with bias), as in the paper.
    ``shortcuts=False``: the same layers without shortcuts, the paper's 20-layer "plain" network
    (``"plain20-cifar"``). ``input_grad``: see :class:`Sequential`.
    """
    input_size = _check_input_size("ResNet20", input_size, 4)
    seeds = _layer_seeds(seed)
    common = {"device": device, "dtype": dtype}
    layers = [
        ("conv1", Conv2D(in_channels, 16, 3, padding=1, bias=False, seed=next(seeds), **common)),
        ("bn1", BatchNorm2D(16, **common)),
        ("relu1", ReLU(**common)),
    ]
    channels = 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            stride = 2 if stage > 1 and block == 1 else 1  # the first block of stages 2, 3 halves the image
            layer = ResidualBlock(channels, width, stride, shortcut=shortcuts, seed=next(seeds), **common)
            layers.append((f"stage{stage}_block{block}", layer))
            channels = width
    layers += [
        ("pool", GlobalAvgPool2D(**common)),
        ("flatten", Flatten(**common)),
        ("fc", Linear(64, num_classes, seed=next(seeds), **common)),
    ]
    config = {
        "name": "resnet20-cifar" if shortcuts else "plain20-cifar",
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": input_size,
    }
    shape = (in_channels, input_size, input_size)
    return Sequential(layers, input_shape=shape, config=config, input_grad=input_grad, **common)


VGG_CIFAR_STAGES = ((32, 32), (64, 64), (128, 128))  # output channels of the 3×3 convolutions per stage


def VGGCifar(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    device: str | Device = "cpu",
    dtype=np.float32,
    seed: int | None = None,
    input_grad: bool = False,
) -> Sequential:
    """A small VGG-style net (Simonyan & Zisserman 2015): stacks of 3×3 convolutions, here with BatchNorm.

    ::

        input        C × S × S                 (S = 32 for CIFAR-10, 28 for the bundled set)
        conv1_1      32 @ 3×3 pad 1, no bias, bn1_1, relu1_1
        conv1_2      32 @ 3×3 pad 1, no bias, bn1_2, relu1_2, pool1 max 2×2 -> 32 × S/2 × S/2
        conv2_1, conv2_2   64 channels, the same pattern, pool2         -> 64 × S/4 × S/4
        conv3_1, conv3_2  128 channels, the same pattern, pool3         -> 128 × 4 × 4 (S = 28 or 32)
        flatten, fc num_classes

    Two stacked 3×3 convolutions see a 5×5 window with 2·9·C² weights instead of 25·C² (three see 7×7),
    with a ReLU between them: VGG's argument for using nothing but 3×3. A pool on an odd side pads it by one
    (with −∞, so no pixel is dropped): 28 -> 14 -> 7 -> 4, and the classifier sees 128 × 4 × 4 for 28×28
    images as for 32×32 ones. With 3×32×32 inputs and 10 classes: 307,946 parameters; with 1×28×28:
    307,370. It takes only the ``input_size`` it was built for (its fc is sized for it).
    ``input_grad``: see :class:`Sequential`.
    """
    input_size = _check_input_size("VGGCifar", input_size, 8)
    seeds = _layer_seeds(seed)
    common = {"device": device, "dtype": dtype}
    layers, channels, side = [], in_channels, input_size
    for stage, widths in enumerate(VGG_CIFAR_STAGES, start=1):
        for i, width in enumerate(widths, start=1):
            layers += [
                (
                    f"conv{stage}_{i}",
                    Conv2D(channels, width, 3, padding=1, bias=False, seed=next(seeds), **common),
                ),
                (f"bn{stage}_{i}", BatchNorm2D(width, **common)),
                (f"relu{stage}_{i}", ReLU(**common)),
            ]
            channels = width
        pad = side % 2  # an odd side: pad, so that the last row and column are pooled too
        layers.append((f"pool{stage}", MaxPool2D(2, padding=pad, **common)))
        side = (side + 2 * pad) // 2
    layers += [
        ("flatten", Flatten(**common)),
        ("fc", Linear(channels * side * side, num_classes, seed=next(seeds), **common)),
    ]
    config = {
        "name": "vgg-cifar",
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": input_size,
    }
    shape = (in_channels, input_size, input_size)
    return Sequential(
        layers, input_shape=shape, config=config, input_grad=input_grad, exact_input=True, **common
    )


MODELS = {
    "lenet5": LeNet5,
    "alexnet": functools.partial(AlexNet, variant="paper"),
    "alexnet-torchvision": functools.partial(AlexNet, variant="torchvision"),
    "alexnet-cifar": functools.partial(AlexNet, variant="cifar"),
    "vgg-cifar": VGGCifar,
    "resnet20-cifar": ResNet20,
    "plain20-cifar": functools.partial(ResNet20, shortcuts=False),
}


def build(name: str, **kwargs) -> Sequential:
    """The model called ``name`` (see :data:`MODELS`); ``build(**model.config)`` rebuilds a model."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)
