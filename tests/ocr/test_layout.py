"""Column blocks and their reading order on hand-made detections, their text / JSON / hOCR,
and a two-column page drawn with a font (its glyphs' true boxes as the detections)."""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from objdet.ocr.hocr import hocr_document, page_json
from objdet.ocr.lines import Glyph, assemble_blocks
from objdet.ocr.reading import PageReader, PageResult
from objdet.ocr.samples import load_font

ASCENDERS, DESCENDERS = set("bdfhklt"), set("gpqy,")
WIDE_GAP = 60.0  # "|" in a line: a gap of 3 glyph heights


def typeset(lines: list[str], *, x0: float = 30.0, y0: float = 60.0, pitch: float = 45.0,
            justify: float | None = None) -> list[Glyph]:
    """Glyphs 12 px wide, 20 high (26 with an ascender or descender), letter gaps of 3 px,
    word gaps of 13 px (each space: leading spaces indent), ``WIDE_GAP`` for "|"; with
    ``justify``, the spaces of all lines but the last stretch them to that width."""
    glyphs = []
    for number, line in enumerate(lines):
        x, baseline = x0, y0 + number * pitch
        stretch = 0.0
        if justify is not None and number < len(lines) - 1:
            stretch = (justify - width(line)) / line.count(" ")
        for char in line:
            if char in " |":
                x += 10.0 + stretch if char == " " else WIDE_GAP - 3.0
                continue
            top = baseline - (26.0 if char in ASCENDERS else 20.0)
            bottom = baseline + (6.0 if char in DESCENDERS else 0.0)
            glyphs.append(Glyph((x, top, x + 12.0, bottom), char, 0.9))
            x += 15.0
    return glyphs


def width(line: str) -> float:
    """The width of a line set by ``typeset`` (pixels)."""
    return sum(10.0 if c == " " else WIDE_GAP - 3.0 if c == "|" else 15.0 for c in line) - 3.0


