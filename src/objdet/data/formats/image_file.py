"""Reading an image file for a dataset record: its bytes, kept as they are, and its size.

The bytes go into the ``Sample`` unchanged (never re-encoded), so a converted TFRecord holds
exactly the file the user had. The image is still decoded once, at reduced resolution where
the format allows, so a truncated or corrupt file fails here, naming the file, rather than in
the middle of a training run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from objdet.data.image_decode import read_image_header, verify_image_bytes
from objdet.errors import DataError

# tf.Example image/format values a dataset record may hold.
SUPPORTED_FORMATS = ("jpeg", "png")


@dataclass(frozen=True)
class ImageFile:
    """An image file's original bytes, its format ('jpeg'/'png') and its size in pixels."""

    encoded: bytes
    image_format: str
    height: int
    width: int


def read_image_file(path: Path, referenced_by: str) -> ImageFile:
    """Read and check ``path``; ``referenced_by`` (annotation file/line) goes into errors."""
    try:
        encoded = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{referenced_by}: image file not found: {path}") from None
    except OSError as error:
        raise DataError(f"{referenced_by}: cannot read image file {path}: {error}") from None
    return inspect_image_bytes(encoded, f"{referenced_by}: image {path}")


def inspect_image_bytes(encoded: bytes, where: str) -> ImageFile:
    """Decode ``encoded`` once to prove it is a whole JPEG/PNG and to learn its size.

    The header is checked first (format, size, the pixel limit of
    ``objdet.data.image_decode``), then the data is decoded (a JPEG at 1/8 scale).
    """
    header = read_image_header(encoded, where)
    if header.image_format not in SUPPORTED_FORMATS:
        raise DataError(
            f"{where}: expected a JPEG or PNG image, found format {header.image_format.upper()}"
        )
    verify_image_bytes(encoded, where)
    return ImageFile(encoded, header.image_format, header.height, header.width)
