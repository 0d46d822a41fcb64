"""Reading image and label files, one line per problem: headers checked when a run's samples are chosen, full decoding
when a sample is read.

Images are 8-bit RGB (PNG or JPEG). Grayscale, palette and RGBA images are refused rather than converted, because a
silent conversion would benchmark something else than the user thinks; a dataset whose images include grayscale ones
(ADE20K) asks for them to be read as RGB (`grayscale=True`). Images must be at least 32 px per side (the corruption
module's minimum). Labels are single-channel 8-bit PNGs; a palette PNG (Pascal VOC) is read as its indices, never as
its colours.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.bench.data.corruptions import MIN_SIZE
from segbench.bench.data.errors import DataError, DataNotFoundError

GRAYSCALE_MODES = ("L",)


def _decode_error(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: cannot read the image ({exc}); the file is truncated or corrupt, re-extract it")


def open_header(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _decode_error(path, exc) from None


def check_image_header(path: Path, img: Image.Image, grayscale: bool = False) -> None:
    if img.mode != "RGB" and not (grayscale and img.mode in GRAYSCALE_MODES):
        raise DataError(
            f"{path}: image mode {img.mode!r}, expected 8-bit RGB; grayscale, palette and RGBA images are rejected, "
            "not converted (the dataset's images are RGB): convert the file to RGB"
        )
    width, height = img.size
    if min(width, height) < MIN_SIZE:
        raise DataError(f"{path}: image of {height}x{width} px is under the minimum of {MIN_SIZE} px per side")


def check_label_header(path: Path, img: Image.Image) -> None:
    if img.mode not in ("L", "P"):
        raise DataError(f"{path}: label mode {img.mode!r}, expected a single-channel 8-bit PNG of class indices")


def decode(path: Path, check_header) -> np.ndarray:
    """Open an image file, validate its header with `check_header(path, img)`, decode it to a uint8 array (one error
    line). A palette image gives its indices."""
    with open_header(path) as img:
        check_header(path, img)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, zlib.error) as exc:
            raise _decode_error(path, exc) from None
        return np.asarray(img, dtype=np.uint8).copy()


def read_image(path: str | Path, grayscale: bool = False) -> np.ndarray:
    """Reads an 8-bit RGB image into a uint8 array (H, W, 3); with `grayscale`, a grayscale image too, as RGB.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable or truncated file, not RGB (grayscale/palette/RGBA are rejected), or under 32 px.
    """
    values = decode(Path(path), lambda p, img: check_image_header(p, img, grayscale))
    return np.repeat(values[:, :, None], 3, axis=2) if values.ndim == 2 else values


def read_indices(path: str | Path) -> np.ndarray:
    """A single-channel 8-bit label PNG as a uint8 array (H, W): its values, or a palette image's indices.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: unreadable or truncated file, or not single-channel 8-bit.
    """
    return decode(Path(path), check_label_header)


def check_files(image: Path, others: Sequence[Path], grayscale: bool = False) -> None:
    """Checks the headers of one image and the label-like files that go with it (labels, masks): readable, an RGB
    image (or grayscale, where allowed) of at least 32 px, single-channel 8-bit others, all of the image's size.

    Raises:
        DataError: naming the first bad file and what is wrong with it.
    """
    with open_header(image) as img:
        check_image_header(image, img, grayscale)
        size = img.size
    for path in others:
        with open_header(path) as other:
            check_label_header(path, other)
            if other.size != size:
                raise DataError(
                    f"{path}: {other.size[1]}x{other.size[0]} px but its image {image.name} is "
                    f"{size[1]}x{size[0]} px; the two must be the same size"
                )
