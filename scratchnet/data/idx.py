"""The IDX file format of MNIST and Fashion-MNIST, read and checked byte by byte.

An IDX file (LeCun's format, http://yann.lecun.com/exdb/mnist/) is a tiny header followed by one
big-endian array:

    offset  size        meaning
    0       2 bytes     always 0x00 0x00
    2       1 byte      element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                        0x0E float64
    3       1 byte      number of dimensions d
    4       4*d bytes   each dimension as a big-endian uint32, slowest-varying first
    4+4*d   ...         prod(dims) elements, big-endian, row-major (C order)

The MNIST image files are (N, 28, 28) uint8 ("idx3") and the label files are (N,) uint8 ("idx1"), so
the famous magic numbers 2051 = 0x00000803 and 2049 = 0x00000801 are just "uint8, 3 dims" and
"uint8, 1 dim". Files are usually gzip-compressed; we recognise gzip by its own magic bytes (1f 8b),
not by the file name, so `train-images-idx3-ubyte` and `train-images-idx3-ubyte.gz` both work.

Local copies are checked by FORMAT here (header, sizes, counts), not by checksum: Debian's
`dataset-fashion-mnist` recompressed the `.gz` files, so their md5 differs from upstream's while the
arrays inside are identical. Every problem raises `DatasetError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from scratchnet._paths import atomic_write_bytes
from scratchnet.errors import DatasetError

# IDX element-type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 1 << 31  # 2 GiB: 40 times the largest MNIST-style file


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the file starts with the gzip magic."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # (a sparse file can claim 100 GB on an empty disk)
            raise DatasetError(f"IDX file {path} is {size:,} bytes, more than the {MAX_BYTES:,} accepted")
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read IDX file {path}: {err}") from err
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_BYTES + 1)  # a small "gzip bomb" must not decompress into all memory
    except (OSError, EOFError, zlib.error) as err:  # bad CRC, truncated stream, garbage
        raise DatasetError(f"IDX file {path} is a corrupt or truncated gzip stream: {err}") from err
    if len(data) > MAX_BYTES:
        raise DatasetError(f"IDX file {path} decompresses to more than {MAX_BYTES:,} bytes; refusing it")
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian NumPy array of the header's shape and type.

    Raises DatasetError for a bad magic number, an unknown type code, or a payload whose size does not
    match the header's dimensions (truncated or padded files).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"IDX file {path} is too short ({len(data)} bytes) to hold a header")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"IDX file {path} has a bad magic number 0x{data[:4].hex()} (expected 0x0000TTDD: two zero "
            "bytes, a type code, a dimension count); is it really an MNIST-style IDX file?"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DatasetError(f"IDX file {path} has unknown element type 0x{type_code:02X} (known: {known})")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DatasetError(f"IDX file {path} is truncated inside its header ({ndim} dimensions declared)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = header_size + math.prod(shape) * dtype.itemsize  # exact (Python ints never overflow)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(
            f"IDX file {path} is {problem}: header shape {shape} of {dtype.name} needs {expected} bytes, "
            f"the file holds {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an IDX file; gzip-compressed when `compress` is True or the name ends in .gz.

    The inverse of `read_idx`, used to build small test files and for learners to export data.
    """
    path = Path(path)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {sorted(d.name for d in codes)}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)


def read_idx_pair(
    images_path: str | Path,
    labels_path: str | Path,
    image_shape: tuple[int, int] = (28, 28),
    num_classes: int = 10,
    count: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST-style image/label pair and check that they belong together.

    Checks: images are uint8 (N, *image_shape), labels are uint8 (N,), the same N in both (and equal to
    `count` when given: 60,000 / 10,000 for the real sets), and every label in 0..num_classes-1.
    Returns images uint8 (N, 1, H, W) (a channel axis added: NCHW everywhere) and labels int64 (N,).
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != image_shape or images.ndim != 3:
        raise DatasetError(
            f"IDX image file {images_path} holds {images.dtype.name} {images.shape}, expected uint8 "
            f"(N, {image_shape[0]}, {image_shape[1]})"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            f"IDX label file {labels_path} holds {labels.dtype.name} {labels.shape}, expected uint8 (N,)"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"count mismatch: {images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels"
        )
    if count is not None and len(images) != count:
        raise DatasetError(f"{images_path} has {len(images)} images, expected {count}")
    if labels.size and labels.max() >= num_classes:
        raise DatasetError(f"{labels_path} has label {labels.max()}, expected 0..{num_classes - 1}")
    return images[:, None, :, :], labels.astype(np.int64)
