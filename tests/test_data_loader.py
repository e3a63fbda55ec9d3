"""Transforms, the DataLoader's seeded order, splits and subsets."""

from __future__ import annotations

import numpy as np
import pytest

import scratchnet.data as D


def indexed_dataset(n: int = 50, channels: int = 1, size: int = 4) -> D.ArrayDataset:
    """Image i is filled with the value i % 256 and has label i: batches reveal which images they hold."""
    images = np.broadcast_to(
        (np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, channels, size, size)
    )
    return D.ArrayDataset("indexed", np.ascontiguousarray(images), np.arange(n), [str(i) for i in range(n)])


def served_labels(loader: D.DataLoader) -> np.ndarray:
    return np.concatenate([y for _, y in loader])


# --- transforms -----------------------------------------------------------------------------------


def test_normalize_per_channel():
    x = np.random.default_rng(0).random((3, 2, 4, 4)).astype(np.float32)
    y = D.Normalize((0.5, 0.25), (2.0, 0.5))(x, None)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 0.5) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(y[:, 1], (x[:, 1] - 0.25) / 0.5, rtol=1e-6)
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match=r"expects \(B, 2, H, W\), got shape \(3, 3, 4, 4\)"):
        D.Normalize((0.5, 0.25), (2.0, 0.5))(np.zeros((3, 3, 4, 4)), None)
    with pytest.raises(ValueError, match="positive std"):
        D.Normalize((0.5,), (0.0,))


def test_horizontal_flip_really_flips_about_half():
    x = np.random.default_rng(0).random((1000, 2, 3, 5))
    before = x.copy()
    y = D.RandomHorizontalFlip(p=0.5)(x, np.random.default_rng(1))
    flipped = np.array([np.array_equal(y[b], x[b, :, :, ::-1]) for b in range(len(x))])
    kept = np.array([np.array_equal(y[b], x[b]) for b in range(len(x))])
    assert np.all(flipped ^ kept)  # each image either mirrored left-right or untouched
    assert 400 < flipped.sum() < 600
    np.testing.assert_array_equal(x, before)  # input not modified
    assert not np.array_equal(D.RandomHorizontalFlip(p=1.0)(x, np.random.default_rng(0)), x)
    np.testing.assert_array_equal(D.RandomHorizontalFlip(p=0.0)(x, np.random.default_rng(0)), x)


