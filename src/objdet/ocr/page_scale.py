"""The size of text on a page, measured the same way on synthetic and real pages.

The detector is trained on glyphs of one range of sizes; a scan is rescaled before reading so
that its glyphs have the size the training pages had. Two measures, coarse then fine:

- ``median_line_height`` needs no model: the page is cut into vertical strips (narrow enough
  that a skewed line stays a band), and in each strip the runs of rows holding ink are text
  lines. Their height depends on the text: a run of capitals has no descenders, a strip of
  lower case may have no ascenders, so pages of one font at one size measure 20 to 27 px.
- ``glyph_size`` corrects it from the glyphs the detector finds (``PageReader.refine_scale``):
  each detected glyph's height over its glyph's height in the training set.
"""

from __future__ import annotations

import numpy as np

STRIP_WIDTH = 256  # pixels; at 2.5 degrees of skew a line drifts 11 px across a strip
MIN_RUN = 3  # rows; shorter runs are specks or rules, not lines


def ink_rows(coverage: np.ndarray) -> np.ndarray:
    """``[H, W]`` ink coverage -> ``[H]`` bool: rows where at least 1% of pixels (and at
    least one) are mostly ink."""
    inked = (coverage >= 0.5).sum(axis=1)
    return inked >= max(1, int(0.01 * coverage.shape[1]))


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[1::2] - edges[0::2]


def median_line_height(gray: np.ndarray) -> float | None:
    """``[H, W]`` gray 0..255 page -> the median height of its text lines in pixels (ascender
    to descender), or None when the page has no text lines."""
    from objdet.ocr.samples import ink_coverage

    coverage = ink_coverage(gray)
    width = coverage.shape[1]
    num_strips = max(1, round(width / STRIP_WIDTH))
    heights: list[int] = []
    for strip in np.array_split(coverage, num_strips, axis=1):
        runs = _runs(ink_rows(strip))
        heights.extend(int(r) for r in runs if r >= MIN_RUN)
    return float(np.median(heights)) if heights else None


MIN_REFERENCE = 0.5  # x the set's median: smaller glyphs (dots, hyphens) measure size poorly


def glyph_size(heights: np.ndarray, references: np.ndarray) -> float | None:
    """The size of the glyphs of a page as the synthesizer's ``glyph_height`` measures it.

    ``heights``: ``[D]`` detected glyph box heights in pixels; ``references``: ``[D]`` the
    height of each one's glyph relative to the glyph set's median (``synth.json``'s
    ``glyph_heights``). Each glyph says how large the page's text is (an "x" 15 px high with
    reference 0.7 says 21); their median holds whatever the text is (lower case, capitals,
    digits), unlike the height of the lines. None when no glyph is large enough to tell."""
    usable = references >= MIN_REFERENCE
    if not usable.any():
        return None
    return float(np.median(heights[usable] / references[usable]))
