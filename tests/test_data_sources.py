"""Finding, downloading and reading datasets: MNIST-style IDX sets, CIFAR-10 batches, image folders.

No test touches the network: downloads come from file:// URLs of generated files, a fake opener, or a
closed port on 127.0.0.1. The cache is a temporary folder ($SCRATCHNET_DATA) in every test.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scratchnet.data as D
from scratchnet.data import cifar, download, folder, mnist
from scratchnet.data.idx import write_idx
from scratchnet.errors import DatasetError

SMALL_COUNTS = {"train": 20, "test": 10}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache, no system Fashion-MNIST, and small expected IDX counts for generated files."""
    monkeypatch.setenv("SCRATCHNET_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist.SOURCES["fashion-mnist"], "system_dirs", [tmp_path / "no-system-copy"])
    monkeypatch.setattr(mnist, "COUNTS", SMALL_COUNTS)
    return tmp_path / "cache"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- downloads ------------------------------------------------------------------------------------


def test_cache_location_follows_environment(monkeypatch, tmp_path):
    assert D.cache_dir("mnist") == tmp_path / "cache" / "mnist"
    monkeypatch.delenv("SCRATCHNET_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert D.cache_dir("cifar10") == tmp_path / "xdg" / "scratchnet" / "cifar10"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert D.cache_dir("mnist") == Path.home() / ".cache" / "scratchnet" / "mnist"


def test_download_checksum_ok_lands_in_cache(tmp_path, cache):
    source = tmp_path / "served.bin"
    source.write_bytes(os.urandom(3000))
    destination = cache / "x" / "file.bin"
    assert download.download([source.as_uri()], destination, md5(source), progress=False) == destination
    assert destination.read_bytes() == source.read_bytes()
    assert leftovers(destination.parent) == []


def test_download_checksum_mismatch_leaves_nothing(tmp_path, cache):
    source = tmp_path / "served.bin"
    source.write_bytes(b"not the published file")
    destination = cache / "x" / "file.bin"
    with pytest.raises(DatasetError, match="md5 mismatch") as info:
        download.download([source.as_uri()], destination, "0" * 32, progress=False)
    assert source.as_uri() in str(info.value)
    assert not destination.exists() and leftovers(destination.parent) == []


def test_download_falls_back_to_next_mirror(tmp_path, cache):
    source = tmp_path / "served.bin"
    source.write_bytes(b"payload")
    urls = [(tmp_path / "missing.bin").as_uri(), source.as_uri()]
    destination = download.download(urls, cache / "file.bin", md5(source), progress=False)
    assert destination.read_bytes() == b"payload"


def test_download_offline_with_fake_opener(cache):
    calls = []

    def offline(url, timeout):
        calls.append((url, timeout))
        raise urllib.error.URLError("no network")

    urls = ["https://a.example/f.gz", "https://b.example/f.gz"]
    with pytest.raises(DatasetError, match="could not download f.gz") as info:
        download.download(urls, cache / "f.gz", "0" * 32, progress=False, opener=offline)
    assert [url for url, _ in calls] == urls and all(timeout <= 30 for _, timeout in calls)
    assert "a.example" in str(info.value) and "no network" in str(info.value)
    assert not (cache / "f.gz").exists()


# --- MNIST-style datasets -------------------------------------------------------------------------


def write_mnist_files(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The four IDX .gz files of a small MNIST-like set; returns the train images for comparison."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in SMALL_COUNTS.items():
        images_stem, labels_stem = mnist.SPLIT_FILES[split]
        arrays[split] = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{images_stem}.gz", arrays[split])
        write_idx(folder / f"{labels_stem}.gz", np.arange(count, dtype=np.uint8) % 10)
    return arrays


@pytest.mark.parametrize("sub_folder", ["", "mnist"])
def test_mnist_from_data_dir(tmp_path, sub_folder):
    arrays = write_mnist_files(tmp_path / "data" / sub_folder)
    ds = D.load_dataset("mnist", split="test", data_dir=tmp_path / "data", download=False)
    assert len(ds) == 10 and ds.classes == [str(d) for d in range(10)] and ds.shape == (1, 28, 28)
    images, labels = ds.get_batch(np.array([3, 1]))
    np.testing.assert_array_equal(images[:, 0], arrays["test"][[3, 1]])
    np.testing.assert_array_equal(labels, [3, 1])


def test_data_dir_comes_before_the_cache(tmp_path, cache):
    cached = write_mnist_files(cache / "fashion-mnist", seed=1)
    given = write_mnist_files(tmp_path / "given", seed=2)
    from_dir = D.load_dataset("fashion-mnist", data_dir=tmp_path / "given", download=False)
    from_cache = D.load_dataset("fashion-mnist", download=False)
    np.testing.assert_array_equal(from_dir.get_batch(np.arange(20))[0][:, 0], given["train"])
    np.testing.assert_array_equal(from_cache.get_batch(np.arange(20))[0][:, 0], cached["train"])
    assert from_cache.classes[9] == "Ankle boot"


def test_cache_comes_before_the_system_copy(tmp_path, cache, monkeypatch):
    system = write_mnist_files(tmp_path / "system", seed=3)
    monkeypatch.setattr(mnist.SOURCES["fashion-mnist"], "system_dirs", [tmp_path / "system"])
    ds = D.load_dataset("fashion-mnist", download=False)
    np.testing.assert_array_equal(ds.get_batch(np.arange(20))[0][:, 0], system["train"])
    cached = write_mnist_files(cache / "fashion-mnist", seed=4)
    ds = D.load_dataset("fashion-mnist", download=False)
    np.testing.assert_array_equal(ds.get_batch(np.arange(20))[0][:, 0], cached["train"])


def test_corrupt_local_file_is_an_error_not_skipped(tmp_path, cache):
    write_mnist_files(cache / "mnist")  # a good copy further down the search order
    write_mnist_files(tmp_path / "given")
    labels_file = tmp_path / "given" / "train-labels-idx1-ubyte.gz"
    labels_file.write_bytes(labels_file.read_bytes()[:-8])
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz"):
        D.load_dataset("mnist", data_dir=tmp_path / "given", download=False)


def test_mnist_download_into_cache(tmp_path, cache, monkeypatch):
    served = tmp_path / "served"
    write_mnist_files(served)
    checksums = {path.name: md5(path) for path in served.iterdir()}
    monkeypatch.setattr(mnist.SOURCES["mnist"], "mirrors", [f"{served.as_uri()}/"])
    monkeypatch.setattr(mnist.SOURCES["mnist"], "md5", checksums)
    ds = D.load_dataset("mnist", split="train")
    assert len(ds) == 20
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    assert D.load_dataset("mnist", split="train", download=False).labels.tolist() == ds.labels.tolist()


def test_mnist_download_checksum_mismatch(tmp_path, cache, monkeypatch):
    served = tmp_path / "served"
    write_mnist_files(served)
    monkeypatch.setattr(mnist.SOURCES["mnist"], "mirrors", [f"{served.as_uri()}/"])
    with pytest.raises(DatasetError, match="md5 mismatch"):
        D.load_dataset("mnist")  # the generated files do not have the published checksums
    assert not list((cache / "mnist").iterdir())


def test_offline_download_fails_fast_with_instructions(tmp_path, cache, monkeypatch):
    # Port 9 (discard) on the loopback interface: connection refused at once, no network involved.
    monkeypatch.setattr(mnist.SOURCES["fashion-mnist"], "mirrors", ["http://127.0.0.1:9/"])
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        D.load_dataset("fashion-mnist", split="test", data_dir=tmp_path / "mine")
    assert time.monotonic() - start < 10
    message = str(info.value)
    for expected in [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        str(tmp_path / "mine"),
        str(cache / "fashion-mnist"),
        "--data-dir",
        "apt-get install dataset-fashion-mnist",
        "Download failed",
        "http://127.0.0.1:9/t10k-images-idx3-ubyte.gz",
    ]:
        assert expected in message


def test_missing_without_download_names_every_place_looked(tmp_path, cache):
    with pytest.raises(DatasetError) as info:
        D.load_dataset("mnist", data_dir=tmp_path / "mine", download=False)
    message = str(info.value)
    for place in [tmp_path / "mine", tmp_path / "mine" / "mnist", cache / "mnist"]:
        assert f"  {place}\n" in message
    assert "download=False" in message and "apt-get" not in message


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*fashion-mnist-mini.*cifar10.*folder"):
        D.load_dataset("imagenet")


def test_bad_split_and_crop_options():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        D.load_dataset("fashion-mnist-mini", split="val")
    with pytest.raises(ValueError, match="image folder dataset only"):
        D.load_dataset("fashion-mnist-mini", crop="random-resized")


def test_image_size_resizes_in_memory_datasets():
    ds = D.load_dataset("fashion-mnist-mini", split="test", image_size=32)
    images, _ = ds.get_batch(np.arange(4))
    assert ds.shape == (1, 32, 32) and images.shape == (4, 1, 32, 32) and images.dtype == np.uint8
    plain = D.load_dataset("fashion-mnist-mini", split="test", image_size=28)
    assert plain.shape == (1, 28, 28) and plain.image_size is None


# --- CIFAR-10 -------------------------------------------------------------------------------------

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(batch_folder: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    """Small CIFAR-format batches (pickles with bytes keys, as the real ones); returns each batch's data."""
    batch_folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    meta = {b"label_names": [name.encode() for name in LABEL_NAMES], b"num_cases_per_batch": per_batch}
    (batch_folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    data = {}
    for i, name in enumerate(cifar.SPLIT_BATCHES["train"] + cifar.SPLIT_BATCHES["test"]):
        data[name] = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        batch = {b"data": data[name], b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        # protocol 2 is what the original Python 2 files use; also check the current default
        (batch_folder / name).write_bytes(pickle.dumps(batch, protocol=2 if i % 2 else None))
    return data


def test_cifar_from_data_dir_layout_and_channel_order(tmp_path):
    data = write_cifar(tmp_path / "data" / "cifar-10-batches-py")
    train = D.load_dataset("cifar10", split="train", data_dir=tmp_path / "data", download=False)
    test = D.load_dataset("cifar10", split="test", data_dir=tmp_path / "data" / "cifar-10-batches-py")
    assert len(train) == 20 and len(test) == 4 and train.classes == LABEL_NAMES and train.shape == (3, 32, 32)
    images, labels = train.get_batch(np.array([5]))  # batch 2, image 1
    row = data["data_batch_2"][1]
    c, h, w = 2, 7, 19  # blue plane: the third block of 1024 values, row-major inside
    assert images[0, c, h, w] == row[c * 1024 + h * 32 + w]
    assert labels.dtype == np.int64 and test.labels.dtype == np.int64


def test_cifar_tarball_is_unpacked_into_cache(tmp_path, cache):
    data = write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    (tmp_path / "given").mkdir()
    with tarfile.open(tmp_path / "given" / cifar.TARBALL, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = D.load_dataset("cifar10", split="test", data_dir=tmp_path / "given", download=False)
    assert (cache / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    np.testing.assert_array_equal(ds.get_batch(np.arange(4))[0].reshape(4, -1), data["test_batch"])


def test_cifar_download(tmp_path, cache, monkeypatch):
    write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / cifar.TARBALL, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar, "URL", (tmp_path / cifar.TARBALL).as_uri())
    monkeypatch.setattr(cifar, "TARBALL_MD5", md5(tmp_path / cifar.TARBALL))
    assert len(D.load_dataset("cifar10")) == 20
    assert (cache / "cifar10" / cifar.TARBALL).is_file()


def test_cifar_truncated_tarball(tmp_path, cache):
    write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    (tmp_path / "given").mkdir()
    tarball = tmp_path / "given" / cifar.TARBALL
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    tarball.write_bytes(tarball.read_bytes()[:300])
    with pytest.raises(DatasetError, match="corrupt or unreadable|lacks"):
        D.load_dataset("cifar10", data_dir=tmp_path / "given", download=False)


def test_cifar_refuses_pickled_code(tmp_path):
    write_cifar(tmp_path / "c")

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DatasetError, match="refusing to load .*system"):
        D.load_dataset("cifar10", split="test", data_dir=tmp_path / "c")


def test_cifar_bad_batch_contents(tmp_path):
    write_cifar(tmp_path / "c")
    bad = {b"data": np.zeros((4, 3000), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(
        DatasetError, match=r"test_batch: data is uint8 \(4, 3000\), expected uint8 \(N, 3072\)"
    ):
        D.load_dataset("cifar10", split="test", data_dir=tmp_path / "c")
    os.remove(tmp_path / "c" / "data_batch_3")
    with pytest.raises(DatasetError, match="lacks data_batch_3"):
        D.load_dataset("cifar10", split="train", data_dir=tmp_path / "c")


def test_cifar_missing_names_places(tmp_path, cache):
    with pytest.raises(DatasetError) as info:
        D.load_dataset("cifar10", data_dir=tmp_path / "mine", download=False)
    for expected in [str(tmp_path / "mine"), str(cache / "cifar10"), "cifar-10-python.tar.gz", "--data-dir"]:
        assert expected in str(info.value)


# --- image folders --------------------------------------------------------------------------------


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_tree(root: Path) -> dict[str, np.ndarray]:
    """train/{bird,cat,dog} and val/{cat,dog} with PNG and JPEG images of assorted sizes."""
    rng = np.random.default_rng(0)
    pictures = {}
    for split, classes in {"train": ["cat", "dog", "bird"], "val": ["cat", "dog"]}.items():
        for k, cls in enumerate(classes):
            for i, (height, width) in enumerate([(32, 32), (32, 64), (50, 40)][: 3 - (split == "val")]):
                picture = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
                name = f"{split}/{cls}/{i}.{'png' if (i + k) % 2 == 0 else 'JPEG'}"
                save(root / name, picture)
                pictures[name] = picture
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return pictures


def test_folder_classes_labels_and_shapes(tmp_path):
    make_tree(tmp_path)
    train = D.load_dataset("folder", split="train", data_dir=tmp_path, image_size=28)
    val = D.load_dataset("folder", split="val", data_dir=tmp_path, image_size=28)
    assert train.classes == ["bird", "cat", "dog"] and val.classes == train.classes
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and val.labels.tolist() == [1, 1, 2, 2]
    assert len(train) == 9 and train.shape == (3, 28, 28)
    images, labels = train.get_batch(np.array([8, 0, 4]))
    assert images.shape == (3, 3, 28, 28) and images.dtype == np.uint8 and labels.tolist() == [2, 0, 1]
    assert D.load_dataset("folder", split="test", data_dir=tmp_path).files == val.files  # val/ serves "test"
    assert D.load_dataset("folder", data_dir=tmp_path).shape == (3, 224, 224)


def test_folder_center_crop_is_exact_at_scale_one(tmp_path):
    pictures = make_tree(tmp_path)
    # image_size 28 -> shorter side resized to 28 * 256/224 = 32: the 32-pixel-high PNGs keep their scale,
    # so the result is exactly their central 28 x 28 pixels.
    ds = D.load_dataset("folder", data_dir=tmp_path, image_size=28)
    for name, (top, left) in [("train/bird/0.png", (2, 2)), ("train/dog/1.png", (2, 18))]:
        index = ds.files.index(tmp_path / name)
        image = ds.get_batch(np.array([index]))[0][0]  # (3, 28, 28)
        expected = pictures[name][top : top + 28, left : left + 28].transpose(2, 0, 1)
        np.testing.assert_array_equal(image, expected)


def test_folder_grayscale_becomes_rgb(tmp_path):
    grey = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    save(tmp_path / "train" / "a" / "g.png", grey)
    image = D.load_dataset("folder", data_dir=tmp_path, image_size=28).get_batch(np.array([0]))[0][0]
    assert image.shape == (3, 28, 28)
    np.testing.assert_array_equal(image[0], grey[2:30, 2:30])
    np.testing.assert_array_equal(image[0], image[2])


def test_folder_random_resized_crop_is_seeded(tmp_path):
    make_tree(tmp_path)
    ds = D.load_dataset("folder", data_dir=tmp_path, image_size=16, crop="random-resized")
    with pytest.raises(ValueError, match="needs rng"):
        ds.get_batch(np.arange(3))
    first = ds.get_batch(np.arange(9), rng=np.random.default_rng(1))[0]
    again = ds.get_batch(np.arange(9), rng=np.random.default_rng(1))[0]
    other = ds.get_batch(np.arange(9), rng=np.random.default_rng(2))[0]
    center = D.load_dataset("folder", data_dir=tmp_path, image_size=16).get_batch(np.arange(9))[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and not np.array_equal(first, center)
    loader = D.DataLoader(ds, batch_size=4, seed=3)
    loader.set_epoch(2)
    x1 = np.concatenate([x for x, _ in loader])
    np.testing.assert_array_equal(x1, np.concatenate([x for x, _ in loader]))


def test_validation_split_of_a_randomly_cropped_folder_can_be_centre_cropped(tmp_path):
    make_tree(tmp_path)
    train = D.load_dataset("folder", data_dir=tmp_path, image_size=16, crop="random-resized")
    _, val = D.random_split(train, 0.5, seed=0)
    centred = val.with_crop("center")
    assert train.crop == "random-resized" and val.dataset.crop == "random-resized"  # originals untouched
    expected = D.load_dataset("folder", data_dir=tmp_path, image_size=16).get_batch(val.indices)[0]
    np.testing.assert_array_equal(centred.get_batch(np.arange(len(val)))[0], expected)
    assert D.load_dataset("fashion-mnist-mini").with_crop("center").name == "fashion-mnist-mini"
    with pytest.raises(ValueError, match="no decode-time crops"):
        D.load_dataset("fashion-mnist-mini").with_crop("random-resized")


def test_random_resized_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for width, height in [(100, 80), (40, 300), (7, 5)]:
        for _ in range(200):
            left, top, right, bottom = folder.random_resized_crop_box(
                width, height, (0.3, 0.6), (0.5, 2.0), rng
            )
            w, h = right - left, bottom - top
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            if (width, height) == (100, 80):  # large enough that rounding barely matters
                assert 0.28 <= w * h / (width * height) <= 0.62 and 0.45 <= w / h <= 2.1
    # a very thin image cannot hold any allowed box: fall back to the centred largest allowed ratio
    assert folder.random_resized_crop_box(300, 10, (0.9, 1.0), (0.75, 1.33), rng) == (143, 0, 156, 10)


def class_without_images(split_dir: Path) -> None:
    save(split_dir / "a" / "x.png", np.zeros((4, 4), np.uint8))
    save(split_dir / "b" / "x.png", np.zeros((4, 4), np.uint8))
    (split_dir / "b" / "x.png").rename(split_dir / "b" / "x.txt")  # only a non-image file left


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "val").mkdir(parents=True), "has no train split"),
        (lambda root: (root / "train").mkdir(parents=True), "no class sub-folders"),
        (lambda root: (root / "train" / "empty").mkdir(parents=True), "has no image files"),
        (lambda root: class_without_images(root / "train"), "b has no image files"),
    ],
)
def test_folder_malformed_trees(tmp_path, build, message):
    root = tmp_path / "root"
    build(root)
    with pytest.raises(DatasetError, match=message) as info:
        D.load_dataset("folder", data_dir=root)
    assert str(root) in str(info.value)


def test_folder_val_with_unknown_class_and_corrupt_image(tmp_path):
    make_tree(tmp_path)
    save(tmp_path / "val" / "zebra" / "z.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match="zebra is a class that .*train does not have"):
        D.load_dataset("folder", split="val", data_dir=tmp_path)
    (tmp_path / "train" / "cat" / "0.JPEG").write_bytes(b"garbage")
    ds = D.load_dataset("folder", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="0.JPEG is not a PNG, JPEG"):
        ds.get_batch(np.arange(len(ds)))


def test_folder_needs_data_dir():
    with pytest.raises(DatasetError, match="needs data_dir"):
        D.load_dataset("folder")
