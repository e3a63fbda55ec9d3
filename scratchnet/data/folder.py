"""An image folder in the ImageNet layout, decoded with Pillow only when a batch asks for the images.

    root/
      train/  <class name>/<image files>    one sub-folder per class
      val/    <class name>/<image files>    (or test/)

Class names are the sorted sub-folder names of `train/` (so labels agree between splits; a validation
folder may lack some classes but may not add new ones). Only files with an image extension count.
Every image is converted to RGB and made `image_size` x `image_size` (default 224) in one of two ways:

crop="center" (evaluation, and the default): resize so the shorter side is image_size * 256/224 (256
    for 224, the usual ImageNet evaluation recipe), then cut the central image_size x image_size square.
    Deterministic.
crop="random-resized" (training augmentation, "Inception-style", as torchvision's RandomResizedCrop):
    pick a rectangle covering a random fraction `scale` of the image area with a random aspect ratio in
    `ratio` (log-uniform), at a random position, and resize it to image_size x image_size. Done at decode
    time, on the full-resolution image, which is why it lives here rather than among the batch
    transforms. The randomness comes from the `rng` the DataLoader passes to `get_batch`, derived from
    (seed, epoch, batch), so runs and resumed runs crop identically.

Nothing is decoded up front: `labels` comes from the folder listing, and `get_batch` opens just the
requested files, which keeps ImageNet-sized folders usable on a laptop.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
from PIL import Image

from scratchnet.data.dataset import Dataset
from scratchnet.data.image import read_image
from scratchnet.errors import DatasetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
EVAL_RESIZE_RATIO = 256 / 224
CROPS = ("center", "random-resized")
# Which sub-folders may hold each split, in order of preference.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "test"), "test": ("test", "val")}


def _class_folders(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFolder(Dataset):
    """Images in `root/<split>/<class>/`, decoded on access; see the module docstring for the crops."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 224,
        crop: str = "center",
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"split must be one of {list(SPLIT_FOLDERS)} for an image folder, got {split!r}")
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(
                f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}"
            )
        self.root = Path(root)
        self.name = "folder"
        self.image_size = int(image_size)
        self.crop, self.scale, self.ratio = crop, scale, ratio
        self.shape = (3, self.image_size, self.image_size)
        split_dir = self._split_dir(split)
        # Classes come from train/ so that a label means the same class in every split.
        class_root = self.root / "train" if (self.root / "train").is_dir() else split_dir
        self.classes = [p.name for p in _class_folders(class_root)]
        if not self.classes:
            raise DatasetError(
                f"image folder {class_root} has no class sub-folders (expected {class_root}/<class>/*.png)"
            )
        self.files: list[Path] = []
        labels = []
        for folder in _class_folders(split_dir):
            if folder.name not in self.classes:
                raise DatasetError(f"{folder} is a class that {class_root} does not have ({self.classes})")
            files = _image_files(folder)
            if not files:
                raise DatasetError(
                    f"class folder {folder} has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            self.files += files
            labels += [self.classes.index(folder.name)] * len(files)
        if not self.files:  # refused now, not after a whole training run that has nothing to be tested on
            raise DatasetError(
                f"the {split} split {split_dir} holds no images: expected {split_dir}/<class>/*.png"
            )
        self.labels = np.asarray(labels, dtype=np.int64)

    def _split_dir(self, split: str) -> Path:
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist or is not a folder")
        for name in SPLIT_FOLDERS[split]:
            if (self.root / name).is_dir():
                return self.root / name
        wanted = " or ".join(f"{self.root / name}/" for name in SPLIT_FOLDERS[split])
        raise DatasetError(
            f"image folder {self.root} has no {split} split: expected {wanted} with one sub-folder per class"
        )

    def with_crop(self, crop: str) -> ImageFolder:
        """A copy that crops as `crop` says (the file list is shared, nothing is re-scanned)."""
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        view = copy.copy(self)
        view.crop = crop
        return view

    def decode(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Image `index` as uint8 (3, image_size, image_size), cropped as `self.crop` says."""
        path = self.files[index]
        try:
            image = read_image(path, "RGB")
        except (OSError, ValueError) as err:  # read_image's message names the file and what is wrong
            raise DatasetError(str(err)) from err
        if self.crop == "center":
            box = center_crop_box(image.width, image.height, self.image_size)
        else:
            box = random_resized_crop_box(image.width, image.height, self.scale, self.ratio, rng)
        resized = image.resize((self.image_size, self.image_size), Image.BILINEAR, box=box)
        return np.asarray(resized).transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)

    def get_batch(
        self, indices: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        indices = self._check_indices(indices)
        if self.crop == "random-resized" and rng is None:
            raise ValueError(
                "crop='random-resized' draws random crops and needs rng=np.random.Generator "
                "(the DataLoader passes one per batch); use crop='center' for deterministic images"
            )
        images = np.empty((len(indices), *self.shape), dtype=np.uint8)  # (B, 3, S, S)
        for b, index in enumerate(indices):
            images[b] = self.decode(int(index), rng)
        return images, self.labels[indices]


def center_crop_box(width: int, height: int, size: int) -> tuple[float, float, float, float]:
    """Box (left, top, right, bottom) in source pixels whose resize to size x size is "resize the shorter
    side to size * 256/224, then cut the central size x size square", in a single resampling step."""
    scale = size * EVAL_RESIZE_RATIO / min(width, height)  # source pixels -> resized pixels
    crop = min(size / scale, width, height)  # the output square measured in source pixels
    left, top = (width - crop) / 2, (height - crop) / 2
    return (left, top, left + crop, top + crop)


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """A random box covering a fraction in `scale` of the area, aspect ratio (w/h) log-uniform in `ratio`.

    Up to 10 tries for a box that fits (torchvision's algorithm); then the whole image, with its aspect
    ratio clamped into `ratio`, centred.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return (left, top, left + w, top + h)
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
    w, h = min(w, width), min(h, height)
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)
