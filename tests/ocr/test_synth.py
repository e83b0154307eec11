from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from objdet.errors import DataError
from objdet.ocr.samples import INK_THRESHOLD, charset_glyph_texts, render_font_samples
from objdet.ocr.synth import GlyphSet, SynthOptions, render_page, synthesize

CORPUS = "the first state of the estate is best kept in the east of the west"


@pytest.fixture(scope="module")
def glyph_set(font_path: Path) -> GlyphSet:
    return GlyphSet(render_font_samples(font_path, charset_glyph_texts("abefhiknopstw", ["st"])))


def test_tokenize_prefers_ligatures_and_drops_unknown_characters(glyph_set: GlyphSet) -> None:
    assert glyph_set.tokenize("best  tea!") == ["b", "e", "st", " ", "t", "e", "a"]


def test_pages_are_deterministic_per_seed(glyph_set: GlyphSet) -> None:
    options = SynthOptions(seed=7)
    first, again = render_page(glyph_set, options, 3, CORPUS), render_page(glyph_set, options, 3, CORPUS)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.boxes, again.boxes)
    assert first.text == again.text and first.glyph_texts == again.glyph_texts
    other = render_page(glyph_set, SynthOptions(seed=8), 3, CORPUS)
    assert not np.array_equal(first.image, other.image)
    assert not np.array_equal(first.image, render_page(glyph_set, options, 4, CORPUS).image)


@pytest.mark.parametrize("page_index", range(4))
def test_boxes_cover_exactly_the_glyphs_drawn(glyph_set: GlyphSet, page_index: int) -> None:
    page = render_page(glyph_set, SynthOptions(seed=1), page_index, CORPUS if page_index % 2 else None)
    assert len(page.boxes) > 10
    assert len(page.boxes) == len(page.glyph_texts)
    covered = np.zeros(page.ink.shape, bool)
    for x1, y1, x2, y2 in page.boxes.astype(int):
        covered[y1:y2, x1:x2] = True
        inside = page.ink[y1:y2, x1:x2] >= INK_THRESHOLD
        # tight: ink on every edge of the box
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    assert not ((page.ink >= INK_THRESHOLD) & ~covered).any(), "ink outside every box"
    # the page text is the glyphs drawn, in order
    assert page.text.replace("\n", "").replace(" ", "") == "".join(page.glyph_texts)
    # the printed page is darker where the ink is
    assert page.image[page.ink > 0.9].mean() < page.image[page.ink == 0].mean() - 60


def test_synthesize_writes_records_label_map_and_texts(tmp_path: Path, font_path: Path) -> None:
    from objdet.data.formats.convert import read_tfrecord_samples
    from objdet.structures.label_map import load_label_map

    samples = render_font_samples(font_path, charset_glyph_texts("abst", ["st"]))
    summary = synthesize(samples, tmp_path / "out", SynthOptions(num_pages=3, num_eval_pages=2), CORPUS)
    out = tmp_path / "out"
    label_map = load_label_map(out / "label_map.pbtxt")
    assert [label_map.item(i).name for i in label_map.ids] == ["a", "b", "s", "t", "st"]
    train = list(read_tfrecord_samples(str(out / "train.record")))
    assert len(train) == 3 and summary.num_eval_pages == 2
    assert all(s.label_texts == [label_map.item(int(i)).name for i in s.labels] for s in train)
    pages = [json.loads(line) for line in (out / "pages.jsonl").read_text().splitlines()]
    assert [p["split"] for p in pages] == ["train"] * 3 + ["eval"] * 2
    assert (out / "eval" / "gt" / "page_00004.txt").read_text() == pages[4]["text"] + "\n"
    assert (out / "eval" / "images" / "page_00004.png").is_file()
    assert json.loads((out / "synth.json").read_text())["line_height"] > 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_synthesize_rejects_a_corpus_without_the_glyphs(tmp_path: Path, font_path: Path) -> None:
    samples = render_font_samples(font_path, ["a"])
    with pytest.raises(DataError, match="--text"):
        synthesize(samples, tmp_path / "out", SynthOptions(num_pages=1), "xyz")
    with pytest.raises(DataError, match="no glyph samples"):
        synthesize([], tmp_path / "out", SynthOptions(num_pages=1))


def test_cli_synth_from_a_font(tmp_path: Path, font_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from objdet.cli.main import main

    (tmp_path / "corpus.txt").write_text(CORPUS)
    assert main(["ocr", "synth", "--font", str(font_path), "--charset", "abefhiknopstw",
                 "--ligatures", "st", "--output_dir", str(tmp_path / "out"), "--num_pages", "2",
                 "--num_eval_pages", "1", "--text", str(tmp_path / "corpus.txt")]) == 0
    assert "wrote 2 training and 1 eval pages" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "synth.json").read_text())["glyph_texts"][-1] == "st"
    assert main(["ocr", "synth", "--font", str(font_path), "--output_dir", str(tmp_path / "o")]) == 2
    assert "--font needs --charset" in capsys.readouterr().err
