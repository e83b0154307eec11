"""Tiling of pages larger than the detector's canvas, with a detector that finds dark
rectangles (label = which of three gray levels), so every glyph's true box is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objdet.errors import DataError
from objdet.ocr.reading import PageReader

LEVELS = {1: 0, 2: 60, 3: 120}  # label id -> gray level of its rectangles


def find_rectangles(tile: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [3, T, T] -> the boxes of the rectangles of each gray level (one per run of
    columns: the test page's rectangles do not share columns within a row band)."""
    gray = tile[0].numpy()
    boxes, labels = [], []
    for label, level in LEVELS.items():
        mask = gray == level
        for band in _runs(mask.any(axis=1)):
            columns = mask[band[0]:band[1]].any(axis=0)
            for x1, x2 in _runs(columns):
                boxes.append((x1, band[0], x2, band[1]))
                labels.append(label)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.full(len(boxes), 0.9), np.asarray(labels)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[0::2], edges[1::2]))


def test_each_glyph_is_read_once_across_tiles() -> None:
    page = np.full((330, 500), 250, np.uint8)
    rng = np.random.default_rng(0)
    truth = []
    for row in range(8):
        top = 15 + row * 38
        for column in range(22):
            left = 10 + column * 22
            label = int(rng.integers(1, 4))
            page[top:top + 18, left:left + 12] = LEVELS[label]
            truth.append(((left, top, left + 12, top + 18), "abc"[label - 1]))
    reader = PageReader(detect=find_rectangles, glyph_texts=["a", "b", "c"], tile_size=160,
                        line_height=18.0)
    found = reader.detect_glyphs(page)
    assert sorted((tuple(int(v) for v in box), text) for box, text, _ in found) == sorted(truth)
    result = reader.read(page, scale=1.0)
    expected = [" ".join(["".join(t for _, t in truth[r * 22:(r + 1) * 22])]) for r in range(8)]
    assert [line.text.replace(" ", "") for line in result.lines] == expected


def test_pages_are_rescaled_to_the_training_line_height() -> None:
    page = np.full((200, 300), 250, np.uint8)
    for row in range(4):
        page[20 + row * 45:20 + row * 45 + 30, 10:290:3] = 0  # lines 30 px high
    reader = PageReader(detect=find_rectangles, glyph_texts=["a", "b", "c"], tile_size=160,
                        line_height=15.0)
    assert reader.page_scale(page) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(DataError, match="expected a \\[H, W\\] gray image"):
        reader.read(np.zeros((4, 4, 3), np.uint8))
