"""CIFAR-10 from the "python version" batches (https://www.cs.toronto.edu/~kriz/cifar.html).

The tarball `cifar-10-python.tar.gz` unpacks to `cifar-10-batches-py/` holding `data_batch_1` ..
`data_batch_5` (10,000 training images each), `test_batch` (10,000) and `batches.meta`. Each batch is a
Python pickle of a dict with bytes keys:

    b"data"    uint8 (10000, 3072): each row one 32 x 32 colour image, the 1024 red values first, then
               green, then blue, each plane row-major, so row.reshape(3, 32, 32) is already (C, H, W)
    b"labels"  list of 10,000 ints in 0..9
and batches.meta holds b"label_names" (10 class names as bytes).

Unpickling can run arbitrary code, so the reader only lets the pickle rebuild NumPy arrays and refuses
anything else (`_ArrayOnlyUnpickler`). Looked for, in order: `data_dir` (the batch folder itself, or a
folder containing `cifar-10-batches-py/`, or `data_dir/cifar10/`), then the cache `cache_dir("cifar10")`.
Failing that, a tarball in the same places is unpacked into the cache, and failing that (download=True)
the tarball is downloaded into the cache (md5 checked) and unpacked.
"""

from __future__ import annotations

import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np

from scratchnet._paths import atomic_write, fsync_folder, remove_orphans, temp_path
from scratchnet.data.dataset import ArrayDataset
from scratchnet.data.download import cache_dir, download
from scratchnet.errors import DatasetError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL = "cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_FOLDER = "cifar-10-batches-py"
META_FILE = "batches.meta"
SPLIT_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
ALL_FILES = [META_FILE] + SPLIT_BATCHES["train"] + SPLIT_BATCHES["test"]


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and NumPy arrays; any other class is refused."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes; harmless
    }

    def find_class(self, module: str, name: str):
        module = module.replace("numpy.core.", "numpy._core.")  # pickles written by NumPy 1.x
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays allowed)")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except Exception as err:  # a damaged pickle fails in many ways: an unknown codec, a size too large, ...
        raise DatasetError(f"CIFAR file {path} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(content, dict):
        raise DatasetError(f"CIFAR file {path} holds a {type(content).__name__}, expected a dict")
    return content


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 3, 32, 32), labels int64 (N,), with every field checked."""
    path = Path(path)
    batch = _unpickle(path)
    if b"data" not in batch or b"labels" not in batch:
        raise DatasetError(
            f"CIFAR batch {path} lacks b'data' or b'labels' (keys: {sorted(map(repr, batch))})"
        )
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"CIFAR batch {path}: data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"CIFAR batch {path}: {labels.shape} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"CIFAR batch {path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)  # (N, C, H, W): see the module docstring


def read_label_names(path: str | Path) -> list[str]:
    """The 10 class names from batches.meta."""
    meta = _unpickle(Path(path))
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DatasetError(f"CIFAR meta file {path} lacks a list of 10 b'label_names'")
    return [name.decode() if isinstance(name, bytes) else str(name) for name in names]


def search_dirs(data_dir: str | Path | None) -> list[Path]:
    """Folders that may hold `cifar-10-batches-py/` (or be it), or the tarball, in search order."""
    dirs = [Path(data_dir), Path(data_dir) / "cifar10"] if data_dir is not None else []
    return dirs + [cache_dir("cifar10")]


def _batch_folder(folder: Path) -> Path | None:
    """`folder` or `folder/cifar-10-batches-py` if it holds batches.meta."""
    for candidate in (folder, folder / BATCH_FOLDER):
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def extract(tarball: Path, destination: Path) -> Path:
    """Unpack only the known batch files of `tarball` into `destination/cifar-10-batches-py/`.

    Members are looked up by their expected names (never extracting whatever paths the archive
    contains) and written into a temporary folder, which is renamed into place only once every file is
    complete: a failed or interrupted extraction never leaves a partial `cifar-10-batches-py/`.
    """
    out_dir = destination / BATCH_FOLDER
    destination.mkdir(parents=True, exist_ok=True)
    remove_orphans(destination)  # what a killed extraction left
    work_dir = temp_path(out_dir)
    work_dir.mkdir()
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for name in ALL_FILES:
                member = tar.extractfile(f"{BATCH_FOLDER}/{name}")
                if member is None:  # a directory or link under that name
                    raise KeyError(name)
                atomic_write(work_dir / name, lambda f, member=member: shutil.copyfileobj(member, f))
        if out_dir.exists():  # an incomplete folder (no batches.meta, or a missing batch) left by older code
            shutil.rmtree(out_dir)
        work_dir.replace(out_dir)
        fsync_folder(destination)
    except KeyError as err:
        raise DatasetError(f"CIFAR tarball {tarball} lacks {BATCH_FOLDER}/{err.args[0]}") from err
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"CIFAR tarball {tarball} is corrupt or unreadable: {err}") from err
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return out_dir


def _missing_message(data_dir: str | Path | None) -> str:
    looked = "\n".join(f"  {folder}" for folder in search_dirs(data_dir))
    return (
        f"CIFAR-10 not found: neither {BATCH_FOLDER}/ (with {', '.join(ALL_FILES)}) nor {TARBALL}.\n"
        f"Looked in:\n{looked}\nPut {TARBALL} (or its unpacked {BATCH_FOLDER}/) in the cache folder "
        f"{cache_dir('cifar10')} (set $SCRATCHNET_DATA to move the cache), or in a folder you pass as "
        f"--data-dir (data_dir=...).\nIt is published at {URL} (md5 {TARBALL_MD5})"
    )


def locate(data_dir: str | Path | None, allow_download: bool) -> Path:
    """The batch folder: found, unpacked from a local tarball, or downloaded and unpacked."""
    dirs = search_dirs(data_dir)
    for folder in dirs:
        if (found := _batch_folder(folder)) is not None:
            return found
    for folder in dirs:
        if (folder / TARBALL).is_file():
            return extract(folder / TARBALL, cache_dir("cifar10"))
    if not allow_download:
        raise DatasetError(_missing_message(data_dir) + "\n(download=False, so none was tried)")
    try:
        tarball = download([URL], cache_dir("cifar10") / TARBALL, TARBALL_MD5)
    except DatasetError as err:
        raise DatasetError(f"{_missing_message(data_dir)}\nDownload failed: {err}") from err
    return extract(tarball, cache_dir("cifar10"))


def load_cifar10(
    split: str, data_dir: str | Path | None, allow_download: bool, image_size: int | None
) -> ArrayDataset:
    """CIFAR-10's training (5 batches, 50,000 images) or test (10,000) split as uint8 (N, 3, 32, 32)."""
    folder = locate(data_dir, allow_download)
    missing = [name for name in ALL_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)}")
    batches = [read_batch(folder / name) for name in SPLIT_BATCHES[split]]
    images = np.concatenate([images for images, _ in batches])  # (N, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in batches])
    return ArrayDataset("cifar10", images, labels, read_label_names(folder / META_FILE), image_size)
