"""IDX reading (generated and corrupt files), the real Fashion-MNIST, and the bundled mini subset."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import scratchnet.data as D
from scratchnet.data import mnist
from scratchnet.data.idx import read_idx, read_idx_pair, write_idx
from scratchnet.errors import DatasetError

SYSTEM_DIR = mnist.SYSTEM_FASHION_MNIST_DIR
needs_system_copy = pytest.mark.skipif(
    not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"no system Fashion-MNIST in {SYSTEM_DIR} (apt-get install dataset-fashion-mnist)",
)


def _pair(tmp_path, n=7, n_labels=None, compress=True):
    """Write n random 28x28 images and labels as IDX; return (paths, images, labels)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_labels or n, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    paths = (tmp_path / f"img-idx3-ubyte{suffix}", tmp_path / f"lbl-idx1-ubyte{suffix}")
    write_idx(paths[0], images)
    write_idx(paths[1], labels)
    return paths, images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    (images_path, labels_path), images, labels = _pair(tmp_path, compress=compress)
    assert (images_path.read_bytes()[:2] == b"\x1f\x8b") == compress
    got_images, got_labels = read_idx_pair(images_path, labels_path)
    assert got_images.shape == (7, 1, 28, 28) and got_images.dtype == np.uint8
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images[:, 0], images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64])
def test_idx_other_types_are_big_endian_on_disk(tmp_path, dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", array)
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw[3] == 3 and int.from_bytes(raw[4:8], "big") == 2  # ndim, first dimension
    assert raw[16:].startswith(np.asarray(array.flat[0], dtype=np.dtype(dtype).newbyteorder(">")).tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)


def test_magic_numbers_are_the_famous_ones(tmp_path):
    (images_path, labels_path), _, _ = _pair(tmp_path, compress=False)
    assert int.from_bytes(images_path.read_bytes()[:4], "big") == 2051
    assert int.from_bytes(labels_path.read_bytes()[:4], "big") == 2049


def _corrupt(tmp_path, data: bytes, name="bad-idx3-ubyte"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda raw: b"\x12\x34" + raw[2:], "bad magic number"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "unknown element type 0x07"),
        (lambda raw: raw[:-10], "truncated"),
        (lambda raw: raw + b"\x00", "longer than its header says"),
        (lambda raw: raw[:9], "truncated inside its header"),
        (lambda raw: raw[:3], "too short"),
    ],
)
def test_corrupt_idx_names_file_and_problem(tmp_path, edit, message):
    (images_path, _), _, _ = _pair(tmp_path, compress=False)
    path = _corrupt(tmp_path, edit(images_path.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    (images_path, _), _, _ = _pair(tmp_path)
    raw = images_path.read_bytes()
    path = _corrupt(tmp_path, raw[: len(raw) // 2], "half.gz")
    with pytest.raises(DatasetError, match="corrupt or truncated gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_of_truncated_idx_is_reported(tmp_path):
    (images_path, _), _, _ = _pair(tmp_path, compress=False)
    path = _corrupt(tmp_path, gzip.compress(images_path.read_bytes()[:-1]), "short.gz")
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)


def test_pair_count_mismatch(tmp_path):
    (images_path, labels_path), _, _ = _pair(tmp_path, n=7, n_labels=6)
    with pytest.raises(DatasetError, match="count mismatch: .* 7 images .* 6 labels"):
        read_idx_pair(images_path, labels_path)


def test_pair_expected_count_and_shape_and_label_range(tmp_path):
    (images_path, labels_path), _, _ = _pair(tmp_path)
    with pytest.raises(DatasetError, match="7 images, expected 60000"):
        read_idx_pair(images_path, labels_path, count=60000)
    with pytest.raises(DatasetError, match=r"expected uint8 \(N, 32, 32\)"):
        read_idx_pair(images_path, labels_path, image_shape=(32, 32))
    write_idx(labels_path, np.full(7, 10, dtype=np.uint8))
    with pytest.raises(DatasetError, match="label 10, expected 0..9"):
        read_idx_pair(images_path, labels_path)
    with pytest.raises(DatasetError, match="expected uint8 \\(N,\\)"):  # labels and images swapped
        read_idx_pair(images_path, images_path, image_shape=(28, 28))


# --- the real Fashion-MNIST (Debian's copy) -------------------------------------------------------


@needs_system_copy
@pytest.mark.parametrize("split, count", [("train", 60000), ("test", 10000)])
def test_system_fashion_mnist(split, count, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path))  # an empty cache: the system copy must be used
    ds = D.load_dataset("fashion-mnist", split=split, download=False)
    assert len(ds) == count and ds.shape == (1, 28, 28) and ds.num_classes == 10
    images, labels = ds.get_batch(np.arange(count))
    assert images.shape == (count, 1, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, count // 10))
    np.testing.assert_array_equal(ds.labels, labels)
    assert images.max() == 255 and images.min() == 0
    if split == "train":
        x = images.astype(np.float64) / 255
        mean, std = D.MEAN_STD["fashion-mnist"]
        assert round(x.mean(), 4) == mean[0] and round(x.std(), 4) == std[0]


# --- the bundled mini subset --------------------------------------------------------------------


@pytest.mark.parametrize("split, per_class", [("train", 500), ("test", 100)])
def test_mini_dataset_shape_balance_dtype(split, per_class):
    ds = D.load_dataset("fashion-mnist-mini", split=split)
    assert ds.name == "fashion-mnist-mini" and ds.classes[0] == "T-shirt/top" and ds.num_classes == 10
    assert len(ds) == 10 * per_class and ds.shape == (1, 28, 28)
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=10), np.full(10, per_class))
    images, labels = ds.get_batch(np.arange(len(ds)))
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert images.std() > 50  # real pictures, not blank


def test_mini_dataset_statistics_match_mean_std():
    images, _ = D.load_dataset("fashion-mnist-mini").get_batch(np.arange(5000))
    x = images.astype(np.float64) / 255
    mean, std = D.MEAN_STD["fashion-mnist-mini"]
    assert round(x.mean(), 4) == mean[0] and round(x.std(), 4) == std[0]


def test_mini_file_is_small():
    assert mnist.MINI_FILE.stat().st_size <= 3_000_000


@needs_system_copy
@pytest.mark.parametrize("split", ["train", "test"])
def test_mini_dataset_is_the_documented_subset_of_the_full_one(split, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path))
    full = D.load_dataset("fashion-mnist", split=split, download=False)
    mini = D.load_dataset("fashion-mnist-mini", split=split)
    with np.load(mnist.MINI_FILE) as archive:
        indices = archive[f"{split}_indices"].astype(np.int64)
    # The stored positions are what the generating script's seeded choice gives ...
    per_class = len(mini) // 10
    np.testing.assert_array_equal(indices, D.balanced_indices(full.labels, 10 * per_class, seed=0))
    # ... and the images and labels there are exactly the full dataset's.
    full_images, full_labels = full.get_batch(indices)
    mini_images, mini_labels = mini.get_batch(np.arange(len(mini)))
    np.testing.assert_array_equal(mini_images, full_images)
    np.testing.assert_array_equal(mini_labels, full_labels)


def test_a_100_gb_sparse_idx_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    with open(path, "wb") as f:
        f.truncate(100 * 10**9)  # sparse: no disk space used, but reading it would need 100 GB of memory
    with pytest.raises(DatasetError, match="100,000,000,000 bytes, more than"):
        read_idx(path)
