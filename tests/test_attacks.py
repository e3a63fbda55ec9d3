"""Attacks on what scratchnet promises: kills at every write step, a full disk, an interrupted extraction,
a dripping download, pixel scaling properties and hostile images. (The fuzzers of every file parser are
in test_fuzz.py.)

Kills are real: a forked child process runs the write with one step patched to end the process at once
(``os._exit``: no ``finally`` blocks, no cleanup, like SIGKILL or a power cut), and the parent inspects the
disk afterwards. Hypothesis runs a fixed number of derandomized examples, so every run tries the same cases.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import http.server
import io
import os
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from scratchnet import _paths, predict
from scratchnet import train as T
from scratchnet.checkpoint import BEST, LAST, load_checkpoint
from scratchnet.data import cifar, download, idx
from scratchnet.data.image import read_image
from scratchnet.errors import DatasetError

FUZZ = settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
KILLED = 137
SMALL_SHAPES = st.tuples(st.integers(1, 6), st.integers(1, 6))


# --- kill a child process at the n-th write step ---------------------------------------------------------
WRITE_STEPS = ("create", "write", "fsync", "replace", "fsync-folder")


def patch_write_steps(on_step) -> None:
    """Route each step of ``_paths.atomic_write`` through ``on_step(name)`` (in this process only)."""
    real_open, real_fsync, real_replace = builtins.open, _paths.os.fsync, _paths.os.replace
    real_fsync_folder = _paths.fsync_folder

    class Writer(io.FileIO):
        def write(self, data):
            on_step("write")
            return super().write(data)

    def open_(path, mode="r", *args, **kwargs):
        if mode == "xb":
            on_step("create")
            return io.BufferedWriter(Writer(path, "x"))
        return real_open(path, mode, *args, **kwargs)

    in_folder_sync = []

    def fsync(fd):
        if not in_folder_sync:  # the folder's own fsync belongs to the "fsync-folder" step
            on_step("fsync")
        real_fsync(fd)

    def replace(src, dst):
        on_step("replace")
        real_replace(src, dst)

    def fsync_folder(folder):
        on_step("fsync-folder")
        in_folder_sync.append(True)
        real_fsync_folder(folder)
        in_folder_sync.clear()

    _paths.open = open_
    _paths.os.fsync = fsync
    _paths.os.replace = replace
    _paths.fsync_folder = fsync_folder


def in_child(work, kill_at: int | None) -> tuple[int, list[str]]:
    """Run ``work()`` in a forked child whose ``kill_at``-th write step ends it (None: never).

    Returns the child's exit status and the steps it reached, in order.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        steps = []

        def on_step(name):
            if name == "write" and steps and steps[-1] != "create":
                return  # a file is written in many chunks: the first one stands for them all
            steps.append(name)
            os.write(write_end, (name + "\n").encode())
            if kill_at is not None and len(steps) == kill_at:
                os._exit(KILLED)

        try:
            patch_write_steps(on_step)
            work()
        except BaseException:  # noqa: BLE001 - report any failure through the exit status
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        steps = pipe.read().split()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), steps


def test_a_kill_at_every_step_of_an_atomic_write_leaves_the_old_or_the_new_file(tmp_path):
    target = tmp_path / "file.bin"
    status, steps = in_child(lambda: _paths.atomic_write_bytes(tmp_path / "probe", b"x"), None)
    assert status == 0 and steps == list(WRITE_STEPS)
    for kill_at in range(1, len(steps) + 1):
        target.write_bytes(b"old")
        status, reached = in_child(lambda: _paths.atomic_write_bytes(target, b"new contents"), kill_at)
        assert status == KILLED and len(reached) == kill_at
        replaced = "replace" in reached[:-1]  # the step that killed never ran
        assert target.read_bytes() == (b"new contents" if replaced else b"old")
        # the dead writer's temporary file is an orphan: removed, and nothing else is
        _paths.remove_orphans(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "probe"]


def test_orphans_of_live_writers_are_spared(tmp_path):
    mine = _paths.temp_path(tmp_path / "a.npz")
    mine.write_bytes(b"being written")
    dead = tmp_path / f".a.npz.{2**22 + 12345}.beef.tmp"  # above Linux's default pid_max: never alive
    dead.write_bytes(b"left by a crash")
    assert _paths.remove_orphans(tmp_path) == [dead]
    assert mine.exists() and not dead.exists()


TINY_RUN = dict(limit_train=40, limit_test=16, batch_size=16, epochs=2, progress=False, plots=False)


def run_tiny(out: Path, **changes) -> T.TrainResult:
    return T.train(T.TrainConfig(out=str(out), **TINY_RUN | changes), log=str)


