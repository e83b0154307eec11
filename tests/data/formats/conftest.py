"""Helpers for the format tests: tiny real image files and label maps in tmp_path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from objdet.structures.label_map import LabelMap, LabelMapItem, load_label_map


def image_bytes(width: int, height: int, image_format: str = "JPEG", seed: int = 0) -> bytes:
    """A small noisy RGB image encoded as JPEG or PNG."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def write_image(path: Path, width: int, height: int, image_format: str = "JPEG") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image_bytes(width, height, image_format, seed=len(path.name))
    path.write_bytes(data)
    return data


@pytest.fixture
def animals_label_map() -> LabelMap:
    return LabelMap([LabelMapItem(1, "cat"), LabelMapItem(2, "dog"), LabelMapItem(5, "bird")])


@pytest.fixture(scope="session")
def raccoon_label_map(raccoon_dir: Path) -> LabelMap:
    return load_label_map(raccoon_dir / "object-detection.pbtxt")
