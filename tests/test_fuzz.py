"""Fuzzing every file scratchnet reads: checkpoints (the archive and the JSON index inside it), IDX, CIFAR
batches and images. Each parser either returns a valid result or raises its one clear error; a command
line given the file either works or prints one ``error:`` line with exit status 2, never a traceback.

Two kinds of input for each parser: Hypothesis (derandomized, a fixed number of examples, so every run
tries the same cases) and seeded byte mutations of real files. Every fuzzer prints the inputs it tried
and what became of each (``pytest -s`` shows it); failures once found are kept as ``@example`` cases.
Together they take well under 3 minutes on a 2-core machine, even a loaded one (docs/training.md).
"""

from __future__ import annotations

import copy
import io
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import scratchnet.data as D
from scratchnet import evaluate, predict
from scratchnet import train as T
from scratchnet.checkpoint import LAST, CheckpointError, load_checkpoint
from scratchnet.data import cifar, download, idx
from scratchnet.data.image import ImageError, read_image
from scratchnet.errors import DatasetError

EXAMPLES = 60  # Hypothesis examples per fuzzer
MUTATIONS = 150  # seeded byte mutations per real file
FUZZ = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
SAMPLE_PNG = Path(D.__file__).parent / "samples" / "ankle_boot.png"


class Tried:
    """The inputs a fuzzer tried and what became of each; printed when the fuzzer ends, failed or not."""

    def __init__(self, name: str):
        self.name, self.lines, self.outcomes = name, [], Counter()

    def __call__(self, tried: object, outcome: str) -> None:
        text = tried if isinstance(tried, str) else repr(tried)
        self.lines.append(f"  {text[:90]}{'...' if len(text) > 90 else ''} -> {outcome[:80]}")
        self.outcomes[outcome.split(":")[0]] += 1

    def __enter__(self) -> Tried:
        return self

    def __exit__(self, kind, error, trace) -> None:
        print(f"{self.name}: {len(self.lines)} inputs tried", *self.lines, sep="\n")
        found = repr(error) if error else "none"
        print(f"{self.name}: outcomes {dict(self.outcomes)}; failures found: {found}")


def outcome(call, *refusals: type[Exception]) -> str:
    """``call()``'s fate: "accepted", or "refused: <the error's type>"; any other exception escapes."""
    try:
        call()
    except refusals as e:
        return f"refused: {type(e).__name__}"
    return "accepted"


def mutants(raw: bytes, count: int = MUTATIONS):
    """``count`` seeded mutations of ``raw``: 1 to 4 bytes overwritten, some also cut short."""
    for seed in range(count):
        rng = np.random.default_rng(seed)
        changed = bytearray(raw)
        for _ in range(int(rng.integers(1, 5))):
            changed[int(rng.integers(len(changed)))] = int(rng.integers(256))
        cut = len(changed) if rng.random() < 0.8 else int(rng.integers(len(changed)))
        yield f"seed {seed}", bytes(changed[:cut])


