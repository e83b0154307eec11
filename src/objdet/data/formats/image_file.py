"""Reading an image file for a dataset record: its bytes, kept as they are, and its size.

The bytes go into the ``Sample`` unchanged (never re-encoded), so a converted TFRecord holds
exactly the file the user had. The image is still decoded once, at reduced resolution where
the format allows, so a truncated or corrupt file fails here, naming the file, rather than in
the middle of a training run.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from objdet.errors import DataError

# PIL format name -> tf.Example image/format value.
SUPPORTED_FORMATS = {"JPEG": "jpeg", "PNG": "png"}


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
    """Decode ``encoded`` once to prove it is a whole JPEG/PNG and to learn its size."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
            pil_format = image.format or ""
            if pil_format not in SUPPORTED_FORMATS:
                raise DataError(
                    f"{where}: expected a JPEG or PNG image, found format {pil_format or 'unknown'}"
                )
            # draft() lets JPEG decode at 1/8 scale: the whole entropy-coded stream is still
            # read (so truncation is caught) at a fraction of the cost of a full decode.
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{where}: image bytes do not decode: {error}") from None
    return ImageFile(encoded, SUPPORTED_FORMATS[pil_format], height, width)
