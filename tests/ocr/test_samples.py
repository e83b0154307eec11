from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from objdet.errors import DataError
from objdet.ocr.samples import (
    charset_glyph_texts,
    load_csv_samples,
    load_voc_samples,
    render_font_samples,
)


def _glyph_png(path: Path, text: str, font_path: Path, size: int = 40) -> None:
    image = Image.new("L", (size * 2, size * 2), 230)
    ImageDraw.Draw(image).text((10, 10), text, font=ImageFont.truetype(str(font_path), size), fill=20)
    image.save(path)


def test_csv_samples_are_cropped_to_their_ink(tmp_path: Path, font_path: Path) -> None:
    _glyph_png(tmp_path / "a.png", "a", font_path)
    _glyph_png(tmp_path / "st.png", "st", font_path)
    (tmp_path / "s.csv").write_text("image,text\na.png,a\nst.png,st\n")
    samples = load_csv_samples(tmp_path / "s.csv")
    assert [s.text for s in samples] == ["a", "st"]
    for sample in samples:
        assert sample.ink.max() == pytest.approx(1.0)
        assert sample.ink[0].max() > 0.3 and sample.ink[-1].max() > 0.3  # tight crop
        assert sample.ink[:, 0].max() > 0.3 and sample.ink[:, -1].max() > 0.3
    assert samples[1].width > samples[0].width


def test_csv_errors_name_the_file_and_field(tmp_path: Path, font_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("image,label\na.png,a\n")
    with pytest.raises(DataError, match=r"bad.csv.*missing text"):
        load_csv_samples(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("image,text\na.png,\n")
    with pytest.raises(DataError, match=r"empty.csv:2: field text is empty"):
        load_csv_samples(tmp_path / "empty.csv")
    (tmp_path / "missing.csv").write_text("image,text\nnope.png,a\n")
    with pytest.raises(DataError, match=r"missing.csv:2: image .*nope.png does not exist"):
        load_csv_samples(tmp_path / "missing.csv")
    Image.new("L", (20, 20), 255).save(tmp_path / "blank.png")
    (tmp_path / "blank.csv").write_text("image,text\nblank.png,a\n")
    with pytest.raises(DataError, match=r"blank.csv:2: .*no ink"):
        load_csv_samples(tmp_path / "blank.csv")


def test_voc_page_gives_samples_with_their_descent(tmp_path: Path, font_path: Path) -> None:
    font = ImageFont.truetype(str(font_path), 40)
    page = Image.new("L", (200, 80), 255)
    draw = ImageDraw.Draw(page)
    boxes = {}
    for x, char in ((10, "a"), (60, "p"), (110, "x")):
        draw.text((x, 60), char, font=font, fill=0, anchor="ls")
        boxes[char] = [int(v) for v in draw.textbbox((x, 60), char, font=font, anchor="ls")]
    page.save(tmp_path / "page.png")
    objects = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{b[0] - 1}</xmin><ymin>{b[1] - 1}</ymin>"
        f"<xmax>{b[2] + 1}</xmax><ymax>{b[3] + 1}</ymax></bndbox></object>" for c, b in boxes.items())
    (tmp_path / "page.xml").write_text(f"<annotation><filename>page.png</filename>{objects}</annotation>")
    samples = {s.text: s for s in load_voc_samples(tmp_path / "page.xml")}
    assert set(samples) == {"a", "p", "x"}
    assert samples["p"].descent > 0.2
    assert samples["a"].descent < 0.05 and samples["x"].descent < 0.05


def test_font_samples_keep_relative_sizes(font_path: Path) -> None:
    texts = charset_glyph_texts("ax H x", ligatures=["st", ""])
    assert texts == ["a", "x", "H", "st"]
    samples = {s.text: s for s in render_font_samples(font_path, texts, size=48)}
    assert samples["H"].height > samples["x"].height
    assert np.isclose(samples["x"].height, samples["a"].height, atol=3)
    with pytest.raises(DataError, match="cannot load the font"):
        render_font_samples(Path("/nonexistent.ttf"), ["a"])