# --- the checkpoint's JSON index, through every command that reads a checkpoint ---------------------------
TINY = ["--limit-train", "40", "--limit-test", "16", "--batch-size", "16", "--no-progress", "--no-plots"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real one-epoch run's last.npz."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert T.main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out / LAST


def index_paths(node, prefix=()) -> list[tuple]:
    """Every place in a JSON value, as the keys and positions that lead there (the root is ())."""
    places = [prefix]
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        places += index_paths(child, (*prefix, key))
    return places


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from([-1, 0, 10**12, "", "lenet5", {"__array__": "params/conv1.W"}]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def damaged_index(draw, index: dict) -> tuple[str, str]:
    """``index`` with 1 to 3 places replaced by any JSON value, or deleted (or any text in its place):
    (what was changed, the JSON text)."""
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.text(max_size=40))
        return f"the text {text!r}", text
    changed, changes = copy.deepcopy(index), []
    for _ in range(draw(st.integers(1, 3))):
        *parents, last = draw(st.sampled_from(index_paths(index)[1:]))
        node = changed
        for key in parents:  # (an earlier change may have removed the way there)
            node = node.get(key) if isinstance(node, dict) else None
        place = "/".join(map(str, [*parents, last]))
        if isinstance(node, dict) and draw(st.booleans()):
            node.pop(last, None)
            changes.append(f"del {place}")
        elif isinstance(node, dict):
            node[last] = draw(JSON_VALUES)
            changes.append(f"{place} = {json.dumps(node[last])}")
    return "; ".join(changes) or "unchanged", json.dumps(changed)


@pytest.mark.slow  # three commands per example
def test_the_checkpoint_index_fuzzed_through_evaluate_predict_and_resume(
    trained, tmp_path, capsys, monkeypatch
):
    def no_download(*args, **kwargs):  # a fuzzed dataset name must not reach the network
        raise DatasetError("no download while fuzzing")

    monkeypatch.setattr(download, "download", no_download)
    with np.load(trained) as npz:
        arrays = {k: npz[k] for k in npz.files}
    index = json.loads(str(arrays.pop("skeleton.json")))
    huge = copy.deepcopy(index)
    huge["meta"]["model_config"]["num_classes"] = 10**12
    picture = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(picture)
    folder = tmp_path / "run"
    folder.mkdir()

    def commands(checkpoint: Path) -> dict:
        return {
            "evaluate": (evaluate, ["--checkpoint", checkpoint, "--limit-test", "16"]),
            "predict": (predict, [picture, "--checkpoint", checkpoint, "--top", "1"]),
            "resume": (T, ["--resume", folder, "--epochs", "1"]),
        }

    with Tried("checkpoint JSON index") as tried:

        @FUZZ
        @example(damaged=("100,000 nested [", "[" * 100_000))  # found: RecursionError
        @example(damaged=("num_classes 10**12", json.dumps(huge)))  # found: MemoryError
        @given(damaged=damaged_index(index))
        def one(damaged):
            what, text = damaged
            np.savez(folder / LAST, **arrays, **{"skeleton.json": np.array(text)})
            fates = []
            for name, (module, argv) in commands(folder / LAST).items():
                status = module.main([str(a) for a in argv])
                _, err = capsys.readouterr()
                errors = [line for line in err.splitlines() if line.startswith("error: ")]
                assert "Traceback" not in err and status in (0, 2), (name, status, err)
                assert status == 0 or len(errors) == 1, (name, err)
                fates.append(f"{name} {'ok' if status == 0 else 'refused'}")
            tried(what, ", ".join(fates))

        one()


# --- the checkpoint archive ---------------------------------------------------------------------------------
def byte_changes(size: int, fewest: int = 1):
    """Up to 4 (position, new byte) changes of a ``size``-byte file, and the length it is then cut to."""
    change = st.tuples(st.integers(0, size - 1), st.integers(0, 255))
    return st.tuples(st.lists(change, min_size=fewest, max_size=4), st.integers(0, size))


def changed(raw: bytes, changes: tuple) -> bytes:
    """``raw`` with ``changes`` (from :func:`byte_changes`) made."""
    positions, cut = changes
    damaged = bytearray(raw)
    for at, value in positions:
        damaged[at] = value
    return bytes(damaged[:cut])


def test_the_checkpoint_reader_on_damaged_archives(trained, tmp_path):
    path = tmp_path / "damaged.npz"
    with Tried("checkpoint archive, Hypothesis") as tried:
        raw = trained.read_bytes()

        @FUZZ
        @given(byte_changes(len(raw), fewest=0))
        def one(changes):
            path.write_bytes(changed(raw, changes))
            tried(changes, outcome(lambda: load_checkpoint(path), CheckpointError))

        one()


def test_the_checkpoint_reader_on_arbitrary_bytes(tmp_path):
    path = tmp_path / "random.npz"
    with Tried("checkpoint reader, arbitrary bytes") as tried:

        @FUZZ
        @given(st.binary(max_size=400))
        def one(data):
            path.write_bytes(data)
            fate = outcome(lambda: load_checkpoint(path), CheckpointError)
            assert fate != "accepted"
            tried(data, fate)

        one()


@pytest.mark.parametrize("compressed", [False, True])
def test_byte_mutations_of_a_trained_checkpoint_are_loaded_or_refused(trained, tmp_path, compressed):
    from scratchnet.checkpoint import load_model

    original = trained
    if compressed:  # np.savez_compressed: deflated entries (zlib errors)
        with np.load(trained) as npz:
            np.savez_compressed(tmp_path / "compressed.npz", **{k: npz[k] for k in npz.files})
        original = tmp_path / "compressed.npz"
    mutant = tmp_path / "mutant.npz"
    with Tried(f"checkpoint, byte mutations ({'compressed' if compressed else 'stored'})") as tried:
        for seed, raw in mutants(original.read_bytes()):
            mutant.write_bytes(raw)
            # "accepted": a change inside the weights' bytes, a valid (other) model
            tried(seed, outcome(lambda: load_model(mutant), CheckpointError))


# --- IDX ----------------------------------------------------------------------------------------------------
def test_the_idx_reader_on_arbitrary_bytes(tmp_path):
    path = tmp_path / "f.idx"
    with Tried("IDX reader, arbitrary bytes") as tried:

        @FUZZ
        @given(st.binary(max_size=300))
        def one(data):
            path.write_bytes(data)
            tried(data, outcome(lambda: _valid_idx(path), DatasetError))

        one()


@pytest.mark.parametrize("compress", [False, True])
def test_byte_mutations_of_real_idx_files_are_read_or_refused(tmp_path, compress):
    """The first 50 test images and labels of the bundled Fashion-MNIST, as MNIST's files store them."""
    test = D.load_dataset("fashion-mnist-mini", split="test")
    mutant = tmp_path / "mutant.idx"
    for name, array in (("images", test.images[:50, 0]), ("labels", test.labels[:50].astype(np.uint8))):
        idx.write_idx(tmp_path / name, array, compress=compress)
        with Tried(f"IDX {name} ({'gzip' if compress else 'raw'}), byte mutations") as tried:
            for seed, raw in mutants((tmp_path / name).read_bytes()):
                mutant.write_bytes(raw)
                tried(seed, outcome(lambda: _valid_idx(mutant), DatasetError))


def _valid_idx(path: Path) -> None:
    """An array no larger than the file allows (gzip inflates 1032:1 at most)."""
    array = idx.read_idx(path)
    assert isinstance(array, np.ndarray) and array.nbytes <= max(path.stat().st_size, 1) * 1032


# --- CIFAR batches ------------------------------------------------------------------------------------------
def cifar_batch() -> bytes:
    """A CIFAR-10 batch as the real files are: a protocol-2 pickle of a dict with bytes keys."""
    data = np.arange(4 * 3072, dtype=np.int64).astype(np.uint8).reshape(4, 3072)
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [3, 4, 0, 9],
        b"data": data,
        b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"],
    }
    return pickle.dumps(batch, protocol=2)