def test_random_crop_with_padding_takes_real_windows_of_the_padded_image():
    height, width, pad, crop_h, crop_w = 5, 6, 2, 3, 7  # padded 9 x 10: 7 x 4 window positions
    x = 1.0 + np.arange(400 * 2 * height * width, dtype=np.float64).reshape(400, 2, height, width)
    y = D.RandomCrop((crop_h, crop_w), padding=pad)(x, np.random.default_rng(0))
    assert y.shape == (400, 2, crop_h, crop_w)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # zeros around values >= 1
    positions = {
        (t, l) for t in range(height + 2 * pad - crop_h + 1) for l in range(width + 2 * pad - crop_w + 1)
    }
    seen = set()
    for b in range(len(x)):
        matches = [
            (t, l) for t, l in positions if np.array_equal(y[b], padded[b, :, t : t + crop_h, l : l + crop_w])
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == positions  # every position occurs


def test_random_crop_smaller_size_and_errors():
    x = np.random.default_rng(0).random((3, 1, 8, 8))
    assert D.RandomCrop(5)(x, np.random.default_rng(0)).shape == (3, 1, 5, 5)
    np.testing.assert_array_equal(D.RandomCrop(8)(x, np.random.default_rng(0)), x)  # the only window
    with pytest.raises(ValueError, match="does not fit"):
        D.RandomCrop(9)(x, np.random.default_rng(0))


def test_transforms_are_reproducible_per_generator():
    x = np.random.default_rng(0).random((16, 3, 8, 8)).astype(np.float32)
    t = D.Compose(
        [D.RandomCrop(8, padding=2), D.RandomHorizontalFlip(), D.Normalize((0.5,) * 3, (0.25,) * 3)]
    )
    a, b, c = (t(x, np.random.default_rng(seed)) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_compose_applies_in_order():
    x = np.full((1, 1, 2, 2), 0.5)
    steps = D.Compose([D.Normalize((0.5,), (0.5,)), D.Normalize((-1.0,), (1.0,))])
    np.testing.assert_array_equal(steps(x, None), np.full((1, 1, 2, 2), 1.0))  # ((0.5-0.5)/0.5 + 1)


# --- DataLoader -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False])
def test_loader_covers_every_index_once_per_epoch(shuffle):
    loader = D.DataLoader(indexed_dataset(50), batch_size=8, shuffle=shuffle, seed=3)
    assert len(loader) == 7
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert [len(y) for _, y in batches] == [8] * 6 + [2]
        labels = np.concatenate([y for _, y in batches])
        np.testing.assert_array_equal(np.sort(labels), np.arange(50))
        if not shuffle:
            np.testing.assert_array_equal(labels, np.arange(50))


def test_loader_batches_hold_scaled_images_of_their_labels():
    x, y = next(iter(D.DataLoader(indexed_dataset(50), batch_size=8, seed=1)))
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (8, 1, 4, 4)
    np.testing.assert_array_equal(
        x, np.broadcast_to((y / np.float32(255)).astype(np.float32)[:, None, None, None], x.shape)
    )


def test_loader_order_depends_only_on_seed_and_epoch():
    ds = indexed_dataset(50)
    first = D.DataLoader(ds, batch_size=8, seed=5)
    first.set_epoch(4)
    resumed = D.DataLoader(ds, batch_size=8, seed=5)  # a fresh loader, as after a restart
    resumed.set_epoch(4)
    np.testing.assert_array_equal(served_labels(first), served_labels(resumed))
    np.testing.assert_array_equal(served_labels(first), served_labels(first))  # iterating twice
    resumed.set_epoch(5)
    assert not np.array_equal(served_labels(first), served_labels(resumed))
    other_seed = D.DataLoader(ds, batch_size=8, seed=6)
    other_seed.set_epoch(4)
    assert not np.array_equal(served_labels(first), served_labels(other_seed))


def test_loader_augmentation_is_reproducible_and_varies_by_epoch():
    images = np.random.default_rng(0).integers(0, 256, size=(32, 1, 6, 6), dtype=np.uint8)
    ds = D.ArrayDataset("random", images, np.arange(32), [str(i) for i in range(32)])

    def flipped_epoch(epoch):  # a fresh loader each time: nothing carried over but (seed, epoch)
        loader = D.DataLoader(ds, 8, shuffle=False, seed=0, transform=D.RandomHorizontalFlip())
        loader.set_epoch(epoch)
        x, y = (np.concatenate(parts) for parts in zip(*loader, strict=True))
        return x[np.argsort(y)]  # (32, 1, 6, 6) in dataset order

    np.testing.assert_array_equal(flipped_epoch(1), flipped_epoch(1))
    assert not np.array_equal(flipped_epoch(1), flipped_epoch(2))


def test_loader_drop_last_and_single_batch_access():
    loader = D.DataLoader(indexed_dataset(50), batch_size=8, drop_last=True, seed=2)
    assert len(loader) == 6 and sum(len(y) for _, y in loader) == 48
    loader.set_epoch(3)
    batches = list(loader)
    x, y = loader.batch(4)
    np.testing.assert_array_equal(x, batches[4][0])
    np.testing.assert_array_equal(y, batches[4][1])
    with pytest.raises(IndexError, match="6 batches"):
        loader.batch(6)
    with pytest.raises(ValueError, match="batch_size"):
        D.DataLoader(indexed_dataset(5), batch_size=0)


# --- splits and subsets ---------------------------------------------------------------------------


def test_random_split_disjoint_complete_seeded():
    ds = indexed_dataset(50)
    train, val = D.random_split(ds, 0.2, seed=0)
    assert len(train) == 40 and len(val) == 10
    assert set(train.labels) | set(val.labels) == set(range(50)) and not set(train.labels) & set(val.labels)
    np.testing.assert_array_equal(train.get_batch(np.arange(40))[1], train.labels)
    assert train.shape == ds.shape and train.classes == ds.classes and train.name == "indexed"
    again, _ = D.random_split(ds, 0.2, seed=0)
    other, _ = D.random_split(ds, 0.2, seed=1)
    np.testing.assert_array_equal(train.indices, again.indices)
    assert not np.array_equal(train.indices, other.indices)
    for bad in (0.0, 1.0, 0.001):
        with pytest.raises(ValueError):
            D.random_split(ds, bad)


def test_subset_of_subset_maps_to_original_images():
    ds = indexed_dataset(50)
    outer = D.Subset(ds, np.arange(10, 40))
    inner = D.Subset(outer, np.array([0, 5, 29]))
    assert inner.dataset is ds
    np.testing.assert_array_equal(inner.get_batch(np.array([2, 0]))[1], [39, 10])
    with pytest.raises(IndexError):
        inner.get_batch(np.array([3]))


def test_subset_limit_is_class_balanced_or_first():
    ds = D.load_dataset("fashion-mnist-mini", split="test")
    small = D.subset(ds, 25, seed=0)
    counts = np.bincount(small.labels, minlength=10)
    assert len(small) == 25 and counts.max() - counts.min() == 1
    np.testing.assert_array_equal(D.subset(ds, 25, seed=0).indices, small.indices)
    assert not np.array_equal(D.subset(ds, 25, seed=1).indices, small.indices)
    np.testing.assert_array_equal(D.subset(ds, 25, seed=None).indices, np.arange(25))
    assert D.subset(ds, 10_000) is ds and D.subset(ds, None) is ds
    with pytest.raises(ValueError, match="positive"):
        D.subset(ds, 0)


def test_balanced_indices_with_a_rare_class():
    labels = np.array([0] * 30 + [1] * 2 + [2] * 30)
    chosen = D.balanced_indices(labels, 12, seed=0)
    assert len(chosen) == 12 and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [5, 2, 5])  # the rare class gives all it has
