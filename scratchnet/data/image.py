"""Decoding one image file into 8-bit pixels, the same way for image folders and for predict.

Pixels end up as uint8 in [0, 255] whatever the file stores, scaled by the range of its pixel type and
never by the image's own minimum and maximum (that would make a dark photo and a bright one look alike):

    8-bit (L, RGB, P, RGBA, ...)   as stored (Pillow's convert)
    16-bit grey (I;16, or I)       v / 257      (65535 -> 255; a 16-bit value outside 0..65535 is refused)
    32-bit float grey (F)          v * 255      (values must lie in [0, 1]: anything else is refused)

Only the formats in ``FORMATS`` are decoded, whatever the file's name says. Pillow picks its decoder by
the file's content, and some of its decoders run other programs: an EPS file named ``photo.png`` would
make it run Ghostscript on the file's PostScript. Anything else is refused as not an image.

Refused with an :class:`ImageError` (a ValueError) that names the file: something that is not a regular
file (a folder, a FIFO, which would block forever), a file in none of ``FORMATS`` or one Pillow cannot
fully decode (a truncated JPEG, a broken PNG chunk), and an image of more than ``MAX_PIXELS`` pixels (a
decompression bomb: a small file that decodes to gigabytes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 89_478_485  # Pillow's own warning threshold (Image.MAX_IMAGE_PIXELS), 1/4 GiB of RGBA
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Pillow's names of the decoders used, all of them pure pixel formats (PPM: .ppm and .pgm files).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")


class ImageError(ValueError):
    """An image file that is refused; the message names the file and why."""


def read_image(path: str | Path, mode: str) -> Image.Image:
    """Decode ``path`` into a Pillow image of 8-bit ``mode`` ("L" grey or "RGB"), scaled as above."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no image file {path}")
    if not path.is_file():
        raise ImageError(f"{path} is not a regular file (a folder, a FIFO or a device), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{path} is {width}x{height} = {width * height:,} pixels, more than the "
                        f"{MAX_PIXELS:,} accepted (a decompression bomb?); shrink it first"
                    )
                image.load()  # decode everything now: a truncated file fails here, not later
                return _to_8bit(image, path).convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{path} is too large to decode safely (a decompression bomb?): {err}") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path} is not a PNG, JPEG, BMP, GIF, TIFF, WebP or PPM/PGM image (the formats scratchnet "
            "decodes, whatever the file name says)"
        ) from None
    except ImageError:  # ours above, naming the file
        raise
    except Exception as err:  # truncated or corrupt data: OSError, or SyntaxError for a broken PNG chunk, ...
        raise ImageError(f"cannot decode image {path} ({type(err).__name__}: {err})") from None


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """An 8-bit image (mode L for 16-bit and float grey, else unchanged), scaled by the pixel type's range."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.int64)  # (H, W)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(f"{path}: {image.mode} pixels outside 0..65535, not a 16-bit image")
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8))
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ImageError(
                f"{path}: floating-point pixels must lie in [0, 1], these span "
                f"[{values.min():g}, {values.max():g}] (NaN and inf are refused too)"
            )
        return Image.fromarray(np.rint(values * 255.0).astype(np.uint8))
    return image
