"""Fixtures for the format tests: label maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet.structures.label_map import LabelMap, LabelMapItem, load_label_map


@pytest.fixture
def animals_label_map() -> LabelMap:
    return LabelMap([LabelMapItem(1, "cat"), LabelMapItem(2, "dog"), LabelMapItem(5, "bird")])


@pytest.fixture(scope="session")
def raccoon_label_map(raccoon_dir: Path) -> LabelMap:
    return load_label_map(raccoon_dir / "object-detection.pbtxt")