def _valid_cifar(path: Path) -> None:
    images, labels = cifar.read_batch(path)
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and len(labels) == len(images)


def test_the_cifar_reader_on_damaged_batches(tmp_path):
    path = tmp_path / "data_batch_1"
    with Tried("CIFAR batch, Hypothesis") as tried:
        raw = cifar_batch()

        @FUZZ
        @example(([(raw.index(b"latin1"), ord("X"))], len(raw)))  # found: LookupError (an unknown codec)
        @given(byte_changes(len(raw)))
        def one(changes):
            path.write_bytes(changed(raw, changes))
            tried(changes, outcome(lambda: _valid_cifar(path), DatasetError))

        one()


def test_byte_mutations_of_a_cifar_batch_are_read_or_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    with Tried("CIFAR batch, byte mutations") as tried:
        for seed, raw in mutants(cifar_batch()):
            path.write_bytes(raw)
            tried(seed, outcome(lambda: _valid_cifar(path), DatasetError))


# --- images -------------------------------------------------------------------------------------------------
def encoded(image: Image.Image, format_: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_)
    return buffer.getvalue()


def _valid_image(path: Path) -> None:
    assert read_image(path, "RGB").mode == "RGB"


def test_the_image_decoder_on_damaged_files(tmp_path):
    """A noisy 160x160 PNG, whose pixel data Pillow splits into two IDAT chunks."""
    path = tmp_path / "x.png"
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    raw = encoded(Image.fromarray(noise), "PNG")
    second_idat = raw.index(b"IDAT", raw.index(b"IDAT") + 4)
    with Tried("image decoder, Hypothesis") as tried:

        @FUZZ
        @example(([(second_idat, 0)], len(raw)))  # found: SyntaxError("broken PNG file")
        @given(byte_changes(len(raw)))
        def one(changes):
            path.write_bytes(changed(raw, changes))
            tried(changes, outcome(lambda: _valid_image(path), ImageError))

        one()


@pytest.mark.parametrize("format_", ["PNG", "JPEG", "GIF", "WEBP"])
def test_byte_mutations_of_a_real_picture_are_decoded_or_refused(tmp_path, format_):
    """The bundled sample picture, in each format a photo folder commonly holds."""
    with Image.open(SAMPLE_PNG) as sample:
        raw = SAMPLE_PNG.read_bytes() if format_ == "PNG" else encoded(sample.convert("RGB"), format_)
    path = tmp_path / f"x.{format_.lower()}"
    with Tried(f"{format_} picture, byte mutations") as tried:
        for seed, mutated in mutants(raw, MUTATIONS // 2):
            path.write_bytes(mutated)
            tried(seed, outcome(lambda: _valid_image(path), ImageError))
