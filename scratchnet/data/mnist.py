"""MNIST, Fashion-MNIST and the bundled mini Fashion-MNIST: where the files are found, and loading them.

Both full datasets are four IDX files (see idx.py) with 60,000 training and 10,000 test images of
28 x 28 grey pixels in 10 classes. They are looked for, in this order:

1. `data_dir` (the --data-dir option) itself, then `data_dir/<dataset>`;
2. the cache folder `cache_dir(<dataset>)` (see download.py: $SCRATCHNET_DATA or the XDG cache);
3. for Fashion-MNIST, Debian's copy in /usr/share/datasets/fashion-mnist (`apt-get install
   dataset-fashion-mnist`).

Each file may be gzip-compressed (`.gz`, as published) or raw. Found files are checked by format
(magic number, type, dimensions, counts), never silently skipped: a corrupt file is an error. When
nothing is found and `download=True`, the two files of the requested split are downloaded into the
cache from the canonical URLs (checked against the published md5, as torchvision does).

`fashion-mnist-mini` is a class-balanced subset (5,000 train / 1,000 test images) stored inside the
package, so the default dataset works offline; `tools/make_mini_fashion_mnist.py` made it, see
fashion_mnist_mini_README.md next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchnet.data.dataset import ArrayDataset
from scratchnet.data.download import cache_dir, download
from scratchnet.data.idx import read_idx_pair
from scratchnet.errors import DatasetError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(digit) for digit in range(10)]

# File stems per split (the published names, without .gz) and the image count each split must have.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60_000, "test": 10_000}

SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MINI_FILE = Path(__file__).with_name("fashion_mnist_mini.npz")


@dataclass
class IdxSource:
    """Where an IDX dataset comes from: download mirrors, published md5 of each .gz, local folders."""

    title: str
    classes: list[str]
    mirrors: list[str]
    md5: dict[str, str]
    system_dirs: list[Path] = field(default_factory=list)
    install_hint: str = ""


SOURCES = {
    "mnist": IdxSource(
        title="MNIST",
        classes=MNIST_CLASSES,
        mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": IdxSource(
        title="Fashion-MNIST",
        classes=FASHION_MNIST_CLASSES,
        mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        system_dirs=[SYSTEM_FASHION_MNIST_DIR],
        install_hint="or install Debian's copy: sudo apt-get install dataset-fashion-mnist",
    ),
}


def search_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    """The folders looked in for dataset `name`, in order."""
    dirs = [Path(data_dir), Path(data_dir) / name] if data_dir is not None else []
    return dirs + [cache_dir(name)] + SOURCES[name].system_dirs


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """`stem.gz` or `stem` in `folder`, whichever exists (compressed first)."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def locate_idx_files(name: str, split: str, data_dir: str | Path | None) -> tuple[Path, Path] | None:
    """(images, labels) paths of the first folder holding both files of `split`, or None."""
    for folder in search_dirs(name, data_dir):
        found = [find_idx_file(folder, stem) for stem in SPLIT_FILES[split]]
        if all(found):
            return found[0], found[1]
    return None


def _missing_message(name: str, split: str, data_dir: str | Path | None) -> str:
    source = SOURCES[name]
    names = ", ".join(f"{stem}.gz" for stem in SPLIT_FILES[split])
    looked = "\n".join(f"  {folder}" for folder in search_dirs(name, data_dir))
    hint = f", {source.install_hint}" if source.install_hint else ""
    return (
        f"{source.title} {split} files not found: {names} (gzip or raw).\nLooked in:\n{looked}\n"
        f"Put them in the cache folder {cache_dir(name)} (set $SCRATCHNET_DATA to move the cache), or in a "
        f"folder you pass as --data-dir (data_dir=...){hint}"
        f".\nThey are published at {' or '.join(source.mirrors)}"
    )


def download_split(name: str, split: str) -> tuple[Path, Path]:
    """Download the two `.gz` files of `split` into the cache, keeping one already there."""
    source, folder = SOURCES[name], cache_dir(name)
    paths = []
    for stem in SPLIT_FILES[split]:
        filename = f"{stem}.gz"
        urls = [mirror + filename for mirror in source.mirrors]
        paths.append(find_idx_file(folder, stem) or download(urls, folder / filename, source.md5[filename]))
    return paths[0], paths[1]


def load_idx_dataset(
    name: str, split: str, data_dir: str | Path | None, allow_download: bool, image_size: int | None
) -> ArrayDataset:
    """Load MNIST or Fashion-MNIST (`name`), downloading into the cache if allowed and needed."""
    paths = locate_idx_files(name, split, data_dir)
    if paths is None:
        if not allow_download:
            raise DatasetError(
                f"{_missing_message(name, split, data_dir)}\n(download=False, so none was tried)"
            )
        try:
            paths = download_split(name, split)
        except DatasetError as err:
            raise DatasetError(f"{_missing_message(name, split, data_dir)}\nDownload failed: {err}") from err
    images, labels = read_idx_pair(*paths, count=COUNTS[split])
    return ArrayDataset(name, images, labels, SOURCES[name].classes, image_size)


def load_mini_fashion_mnist(split: str, image_size: int | None) -> ArrayDataset:
    """The bundled class-balanced Fashion-MNIST subset: 5,000 train / 1,000 test images."""
    if not MINI_FILE.is_file():
        raise DatasetError(
            f"the bundled dataset {MINI_FILE} is missing; reinstall scratchnet, or rebuild it with "
            "`python tools/make_mini_fashion_mnist.py` (needs the full Fashion-MNIST)"
        )
    with np.load(MINI_FILE) as archive:
        images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
    return ArrayDataset("fashion-mnist-mini", images[:, None], labels, FASHION_MNIST_CLASSES, image_size)
