"""What synthetic pages must show the detector that a corpus and a sample sheet alone do not
(issue 15): glyphs raised above the baseline where print has them, every glyph often enough
and out of the corpus's contexts, clean pages as well as worn ones; and synth.json's glyph
heights, with which the reader measures the size of a page's text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from objdet.errors import DataError
from objdet.ocr.samples import charset_glyph_texts, load_csv_samples, render_font_samples
from objdet.ocr.synth import GlyphSet, SynthOptions, render_page, synthesize

CORPUS = "a-x 'ax' xa-ax ax-x 'xx' a-a"


@pytest.fixture(scope="module")
def glyph_set(font_path: Path) -> GlyphSet:
    return GlyphSet(render_font_samples(font_path, charset_glyph_texts("ax-'Q8")))


def test_font_samples_of_raised_glyphs_have_a_negative_descent(glyph_set: GlyphSet) -> None:
    descent = {text: samples[0].descent for text, samples in glyph_set.by_text.items()}
    assert descent["-"] < -1.0 and descent["'"] < -1.0  # bottom far above the baseline
    assert abs(descent["a"]) < 0.1 and abs(descent["x"]) < 0.1


def test_hyphens_and_apostrophes_are_drawn_above_the_baseline(glyph_set: GlyphSet) -> None:
    checked = 0
    for index in range(3):
        page = render_page(glyph_set, SynthOptions(seed=2), index, CORPUS)
        letters = np.isin(page.glyph_texts, ["a", "x"])
        x_height = float(np.median(page.boxes[letters, 3] - page.boxes[letters, 1]))
        for i, (box, text) in enumerate(zip(page.boxes, page.glyph_texts)):
            # the baseline: the bottoms of the letters drawn just before and after it on its line
            beside = [page.boxes[j, 3] for j in (i - 1, i + 1) if 0 <= j < len(page.boxes) and letters[j]
                      and abs(page.boxes[j, 0] - box[0]) < 3 * x_height]
            if text not in "-'" or not beside:
                continue
            assert box[3] < min(beside) - 0.25 * x_height, (text, box, beside)
            checked += 1
    assert checked > 10


def test_corpus_pages_hold_every_glyph_and_random_words(glyph_set: GlyphSet) -> None:
    pages = [render_page(glyph_set, SynthOptions(seed=3), index, CORPUS) for index in range(4)]
    drawn = [text for page in pages for text in page.glyph_texts]
    assert {"Q", "8"} <= set(drawn)  # not in the corpus: drawn in random words
    # random words draw each of the 6 glyphs alike: Q and 8 are a third of their glyphs
    assert 0.02 < sum(text in "Q8" for text in drawn) / len(drawn) < 0.08


def test_some_pages_are_printed_clean(glyph_set: GlyphSet) -> None:
    clean = 0
    for index in range(16):
        page = render_page(glyph_set, SynthOptions(seed=4), index, CORPUS)
        paper = page.image[page.ink == 0]
        clean += int(paper.max() - paper.min() <= 1)
    assert 1 <= clean <= 8


def test_synth_json_has_each_glyphs_relative_height(tmp_path: Path, font_path: Path) -> None:
    samples = render_font_samples(font_path, ["x", "H", "g"])
    synthesize(samples, tmp_path / "out", SynthOptions(num_pages=1, num_eval_pages=0), "xHg")
    info = json.loads((tmp_path / "out" / "synth.json").read_text(encoding="utf-8"))
    heights = dict(zip(info["glyph_texts"], info["glyph_heights"]))
    assert heights["H"] == pytest.approx(1.0)  # the median of x, H, g
    assert heights["x"] < 0.8 and heights["g"] > 1.0


def test_csv_descent_may_be_negative_but_not_absurd(tmp_path: Path, font_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.pad(np.zeros((3, 12), np.uint8), 8, constant_values=240)).save(tmp_path / "hyphen.png")
    (tmp_path / "s.csv").write_text("image,text,descent\nhyphen.png,-,-3\n")
    assert load_csv_samples(tmp_path / "s.csv")[0].descent == -3.0
    (tmp_path / "bad.csv").write_text("image,text,descent\nhyphen.png,-,-30\n")
    with pytest.raises(DataError, match=r"bad.csv:2: field descent is -30.0; expected a number in \[-10, 1\)"):
        load_csv_samples(tmp_path / "bad.csv")