@pytest.mark.slow  # a child process per write step of a training run
def test_a_kill_at_every_checkpoint_write_step_of_a_run_never_loses_a_good_checkpoint(tmp_path):
    """Kill a 2-epoch run at each of its write steps, then resume: the result equals an unkilled run."""
    reference_dir = tmp_path / "reference"
    status, steps = in_child(
        lambda: T.train(T.TrainConfig(out=str(reference_dir), **TINY_RUN), log=str), None
    )
    assert status == 0
    reference = load_checkpoint(reference_dir)
    for kill_at in range(1, len(steps) + 1):
        out = tmp_path / f"killed-{kill_at}"
        status, reached = in_child(
            lambda out=out: T.train(T.TrainConfig(out=str(out), **TINY_RUN), log=str), kill_at
        )
        assert status == KILLED, (kill_at, reached)
        if not (out / LAST).exists():  # killed before the first epoch's checkpoint: start again
            result = run_tiny(out, overwrite=True)
        else:
            last = load_checkpoint(out)  # never a broken file
            if last.meta["best"]["epoch"] == last.meta["epoch"]:
                assert (out / BEST).exists(), (
                    f"kill at step {kill_at}: last.npz records a best.npz that is missing"
                )
            result = T.train(T.resume_config(out), log=str)
        assert not list(out.glob("*.tmp"))  # the dead writer's orphans were removed
        final = load_checkpoint(out)
        for name, value in reference.params.items():
            np.testing.assert_array_equal(final.params[name], value, err_msg=f"kill at step {kill_at}")
        assert result.epochs == 2 and (out / BEST).exists()


def test_a_full_disk_during_a_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    T.train(T.TrainConfig(out=str(out), **TINY_RUN | {"epochs": 1}), log=str)
    before = (out / LAST).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    resumed = T.resume_config(out, epochs=2)
    monkeypatch.setattr(_paths.os, "fsync", full)
    with pytest.raises((T.RunFolderError, OSError), match="disk is full"):
        T.train(resumed, log=str)
    monkeypatch.undo()
    assert (out / LAST).read_bytes() == before
    assert not list(out.glob(".*.tmp"))


def test_best_is_recreated_on_resume_when_it_was_lost(tmp_path):
    out = tmp_path / "run"
    T.train(T.TrainConfig(out=str(out), **TINY_RUN | {"epochs": 1, "val_fraction": 0.0}), log=str)
    (out / BEST).unlink()  # as a crash between the two writes of older versions left it
    T.train(T.resume_config(out, epochs=2), log=str)
    assert load_checkpoint(out / BEST).meta["epoch"] in (1, 2)


# --- the CIFAR extraction and the download ---------------------------------------------------------------
def cifar_tarball(path: Path) -> Path:
    """A tarball with the layout of cifar-10-python.tar.gz and 2 images per batch."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in cifar.ALL_FILES:
            if name == cifar.META_FILE:
                content = {b"label_names": [f"class{i}".encode() for i in range(10)]}
            else:
                content = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{cifar.BATCH_FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_interrupted_extraction_leaves_no_partial_folder(tmp_path, monkeypatch):
    tarball = cifar_tarball(tmp_path / cifar.TARBALL)
    real_copy, copies = cifar.shutil.copyfileobj, []

    def copy_then_fail(src, dst):
        copies.append(1)
        if len(copies) == 3:
            raise KeyboardInterrupt
        real_copy(src, dst)

    monkeypatch.setattr(cifar.shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        cifar.extract(tarball, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # neither the folder nor its temporary twin
    killed = tmp_path / "cache" / f".{cifar.BATCH_FOLDER}.{2**22 + 7}.dead.tmp"  # left by a killed process
    (killed / "data_batch_1").parent.mkdir()
    (killed / "data_batch_1").write_bytes(b"half")
    monkeypatch.undo()
    folder = cifar.extract(tarball, tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == sorted(cifar.ALL_FILES)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cifar.BATCH_FOLDER]  # the orphan is gone


class Drip(http.server.BaseHTTPRequestHandler):
    """Sends one byte every 50 ms for ever: never silent long enough for a read timeout."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        try:
            for _ in range(2000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


def test_a_dripping_download_hits_the_overall_deadline(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data.gz"
        start = time.monotonic()
        with pytest.raises(DatasetError, match="too slow"):
            download.download([url], tmp_path / "data.gz", "0" * 32, progress=False, deadline_seconds=1.0)
        assert time.monotonic() - start < 30
        assert list(tmp_path.iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


# --- property-based: IDX round trips and pixel scaling -----------------------------------------------------
@FUZZ
@given(
    arrays(
        st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple),
    ),
    st.booleans(),
)
def test_idx_round_trip_and_every_truncation_is_refused(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / "f.idx"
    idx.write_idx(path, array, compress=compress)
    np.testing.assert_array_equal(idx.read_idx(path), array)
    raw = gzip.decompress(path.read_bytes()) if compress else path.read_bytes()
    for cut in {len(raw) - 1, len(raw) // 2, 3}:
        if 0 <= cut < len(raw):
            path.write_bytes(raw[:cut])
            with pytest.raises(DatasetError):
                idx.read_idx(path)


def valid_cifar_batch() -> bytes:
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    return pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=2)


def test_cifar_array_header_claiming_10_to_the_13_elements_is_refused(tmp_path):
    class Huge:
        def __reduce__(self):
            state = (1, (10**13,), np.dtype(np.uint8), False, b"\x00" * 16)
            return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), state)

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Huge(), b"labels": [0]}, protocol=2))
    with pytest.raises(DatasetError, match="cannot be read"):
        cifar.read_batch(path)


