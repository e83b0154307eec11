"""One column of text whose detections have holes (glyphs the detector missed, issue 15: a
run of capitals read at the wrong scale) is one block, its lines in order: the holes of a
few rows are no gutter between columns."""

from __future__ import annotations

import numpy as np
import pytest

from objdet.ocr.lines import Glyph, assemble_blocks

WORDS = ["THE", "EXTENT", "PERMITTED", "BY", "APPLICABLE", "LAW", "EXCEPT", "WHEN", "OTHERWISE", "STATED",
         "IN", "WRITING"]


def column_with_holes(seed: int, rows: int = 8, holes_per_row: int = 2) -> tuple[list[Glyph], list[str]]:
    """Glyphs 8 to 16 px wide, 20 high, 3 px apart, words 13 px apart, rows 45 px apart, about
    600 px wide; then ``holes_per_row`` runs of 3 to 6 glyphs missing in each row. Returns
    the glyphs and each row's first glyph's text."""
    rng = np.random.default_rng(seed)
    glyphs, firsts = [], []
    for row in range(rows):
        x, baseline, line = 30.0, 60.0 + 45.0 * row, []
        while x < 600.0:
            for char in WORDS[int(rng.integers(len(WORDS)))]:
                glyph_width = float(rng.integers(8, 17))
                line.append(Glyph((x, baseline - 20.0, x + glyph_width, baseline), char, 0.9))
                x += glyph_width + 3.0
            x += 10.0
        for _ in range(holes_per_row):
            start = int(rng.integers(2, len(line) - 8))
            del line[start:start + int(rng.integers(3, 7))]
        glyphs.extend(line)
        firsts.append(line[0].text)
    return glyphs, firsts


@pytest.mark.parametrize("seed", range(12))
def test_holes_in_one_column_make_no_columns(seed: int) -> None:
    glyphs, firsts = column_with_holes(seed)
    blocks = assemble_blocks(glyphs)
    assert len(blocks) == 1, [[line.text for line in block.lines] for block in blocks]
    assert [line.glyphs[0].text for line in blocks[0].lines] == firsts
