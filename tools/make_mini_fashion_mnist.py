"""Build scratchnet/data/fashion_mnist_mini.npz, the small Fashion-MNIST bundled as the offline default.

    python tools/make_mini_fashion_mnist.py [--source /usr/share/datasets/fashion-mnist] [--seed 0]

Reads the full Fashion-MNIST (Debian's `dataset-fashion-mnist` copy by default, or any folder with the
four IDX files), picks 500 training and 100 test images of each of the 10 classes with
`scratchnet.data.balanced_indices(labels, count, seed)`, and stores them with np.savez_compressed:

    train_images uint8 (5000, 28, 28)   train_labels uint8 (5000,)   train_indices int32 (5000,)
    test_images  uint8 (1000, 28, 28)   test_labels  uint8 (1000,)   test_indices  int32 (1000,)

`*_indices` are the positions of the chosen images in the original files (ascending), so anyone can
check the subset against the full dataset, and the test suite does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scratchnet.data.dataset import balanced_indices
from scratchnet.data.idx import read_idx_pair
from scratchnet.data.mnist import COUNTS, SPLIT_FILES, SYSTEM_FASHION_MNIST_DIR, find_idx_file

SEED = 0
PER_CLASS = {"train": 500, "test": 100}
OUTPUT = Path(__file__).resolve().parents[1] / "scratchnet" / "data" / "fashion_mnist_mini.npz"


def make_mini(source: Path, seed: int = SEED) -> dict[str, np.ndarray]:
    """The arrays of the mini dataset, chosen from the full Fashion-MNIST in `source`."""
    arrays = {}
    for split, per_class in PER_CLASS.items():
        paths = [find_idx_file(source, stem) for stem in SPLIT_FILES[split]]
        if None in paths:
            raise SystemExit(f"{source} lacks {' or '.join(SPLIT_FILES[split])} (.gz or raw)")
        images, labels = read_idx_pair(*paths, count=COUNTS[split])
        chosen = balanced_indices(labels, 10 * per_class, seed)
        arrays[f"{split}_images"] = images[chosen, 0]  # (n, 28, 28): the channel axis is added on load
        arrays[f"{split}_labels"] = labels[chosen].astype(np.uint8)
        arrays[f"{split}_indices"] = chosen.astype(np.int32)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=SYSTEM_FASHION_MNIST_DIR, help="folder with the IDX .gz files"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    arrays = make_mini(args.source, args.seed)
    np.savez_compressed(args.output, **arrays)
    for split in PER_CLASS:
        counts = np.bincount(arrays[f"{split}_labels"], minlength=10)
        print(f"{split}: {len(arrays[f'{split}_labels'])} images, per class {counts.tolist()}")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