@FUZZ
@given(arrays(np.uint16, SMALL_SHAPES))
def test_16_bit_images_are_scaled_by_257(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.fromarray(values).save(path)
    decoded = np.asarray(read_image(path, "L"))
    np.testing.assert_array_equal(decoded, np.rint(values / 257.0).astype(np.uint8))


@FUZZ
@given(
    arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(0, 1, width=32))
)
def test_float_images_in_0_1_are_scaled_by_255_and_never_per_image(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("img") / "x.tif"
    Image.fromarray(values, mode="F").save(path)
    decoded = np.asarray(read_image(path, "L"))
    np.testing.assert_array_equal(decoded, np.rint(values.astype(np.float64) * 255.0).astype(np.uint8))


@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan, np.inf])
def test_float_images_outside_0_1_are_refused(tmp_path, bad):
    values = np.full((4, 4), 0.5, dtype=np.float32)
    values[1, 2] = bad
    path = tmp_path / "x.tif"
    Image.fromarray(values, mode="F").save(path)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        read_image(path, "L")


def test_a_256_megapixel_image_in_a_folder_dataset_is_refused(tmp_path):
    from scratchnet.data import ImageFolder

    for name in ("big", "small"):
        (tmp_path / "train" / name).mkdir(parents=True)
    Image.new("1", (16_384, 16_384)).save(tmp_path / "train" / "big" / "0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "small" / "0.png")
    folder = ImageFolder(tmp_path, split="train", image_size=8)
    with pytest.raises(DatasetError, match="decompression bomb"):
        folder.decode(0)


# --- only pixel formats are decoded ----------------------------------------------------------------------
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n0 0 moveto 8 8 lineto stroke\n%%EOF\n"


def test_an_eps_file_named_png_is_refused_without_running_ghostscript(tmp_path, monkeypatch, capsys):
    from PIL import EpsImagePlugin

    ran = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: ran.append(args))
    (tmp_path / "photo.png").write_bytes(EPS)
    with pytest.raises(ValueError, match="photo.png is not a PNG, JPEG, BMP, GIF, TIFF, WebP or PPM/PGM"):
        read_image(tmp_path / "photo.png", "L")
    run = run_tiny(tmp_path / "run").run_dir
    status = predict.main([str(tmp_path / "photo.png"), "--checkpoint", str(run)])
    err = capsys.readouterr().err
    assert status == 2 and "photo.png is not a PNG" in err and "Traceback" not in err
    assert ran == []


@pytest.mark.parametrize("format_", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM"])
def test_every_pixel_format_is_still_decoded(tmp_path, format_):
    Image.new("L", (5, 3), 200).save(tmp_path / "x", format=format_)
    assert read_image(tmp_path / "x", "L").size == (5, 3)


# --- damaged files found by fuzzing, kept as regression cases -------------------------------------------
def png_with_two_idat_chunks() -> bytes:
    """A noisy 200x200 RGB PNG: Pillow splits its pixel data into more than one IDAT chunk."""
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_png_whose_second_idat_chunk_is_broken_is_refused(tmp_path, capsys):
    raw = bytearray(png_with_two_idat_chunks())
    second = raw.index(b"IDAT", raw.index(b"IDAT") + 4)
    raw[second] = 0  # Pillow: SyntaxError("broken PNG file")
    (tmp_path / "broken.png").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="cannot decode image .*broken.png"):
        read_image(tmp_path / "broken.png", "RGB")
    run = run_tiny(tmp_path / "run").run_dir
    status = predict.main([str(tmp_path / "broken.png"), "--checkpoint", str(run)])
    err = capsys.readouterr().err
    assert status == 2 and "broken.png" in err and "Traceback" not in err


def test_a_cifar_batch_with_an_unknown_text_codec_is_refused(tmp_path):
    raw = valid_cifar_batch()
    assert b"latin1" in raw  # NumPy pickles an array's bytes as text in this codec
    (tmp_path / "data_batch_1").write_bytes(raw.replace(b"latin1", b"Xatin1"))  # LookupError
    with pytest.raises(DatasetError, match="data_batch_1 cannot be read"):
        cifar.read_batch(tmp_path / "data_batch_1")
