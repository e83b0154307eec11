"""Tiny real image files for the format tests (imported by the test modules)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(width: int, height: int, image_format: str = "JPEG", seed: int = 0) -> bytes:
    """A small noisy RGB image encoded as JPEG or PNG."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def write_image(path: Path, width: int, height: int, image_format: str = "JPEG") -> bytes:
    """Write a ``width`` x ``height`` image to ``path`` (parents created); return its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image_bytes(width, height, image_format, seed=len(path.name))
    path.write_bytes(data)
    return data
