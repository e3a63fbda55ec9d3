"""Load torchvision's ImageNet-trained AlexNet weights into ``AlexNet(variant="torchvision")``.

torchvision publishes the weights as a PyTorch ``state_dict`` (``alexnet-owt-7be5be79.pth``, 233 MB, from
:data:`TORCHVISION_ALEXNET_URL`). Its keys name torchvision's modules: ``features.0.weight`` is the first
convolution, ``classifier.6.bias`` the bias of the last Linear layer (see
:data:`scratchnet.models.TORCHVISION_NAMES`). Two layout facts matter:

* convolution weights are (out_channels, in_channels, kh, kw) in both libraries: copied as they are;
* ``torch.nn.Linear`` stores W as (out_features, in_features) and computes y = x Wᵀ + b, while our
  ``Linear`` stores (in_features, out_features) and computes y = x W + b: transposed on loading.

A ``.pth`` file is read through PyTorch (when installed); a ``.npz`` file with the same keys is read
with NumPy alone. Convert once on a machine with PyTorch::

    python -m scratchnet.pretrained alexnet-owt-7be5be79.pth alexnet.npz

The network expects images scaled to [0, 1] and normalised per channel with :data:`IMAGENET_MEAN` and
:data:`IMAGENET_STD` (the statistics torchvision trained with), at 224×224.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

from scratchnet._paths import atomic_write
from scratchnet.device import Device
from scratchnet.errors import ArgumentParser, fail, parse_args
from scratchnet.models import TORCHVISION_NAMES, AlexNet, Sequential

TORCHVISION_ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel, for images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)

CLASSIFIER_LAYERS = ("fc6", "fc7", "fc8")


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays in a ``.pth`` (through PyTorch) or ``.npz`` file, as ``{torchvision key: np.ndarray}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no weights file at {path}; torchvision's ImageNet AlexNet weights: {TORCHVISION_ALEXNET_URL}"
        )
    if path.suffix not in (".npz", ".pth", ".pt"):
        raise ValueError(f"cannot read {path}: expected a .pth/.pt (PyTorch) or .npz file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a weights file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path} is not a readable .npz weights file ({e})") from None
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading {path} needs PyTorch: pip install 'scratchnet-cnn[reference]' (or torch), or convert "
            f"the file to .npz on a machine that has PyTorch: python -m scratchnet.pretrained "
            f"{path.name} {path.stem}.npz"
        ) from None
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since PyTorch 1.6
        raise ValueError(f"{path} is not a PyTorch weights file (not the zip archive torch.save writes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds (RuntimeError, UnpicklingError, ...)
        raise ValueError(f"{path} is a damaged PyTorch weights file ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors)")
    return {k: v.detach().numpy() for k, v in state.items()}


def from_torchvision(
    torch_state: dict[str, np.ndarray], skip_classifier: bool = False, skip_last_layer: bool = False
) -> dict[str, np.ndarray]:
    """torchvision AlexNet keys and layouts -> our ``{"conv1.W": ..., "fc8.b": ...}`` (Linear W transposed).

    ``skip_classifier`` keeps the convolutional features only (fc6, fc7 and fc8 are left out);
    ``skip_last_layer`` leaves out fc8 only, the usual choice when fine-tuning to other classes. Keys of
    the skipped layers may be absent from ``torch_state``; any other missing or unexpected key is an error.
    """
    skipped = CLASSIFIER_LAYERS if skip_classifier else ("fc8",) if skip_last_layer else ()
    known = [f"{module}.{p}" for module in TORCHVISION_NAMES.values() for p in ("weight", "bias")]
    needed = [
        f"{module}.{p}"
        for layer, module in TORCHVISION_NAMES.items()
        if layer not in skipped
        for p in ("weight", "bias")
    ]
    missing = [k for k in needed if k not in torch_state]
    unexpected = [k for k in torch_state if k not in known]
    if missing or unexpected:
        raise KeyError(
            f"not a torchvision AlexNet state_dict: missing keys {missing}, unexpected keys {unexpected} "
            f"(expected {known})"
        )
    ours = {}
    for layer, module in TORCHVISION_NAMES.items():
        if layer in skipped:
            continue
        weight = np.asarray(torch_state[f"{module}.weight"])
        # Linear: torch's (out, in) -> our (in, out), as a view (load_state_dict makes the one copy)
        ours[f"{layer}.W"] = weight.T if layer.startswith("fc") else weight
        ours[f"{layer}.b"] = np.asarray(torch_state[f"{module}.bias"])
    return ours


def load_torchvision_weights(
    model: Sequential,
    source: str | Path | dict,
    skip_classifier: bool = False,
    skip_last_layer: bool = False,
) -> Sequential:
    """Copy torchvision AlexNet weights (a file, or a dict of its arrays) into ``model``; returns ``model``.

    ``model`` must be ``AlexNet(variant="torchvision")``. To fine-tune for another number of classes,
    build it with the ``num_classes`` of your task and pass ``skip_last_layer=True`` (fc8 keeps its random
    initialisation) or ``skip_classifier=True`` (only conv1..conv5 are loaded).
    """
    name = (model.config or {}).get("name")
    if name != "alexnet-torchvision":
        raise ValueError(
            f"torchvision's AlexNet weights fit AlexNet(variant='torchvision') only, not model {name!r}"
        )
    torch_state = source if isinstance(source, dict) else read_state_dict(source)
    state = from_torchvision(torch_state, skip_classifier=skip_classifier, skip_last_layer=skip_last_layer)
    params = model.params
    mismatched = [
        f"{k}: model {tuple(params[k].shape)}, weights {tuple(v.shape)}"
        for k, v in state.items()
        if tuple(v.shape) != tuple(params[k].shape)
    ]
    if mismatched:
        hint = ""
        if any(m.startswith("fc8.") for m in mismatched):
            hint = (
                " The number of classes differs: to fine-tune, pass skip_last_layer=True (keeps fc6 and fc7) "
                "or skip_classifier=True (features only)."
            )
        raise ValueError("torchvision AlexNet weights do not fit the model: " + "; ".join(mismatched) + hint)
    model.load_state_dict(state, strict=False)
    return model


def load_torchvision_alexnet(
    source: str | Path | dict,
    *,
    device: str | Device = "cpu",
    dtype=np.float32,
    in_channels: int = 3,
    seed: int | None = None,
) -> Sequential:
    """``AlexNet(variant="torchvision")`` with all of torchvision's weights (``.pth``, ``.npz`` or a dict).

    The number of classes comes from the weights (1000 for ImageNet); for fine-tuning, follow with
    ``model.replace_classifier(num_classes)``. ``seed`` seeds the dropout layers (see ``AlexNet``).
    """
    if in_channels != 3:
        raise ValueError(
            f"torchvision's AlexNet weights are for RGB images (3 channels), got in_channels={in_channels}"
        )
    torch_state = source if isinstance(source, dict) else read_state_dict(source)
    last_weight = torch_state.get("classifier.6.weight")
    if last_weight is None:
        raise KeyError("not a torchvision AlexNet state_dict: no key 'classifier.6.weight'")
    num_classes = int(np.shape(last_weight)[0])  # torch Linear weight: (out_features, in_features)
    model = AlexNet(num_classes, variant="torchvision", device=device, dtype=dtype, seed=seed)
    return load_torchvision_weights(model, torch_state)


def convert_to_npz(src: str | Path, dst: str | Path) -> None:
    """Save the arrays of a ``.pth`` state_dict as ``.npz`` (same keys), readable without PyTorch."""
    arrays = read_state_dict(src)
    atomic_write(dst, lambda f: np.savez(f, **arrays))


def main(argv: list[str] | None = None) -> int:
    """``python -m scratchnet.pretrained WEIGHTS.pth OUT.npz``: convert once, then read without PyTorch."""
    parser = ArgumentParser(
        prog="python -m scratchnet.pretrained",
        description="Convert torchvision's AlexNet weights (.pth, read by torch.load with weights_only) "
        "into an .npz file that --pretrained reads without PyTorch.",
    )
    parser.add_argument("weights", metavar="WEIGHTS.pth", help="the torchvision state_dict file")
    parser.add_argument("out", metavar="OUT.npz", help="the .npz file to write")
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    try:
        convert_to_npz(args.weights, args.out)
    except (OSError, ValueError, ImportError) as e:
        return fail(e)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
