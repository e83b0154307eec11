"""The reading scale from the glyphs the detector finds (issue 15): a page's line height
depends on its text, a glyph's height over its glyph's training height does not.

The detector here finds dark rectangles and labels them by their gray level, so the test page
is a page of "glyphs" of known size: label 1 is a tall glyph (reference height 1.0, a capital),
label 2 a short one (reference 0.6, an "x")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objdet.ocr.page_scale import glyph_size
from objdet.ocr.reading import PageReader

LEVELS = {1: 0, 2: 110}  # label id -> the gray level of its rectangles


def find_rectangles(tile: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [3, T, T] -> boxes of the dark rectangles (rows of separate rectangles), each
    labelled by the gray level nearest its darkest pixels."""
    gray = tile[0].numpy().astype(np.int32)
    boxes, labels = [], []
    for top, bottom in _runs((gray < 180).any(axis=1)):
        for left, right in _runs((gray[top:bottom] < 180).any(axis=0)):
            darkest = np.percentile(gray[top:bottom, left:right], 10)
            boxes.append((left, top, right, bottom))
            labels.append(min(LEVELS, key=lambda label: abs(LEVELS[label] - darkest)))
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.full(len(boxes), 0.9), np.asarray(labels)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[0::2], edges[1::2]))


def page_of(label: int, glyph_height: int = 18) -> np.ndarray:
    """Four lines of twenty glyphs of one label, ``glyph_height`` px high."""
    page = np.full((200, 460), 250, np.uint8)
    for row in range(4):
        top = 15 + row * 45
        for column in range(20):
            page[top:top + glyph_height, 10 + column * 22:22 + column * 22] = LEVELS[label]
    return page


def reader(glyph_heights: list[float] | None) -> PageReader:
    return PageReader(detect=find_rectangles, glyph_texts=["A", "x"], tile_size=160, line_height=18.0,
                      glyph_heights=glyph_heights, glyph_height=16.0 if glyph_heights else None)


@pytest.mark.parametrize(("label", "expected"), [(1, 16.0 / 18.0), (2, 16.0 / 30.0)])
def test_text_of_short_or_tall_glyphs_is_read_at_the_training_glyph_size(label: int, expected: float) -> None:
    page = page_of(label)
    measured = reader([1.0, 0.6])
    assert measured.page_scale(page) == pytest.approx(1.0)  # lines alone: both pages alike
    # an "x" 18 px high is text of 30 px capitals: read at 16 / 30
    assert measured.refine_scale(page, 1.0) == pytest.approx(expected, rel=0.06)
    result = measured.read(page)
    assert result.scale == pytest.approx(expected, rel=0.06)
    assert [line.text.replace(" ", "") for line in result.lines] == ["Ax"[label - 1] * 20] * 4


def test_without_glyph_heights_the_line_height_scale_stands() -> None:
    assert reader(None).read(page_of(2)).scale == pytest.approx(1.0)


def test_glyph_size_ignores_glyphs_too_small_to_measure() -> None:
    heights = np.array([30.0, 18.0, 3.0, 4.0, 3.0])  # a capital, an "x", three hyphens
    references = np.array([1.0, 0.6, 0.1, 0.1, 0.1])
    assert glyph_size(heights, references) == pytest.approx(30.0)
    assert glyph_size(np.array([3.0]), np.array([0.1])) is None
