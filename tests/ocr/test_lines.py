"""Line grouping, reading order and spacing on hand-made detections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from objdet.ocr.lines import Glyph, assemble_lines, drop_duplicates, lines_text, space_threshold

HEIGHT = 20.0  # x-height glyphs; ascenders 26, descenders 26 (6 below the baseline)
ASCENDERS, DESCENDERS, SMALL = set("bdfhklt"), set("gpqy"), set(".,")


def typeset(lines: list[str], *, slope: float = 0.0, jitter: float = 0.0, letter_gap: float = 3.0,
            word_gap: float = 13.0, pitch: float = 45.0, seed: int = 0, x0: float = 30.0
            ) -> list[Glyph]:
    """Boxes for ``lines`` as a typesetter would place them: glyphs 12 px wide on a
    baseline with ``slope`` (dy/dx) and random vertical ``jitter`` (pixels)."""
    rng = np.random.default_rng(seed)
    glyphs = []
    for number, line in enumerate(lines):
        x = x0
        for char in line:
            if char == " ":
                x += word_gap - letter_gap
                continue
            width = 4.0 if char in SMALL else 12.0
            baseline = 60.0 + number * pitch + slope * x + rng.uniform(-jitter, jitter)
            top = baseline - (26.0 if char in ASCENDERS else 5.0 if char in SMALL else HEIGHT)
            bottom = baseline + (6.0 if char in DESCENDERS or char == "," else 0.0)
            glyphs.append(Glyph((x, top, x + width, bottom), char, 0.9))
            x += width + letter_gap
    return glyphs


def read(glyphs: list[Glyph], **kwargs: float) -> str:
    return lines_text(assemble_lines(glyphs, **kwargs))


TEXT = ["the quick brown fox", "jumps over a lazy dog.", "pack my box, with five"]


def test_straight_lines_read_in_order_with_spaces() -> None:
    assert read(typeset(TEXT)) == "\n".join(TEXT)


def test_input_order_does_not_matter() -> None:
    glyphs = typeset(TEXT)
    shuffled = [glyphs[i] for i in np.random.default_rng(1).permutation(len(glyphs))]
    assert read(shuffled) == "\n".join(TEXT)


@pytest.mark.parametrize("degrees", [-4.0, -1.5, 2.0, 4.0])
def test_skewed_lines(degrees: float) -> None:
    """At 4 degrees a line drifts 28 px over its length: more than half the line pitch."""
    glyphs = typeset(TEXT, slope=math.tan(math.radians(degrees)), pitch=38.0)
    assert read(glyphs) == "\n".join(TEXT)


def test_uneven_baselines() -> None:
    glyphs = typeset(TEXT, jitter=4.0, slope=0.02, seed=3)
    assert read(glyphs) == "\n".join(TEXT)


def test_touching_and_kerned_glyphs_stay_in_one_word() -> None:
    glyphs = typeset(["touching glyphs here"], letter_gap=-1.0, word_gap=10.0)
    assert read(glyphs) == "touching glyphs here"


def test_ligature_wins_over_its_parts() -> None:
    """A detector may also find "s" inside the "st" ligature: the better-scoring reading of
    the spot is kept."""
    glyphs = typeset(["fi st"])
    ligature = Glyph((glyphs[2].box[0], glyphs[2].box[1], glyphs[3].box[2], glyphs[3].box[3]), "st", 0.8)
    part = Glyph(glyphs[2].box, "s", 0.5)
    assert read([glyphs[0], glyphs[1], ligature, part]) == "fi st"
    assert len(drop_duplicates([ligature, part])) == 1


def test_two_readings_of_one_spot_keep_the_better() -> None:
    glyph = Glyph((0, 0, 10, 20), "l", 0.9)
    other = Glyph((0.5, 0, 10.5, 20), "I", 0.4)
    assert [g.text for g in drop_duplicates([other, glyph])] == ["l"]


def test_space_threshold_splits_letter_from_word_gaps() -> None:
    gaps = [2, 3, 1, 2, 14, 3, 2, 15, 2]
    assert 3 < space_threshold(gaps, unit=20.0) < 14
    assert space_threshold([2, 3], unit=20.0) == pytest.approx(8.0)  # too few: the default
    assert space_threshold([2, 2, 3, 3, 2], unit=20.0) == pytest.approx(8.0)  # one group


def test_no_glyphs() -> None:
    assert assemble_lines([]) == []
    assert read([]) == ""
