"""Inputs of the serving tests: raccoon JPEGs, PNG re-encodings, pixels, the size limit the
shared server runs with. (A module of its own: ``from conftest import`` would find whichever
tests/**/conftest.py pytest imported last.)"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

RACCOON_IMAGES = Path(__file__).resolve().parents[2] / "datasets" / "raccoon" / "images"
MAX_REQUEST_BYTES = 2_000_000


def jpeg_bytes(name: str) -> bytes:
    return (RACCOON_IMAGES / name).read_bytes()


def png_of(data: bytes, size: tuple[int, int] | None = None) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pixels_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
