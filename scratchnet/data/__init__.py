"""Datasets, batches and augmentation for scratchnet, in plain NumPy.

    import scratchnet.data as D
    train = D.load_dataset("fashion-mnist-mini", split="train")   # bundled: works offline
    train, val = D.random_split(train, val_fraction=0.1, seed=0)
    transform = D.Compose([D.RandomHorizontalFlip(), D.Normalize(*D.MEAN_STD["fashion-mnist-mini"])])
    loader = D.DataLoader(train, batch_size=128, shuffle=True, seed=0, transform=transform)
    for epoch in range(10):
        loader.set_epoch(epoch)
        for x, y in loader:        # x float32 (B, 1, 28, 28), y int64 (B,)
            ...

How the package is organised (each module's docstring explains its part):
    dataset.py     the dataset interface, in-memory datasets, Subset, random_split, subset
    idx.py         the IDX file format of MNIST / Fashion-MNIST
    mnist.py       finding, downloading and loading MNIST, Fashion-MNIST and the bundled mini subset
    cifar.py       CIFAR-10's pickled python batches
    folder.py      an ImageNet-style folder of JPEG/PNG files, decoded with Pillow on access
    download.py    the cache folder, downloads with mirrors, md5 checks and atomic writes
    transforms.py  RandomCrop, RandomHorizontalFlip, Normalize, Compose on float batches
    loader.py      DataLoader: seeded order and augmentation per (seed, epoch), exact resume
"""

from __future__ import annotations

from pathlib import Path

from scratchnet.data.cifar import load_cifar10
from scratchnet.data.dataset import ArrayDataset, Dataset, Subset, balanced_indices, random_split, subset
from scratchnet.data.download import cache_dir
from scratchnet.data.folder import ImageFolder
from scratchnet.data.loader import DataLoader
from scratchnet.data.mnist import load_idx_dataset, load_mini_fashion_mnist
from scratchnet.data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip
from scratchnet.errors import DatasetError

DATASETS = ("fashion-mnist-mini", "fashion-mnist", "mnist", "cifar10", "folder")
DEFAULT_DATASET = "fashion-mnist-mini"

# Per-channel mean and standard deviation of the pixel values scaled to [0, 1], over every pixel of
# the TRAINING split (never the test split: that would leak test information into training).
# fashion-mnist and fashion-mnist-mini were computed here from the files (the tests recompute them);
# mnist and cifar10 are the widely published values for their training sets; "folder" uses the
# ImageNet training-set statistics, the usual choice for natural photographs.
MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist-mini": ((0.2853,), (0.3529,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def load_dataset(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    image_size: int | None = None,
    crop: str = "center",
) -> Dataset:
    """Load one split of a dataset by name (see DATASETS).

    name        "fashion-mnist-mini" (bundled, offline), "fashion-mnist", "mnist", "cifar10", or "folder"
                (an ImageNet-style folder `data_dir/{train,val}/<class>/*.jpg`, see folder.py)
    split       "train" or "test"; a folder also accepts "val" (val/ and test/ are interchangeable)
    data_dir    where to look first (--data-dir); required for "folder"
    download    allow downloading a missing dataset into the cache (never needed for the mini set)
    image_size  square size of the images served; None: the dataset's own size (224 for "folder")
    crop        "folder" only: "center" (deterministic) or "random-resized" (training augmentation at
                decode time, seeded by the DataLoader)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name != "folder" and crop != "center":
        raise ValueError(f"crop={crop!r} applies to the image folder dataset only, not {name!r}")
    if name == "folder":
        if data_dir is None:
            raise DatasetError(
                "the folder dataset needs data_dir (--data-dir): a folder with train/ and val/ sub-folders, "
                "each holding one sub-folder of images per class"
            )
        return ImageFolder(data_dir, split, image_size=image_size or 224, crop=crop)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for {name!r}, got {split!r}")
    if name == "fashion-mnist-mini":
        return load_mini_fashion_mnist(split, image_size)
    if name == "cifar10":
        return load_cifar10(split, data_dir, download, image_size)
    return load_idx_dataset(name, split, data_dir, download, image_size)


__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "MEAN_STD",
    "ArrayDataset",
    "Compose",
    "DataLoader",
    "Dataset",
    "DatasetError",
    "ImageFolder",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Subset",
    "balanced_indices",
    "cache_dir",
    "load_dataset",
    "random_split",
    "subset",
]