def rotated(glyphs: list[Glyph], degrees: float) -> list[Glyph]:
    """The page turned by ``degrees`` about its corner (a scan put in askew): each glyph's
    centre turns, its box keeps its size."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    turned = []
    for glyph in glyphs:
        x1, y1, x2, y2 = glyph.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x, y = cx * cos - cy * sin + 40.0, cx * sin + cy * cos + 40.0
        turned.append(Glyph((x - (x2 - x1) / 2, y - (y2 - y1) / 2, x + (x2 - x1) / 2, y + (y2 - y1) / 2),
                            glyph.text, glyph.score))
    return turned


def blocks_of(glyphs: list[Glyph]) -> list[list[str]]:
    return [[line.text for line in block.lines] for block in assemble_blocks(glyphs)]


LEFT = ["the quick brown fox", "jumps over a lazy", "dog and runs away", "into the dark woods", "at night."]
RIGHT = ["pack my box with", "five dozen liquor", "jugs, said the", "cook to the boy", "once more."]
RIGHT_X = 30.0 + width(LEFT[0])  # + the gutter


@pytest.mark.parametrize(("gutter", "offset"), [(30.0, 0.0), (50.0, 0.0), (50.0, 22.0), (120.0, 10.0)])
def test_two_columns_are_read_one_after_the_other(gutter: float, offset: float) -> None:
    """Gutters of 1.5 to 6 glyph heights (at 4 the lines no longer join across it), the
    right column's lines level with the left's or half a line lower."""
    glyphs = typeset(LEFT) + typeset(RIGHT, x0=RIGHT_X + gutter, y0=60.0 + offset)
    assert blocks_of(glyphs) == [LEFT, RIGHT]
    shuffled = [glyphs[i] for i in np.random.default_rng(0).permutation(len(glyphs))]
    assert blocks_of(shuffled) == [LEFT, RIGHT]


HEADING = ["a heading across both of the columns"]
FOOTER = ["and a footer below them both, as wide"]


def heading_columns_footer(gutter: float = 45.0) -> list[Glyph]:
    return (typeset(HEADING) + typeset(LEFT, y0=120.0) + typeset(RIGHT[:4], x0=RIGHT_X + gutter, y0=120.0)
            + typeset(FOOTER, y0=120.0 + 45.0 * len(LEFT) + 20.0))


def test_heading_columns_footer() -> None:
    """The heading crosses the gutter above the columns, the footer below them (under the
    longer left column): both are blocks of their own, read first and last."""
    blocks = assemble_blocks(heading_columns_footer())
    assert [[line.text for line in block.lines] for block in blocks] == [HEADING, LEFT, RIGHT[:4], FOOTER]
    assert PageResult(blocks, 1.0, (500, 700)).text == "\n\n".join(
        "\n".join(lines) for lines in [HEADING, LEFT, RIGHT[:4], FOOTER])


def test_three_columns() -> None:
    columns = [["one two", "three four", "five six", "seven"],
               ["eight nine", "ten eleven", "twelve", "thirteen"],
               ["fourteen", "fifteen six", "seventeen", "eighteen"]]
    glyphs = []
    for index, column in enumerate(columns):
        glyphs += typeset(column, x0=30.0 + index * (width("fifteen six") + 40.0), y0=60.0 + 5 * index)
    assert blocks_of(glyphs) == columns


SINGLE = [
    "    a paragraph that starts",  # indented
    "with an indent and runs on",
    "to a ragged right margin",
    "and ends here.",  # short: no fragment right of the wide gap below
    "    next a gap in one|line",
    "of the text that stays in",
    "the column and one river:",
    "the gaps in|these two lines",
    "lie one under|the other one",
    "but make no column of it.",
]


@pytest.mark.parametrize("degrees", [0.0, 3.0])
def test_one_column_is_one_block(degrees: float) -> None:
    """Indentation, a ragged right margin, a wide gap in one line and a river of wide gaps
    in two lines, straight and skewed: one block, its lines as typed."""
    expected = [" ".join(line.replace("|", " ").split()) for line in SINGLE]
    assert blocks_of(rotated(typeset(SINGLE), degrees)) == [expected]


JUSTIFIED_LEFT = ["lines of a page,", "set justified in", "two columns that", "are read one by",
                  "one: the left on", "first, the right", "one after it."]
RAGGED_RIGHT = ["the gutter slants", "on a skewed page:", "it is found after", "the page is turned",
                "back by the skew."]


@pytest.mark.parametrize("degrees", [-3.0, 2.5, 4.0])
def test_skewed_columns(degrees: float) -> None:
    """A page turned by a few degrees: its gutter (1.5 glyph heights between a justified
    and a left-aligned column) slants by 10 to 16 px over the columns' height, so that no
    vertical band of the page is wide enough: it is found in the page turned back."""
    column_width = max(width(line) for line in JUSTIFIED_LEFT)
    glyphs = (typeset(HEADING) + typeset(JUSTIFIED_LEFT, y0=120.0, justify=column_width)
              + typeset(RAGGED_RIGHT, x0=30.0 + column_width + 30.0, y0=120.0)
              + typeset(FOOTER, y0=120.0 + 45.0 * len(JUSTIFIED_LEFT) + 20.0))
    assert blocks_of(rotated(glyphs, degrees)) == [HEADING, JUSTIFIED_LEFT, RAGGED_RIGHT, FOOTER]


def test_json_and_hocr_have_a_level_per_block() -> None:
    page = PageResult(assemble_blocks(heading_columns_footer()), 1.0, (500, 700))
    as_json = page_json(page, "page.png")
    assert [[line["text"] for line in block["lines"]] for block in as_json["blocks"]] == [
        HEADING, LEFT, RIGHT[:4], FOOTER]
    assert as_json["blocks"][1]["box"] == [round(v, 1) for v in page.blocks[1].box]
    namespace = {"h": "http://www.w3.org/1999/xhtml"}
    document = hocr_document([("page.png", page)])
    root = ElementTree.fromstring(document.split("\n", 3)[3])  # after the XML and DOCTYPE lines
    areas = root.findall(".//h:div[@class='ocr_page']/h:div[@class='ocr_carea']", namespace)
    assert len(areas) == 4
    paragraphs = [area.findall("h:p[@class='ocr_par']", namespace) for area in areas]
    assert [len(found) for found in paragraphs] == [1, 1, 1, 1]
    lines = [[line.get("id") for line in found[0].findall("h:span[@class='ocr_line']", namespace)]
             for found in paragraphs]
    assert lines[1] == [f"line_1_{n}" for n in range(2, 2 + len(LEFT))]
    x1, y1, x2, y2 = (round(v) for v in page.blocks[2].box)
    assert areas[2].get("title") == paragraphs[2][0].get("title") == f"bbox {x1} {y1} {x2} {y2}"
    assert "ocr_carea ocr_par ocr_line" in document


def test_a_drawn_two_column_page(font_path: Path) -> None:
    """Two columns drawn with DejaVu Sans (text 18 px, a gutter of 26 px), read by a
    ``PageReader`` whose detector returns each glyph's true box."""
    font = load_font(font_path, 18)
    columns = [["The first column of", "this page has five", "lines of text that", "must be read", "before the other."],
               ["The second column", "is read after it,", "not line by line", "across the page."]]
    page = Image.new("L", (460, 160), 255)
    draw = ImageDraw.Draw(page)
    texts = sorted({c for column in columns for line in column for c in line if c != " "})
    boxes, labels = [], []
    for left, column in zip((10, 10 + 26 + max(font.getlength(line) for line in columns[0])), columns):
        for number, line in enumerate(column):
            for index, char in enumerate(line):
                if char != " ":
                    origin = (left + font.getlength(line[:index]), 8 + 29 * number)
                    draw.text(origin, char, font=font, fill=0)
                    boxes.append(draw.textbbox(origin, char, font=font))
                    labels.append(texts.index(char) + 1)

    def detect(tile: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert tile.shape == (3, 460, 460)  # one tile: the glyphs' page boxes are its boxes
        return np.asarray(boxes, np.float64), np.full(len(boxes), 0.9), np.asarray(labels)

    reader = PageReader(detect=detect, glyph_texts=texts, tile_size=460, line_height=18.0)
    result = reader.read(np.asarray(page), scale=1.0)
    assert result.text == "\n\n".join("\n".join(column) for column in columns)
    assert [len(block.lines) for block in result.blocks] == [5, 4]
