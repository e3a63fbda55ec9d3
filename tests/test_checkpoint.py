"""Checkpoint files: round trip, clear errors, and atomic writes that never leave a broken file."""

import os
import zipfile

import numpy as np
import pytest

from scratchnet import _paths
from scratchnet import checkpoint as ck
from scratchnet.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint


def make_checkpoint(value: float = 1.0) -> Checkpoint:
    rng = np.random.default_rng(0)
    return Checkpoint(
        params={"conv1.W": rng.standard_normal((2, 1, 3, 3)) * value, "fc.b": np.arange(3, dtype=np.float32)},
        optimizer={"lr": 0.1, "nesterov": False, "velocity.conv1.W": np.full((2, 1, 3, 3), value)},
        scheduler={"epoch": 3, "base_lr": np.float64(0.5)},
        meta={"epoch": 3, "classes": ["a", "b"], "history": [{"epoch": 1, "loss": 0.5}], "best": None},
    )


def assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype
        np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_array_equal(a.optimizer["velocity.conv1.W"], b.optimizer["velocity.conv1.W"])
    assert a.optimizer["lr"] == b.optimizer["lr"] and a.optimizer["nesterov"] == b.optimizer["nesterov"]
    assert a.scheduler == b.scheduler
    assert a.meta == b.meta


def test_round_trip_keeps_arrays_dtypes_and_json(tmp_path):
    original = make_checkpoint()
    path = save_checkpoint(tmp_path / "last.npz", original)
    loaded = load_checkpoint(path)
    assert_same(original, loaded)
    assert isinstance(loaded.scheduler["base_lr"], float)  # NumPy scalars are stored as JSON numbers
    assert loaded.path == path


def test_nested_lists_and_no_scheduler(tmp_path):
    state = Checkpoint(params={}, optimizer={"buffers": [np.ones(2), {"x": np.zeros(1)}]}, scheduler=None)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.npz", state))
    np.testing.assert_array_equal(loaded.optimizer["buffers"][0], np.ones(2))
    np.testing.assert_array_equal(loaded.optimizer["buffers"][1]["x"], np.zeros(1))
    assert loaded.scheduler is None


def test_a_run_folder_means_its_last_checkpoint(tmp_path):
    save_checkpoint(tmp_path / ck.LAST, make_checkpoint(2.0))
    save_checkpoint(tmp_path / ck.BEST, make_checkpoint(1.0))
    assert load_checkpoint(tmp_path).path == tmp_path / ck.LAST


def test_missing_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*nothing.npz"):
        load_checkpoint(tmp_path / "nothing.npz")
    with pytest.raises(CheckpointError, match="has no checkpoint last.npz"):
        load_checkpoint(tmp_path)
    np.savez(tmp_path / "plain.npz", x=np.ones(3))
    with pytest.raises(CheckpointError, match="not a scratchnet checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match=r"not a scratchnet checkpoint \(not an .npz archive") as e:
        load_checkpoint(tmp_path / "text.npz")
    assert "pickle" not in str(e.value)


def test_unstorable_meta_is_refused_before_writing(tmp_path):
    bad = make_checkpoint()
    bad.meta["model"] = object()
    with pytest.raises(TypeError, match="cannot store object"):
        save_checkpoint(tmp_path / "c.npz", bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["savez", "replace"])
def test_an_interrupted_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch, failure):
    path = tmp_path / "last.npz"
    previous = make_checkpoint(1.0)
    save_checkpoint(path, previous)

    if failure == "savez":  # the process dies halfway through writing the new file's bytes

        def broken_savez(file, **arrays):
            with zipfile.ZipFile(file, "w") as z:
                z.writestr("params/conv1.W.npy", b"\x93NUMPY partial")
            raise KeyboardInterrupt

        monkeypatch.setattr(ck.np, "savez", broken_savez)
    else:  # the new file is complete but the rename never happens

        def broken_replace(src, dst):
            raise OSError("disk gone")

        monkeypatch.setattr(_paths.os, "replace", broken_replace)

    with pytest.raises((KeyboardInterrupt, OSError)):
        save_checkpoint(path, make_checkpoint(5.0))
    monkeypatch.undo()
    assert_same(previous, load_checkpoint(path))
    assert os.listdir(tmp_path) == ["last.npz"]  # no temporary file left behind
