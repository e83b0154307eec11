"""Glyph samples: the shapes ``objdet ocr synth`` draws pages from.

A ``GlyphSample`` is one image of one glyph as ink coverage (``[H, W]`` float32 in [0, 1],
1 = full ink, cropped to the ink) and the text it reads as: one character, or several for a
ligature ("st"). Three sources give them:

- ``load_csv_samples``: a CSV with columns ``image,text`` (one glyph per image; optional
  column ``descent``: the fraction of the glyph below the baseline, e.g. 0.3 for "p";
  negative for a glyph raised above it, e.g. -3 for a hyphen whose bottom is three of its
  heights above the baseline, -1.5 for an apostrophe).
- ``load_voc_samples``: a LabelImg / Pascal VOC annotated page; each box is a sample and its
  ``name`` the text. Its vertical position on the page gives the descent.
- ``render_font_samples``: every character of a charset (and ligatures) drawn with a font.

Sizes are kept relative within a source: the synthesizer scales a whole set by one factor, so
an "x" stays smaller than an "H" as it was on the page the samples came from.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from objdet.errors import DataError

INK_THRESHOLD = 0.35  # coverage above which a pixel counts as ink (crops and boxes)
DESCENT_RANGE = (-10.0, 0.9)  # glyph heights below the baseline: raised (-) to descending (+)


@dataclass(frozen=True)
class GlyphSample:
    """One glyph image. ``ink``: ``[H, W]`` float32 coverage in [0, 1], cropped to the ink.
    ``descent``: the fraction of the glyph's height below the baseline (0: sits on it;
    negative: raised above it by that many of its heights, as quotes and hyphens are).
    ``source``: where it came from, for messages."""

    text: str
    ink: np.ndarray
    descent: float = 0.0
    source: str = ""

    @property
    def height(self) -> int:
        return int(self.ink.shape[0])

    @property
    def width(self) -> int:
        return int(self.ink.shape[1])


def ink_coverage(gray: np.ndarray) -> np.ndarray:
    """``[H, W]`` gray 0..255 (dark ink on light paper) -> ink coverage ``[H, W]`` in [0, 1].

    Paper is the bright end of the image (98th percentile), full ink its dark end (2nd), so a
    faded scan and a crisp rendering give the same coverage."""
    gray = gray.astype(np.float32)
    paper, ink = np.percentile(gray, 98), np.percentile(gray, 2)
    if paper - ink < 1e-3:
        return np.zeros_like(gray)
    return np.clip((paper - gray) / (paper - ink), 0.0, 1.0)


def crop_to_ink(coverage: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The tight crop around pixels with coverage >= INK_THRESHOLD, and its (x1, y1, x2, y2)
    in ``coverage`` (exclusive ends); None when there is no ink."""
    rows = np.flatnonzero((coverage >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((coverage >= INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        return None
    y1, y2, x1, x2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return coverage[y1:y2, x1:x2], (x1, y1, x2, y2)


def read_gray(path: str | os.PathLike[str], where: str | None = None) -> np.ndarray:
    """An image file -> ``[H, W]`` uint8 gray; errors name ``where`` (e.g. a CSV row) first
    when given."""
    subject = f"{where}: image {path}" if where else f"{path}: image"
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise DataError(f"{subject} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{subject} cannot be decoded: {error}") from None


def load_csv_samples(csv_path: str | os.PathLike[str]) -> list[GlyphSample]:
    """Samples from a CSV with columns ``image,text`` (+ optional ``descent``); image paths
    are relative to the CSV's folder."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            columns = set(rows[0]) if rows else set()
    except FileNotFoundError:
        raise DataError(f"{csv_path}: samples CSV does not exist") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{csv_path}: not UTF-8 text: {error}") from None
    missing = {"image", "text"} - columns
    if not rows or missing:
        raise DataError(f"{csv_path}: expected a header with columns image,text and at least one "
                        f"row; missing {', '.join(sorted(missing)) or 'rows'}")
    samples = []
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path}:{line}"
        text = (row.get("text") or "").strip()
        if not text:
            raise DataError(f"{where}: field text is empty; expected what the glyph reads as")
        descent = _descent(row.get("descent"), where)
        gray = read_gray(csv_path.parent / (row.get("image") or ""), where)
        cropped = crop_to_ink(ink_coverage(gray))
        if cropped is None:
            raise DataError(f"{where}: image {row.get('image')} has no ink (a blank image?)")
        samples.append(GlyphSample(text, cropped[0], descent, where))
    return samples


def _descent(value: str | None, where: str) -> float:
    if value is None or value.strip() == "":
        return 0.0
    try:
        descent = float(value)
    except ValueError:
        raise DataError(f"{where}: field descent is {value!r}; expected a number in "
                        f"[{DESCENT_RANGE[0]:g}, 1) (negative: raised above the baseline)") from None
    if not DESCENT_RANGE[0] <= descent < 1.0:
        raise DataError(f"{where}: field descent is {descent}; expected a number in "
                        f"[{DESCENT_RANGE[0]:g}, 1) (negative: raised above the baseline)")
    return descent


def load_voc_samples(xml_path: str | os.PathLike[str]) -> list[GlyphSample]:
    """Samples from a LabelImg / Pascal VOC page: every ``object`` box, its ``name`` the text.

    The descent of a glyph is measured against the baseline of its line: the median bottom
    of the glyphs that overlap it vertically (most glyphs sit on the baseline)."""
    xml_path = Path(xml_path)
    try:
        root = ElementTree.parse(xml_path).getroot()
    except FileNotFoundError:
        raise DataError(f"{xml_path}: annotation file does not exist") from None
    except ElementTree.ParseError as error:
        raise DataError(f"{xml_path}: not valid XML: {error}") from None
    filename = root.findtext("filename") or ""
    image_path = xml_path.parent / filename
    if not image_path.is_file() and root.findtext("path"):
        image_path = Path(root.findtext("path") or "")
    coverage = ink_coverage(read_gray(image_path, f"{xml_path}: filename"))
    boxes, texts = [], []
    for index, element in enumerate(root.iter("object")):
        where = f"{xml_path}: object {index + 1}"
        text = (element.findtext("name") or "").strip()
        try:
            box = [round(float(element.findtext(f"bndbox/{k}") or "nan"))
                   for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise DataError(f"{where}: bndbox needs numeric xmin, ymin, xmax, ymax") from None
        if not text or box[2] <= box[0] or box[3] <= box[1]:
            raise DataError(f"{where}: expected a name and a box with xmin < xmax, ymin < ymax; "
                            f"found name {text!r}, box {box}")
        boxes.append(box)
        texts.append(text)
    if not boxes:
        raise DataError(f"{xml_path}: has no object boxes")
    return [_voc_sample(coverage, box, text, boxes, f"{xml_path}: object {i + 1}")
            for i, (box, text) in enumerate(zip(boxes, texts))]


def _voc_sample(coverage: np.ndarray, box: list[int], text: str, boxes: list[list[int]],
                where: str) -> GlyphSample:
    x1, y1, x2, y2 = box
    cropped = crop_to_ink(coverage[max(y1, 0):y2, max(x1, 0):x2])
    if cropped is None:
        raise DataError(f"{where} ({text!r}): the box {box} holds no ink")
    ink, (_, top, _, bottom) = cropped
    top, bottom = top + max(y1, 0), bottom + max(y1, 0)
    neighbours = [b[3] for b in boxes if min(b[3], y2) - max(b[1], y1) > 0.3 * (y2 - y1)]
    baseline = float(np.median(neighbours)) if neighbours else float(bottom)
    descent = float(np.clip((bottom - baseline) / max(bottom - top, 1), *DESCENT_RANGE))
    return GlyphSample(text, ink, descent, where)


def charset_glyph_texts(charset: str, ligatures: Iterable[str] = ()) -> list[str]:
    """The glyph texts of a charset: each non-space character once, then each ligature."""
    texts = list(dict.fromkeys(c for c in charset if not c.isspace()))
    return texts + [lig for lig in dict.fromkeys(ligatures) if lig and lig not in texts]


def load_font(font_path: str | os.PathLike[str], size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(os.fspath(font_path), size)
    except OSError as error:
        raise DataError(f"{font_path}: cannot load the font: {error}") from None


def render_font_samples(font_path: str | os.PathLike[str], texts: Sequence[str],
                        size: int = 64) -> list[GlyphSample]:
    """One sample per glyph text drawn with a font at ``size`` pixels per em (a ligature's
    text is shaped as one run: fonts that have the ligature draw it)."""
    font = load_font(font_path, size)
    samples = []
    for text in texts:
        ink, descent = render_run(font, text)
        if ink is None:
            raise DataError(f"{font_path}: the font draws nothing for {text!r}")
        samples.append(GlyphSample(text, ink, descent, f"{font_path}: {text!r}"))
    return samples


def render_run(font: ImageFont.FreeTypeFont, text: str) -> tuple[np.ndarray | None, float]:
    """``text`` drawn on its own: (ink ``[H, W]`` cropped, descent fraction), or (None, 0)."""
    size = int(font.size)
    width = math.ceil(font.getlength(text)) + 2 * size
    canvas = Image.new("L", (width, 3 * size), 0)
    baseline = 2 * size
    ImageDraw.Draw(canvas).text((size, baseline), text, font=font, fill=255, anchor="ls")
    cropped = crop_to_ink(np.asarray(canvas, np.float32) / 255.0)
    if cropped is None:
        return None, 0.0
    ink, (_, top, _, bottom) = cropped
    return ink, float(np.clip((bottom - baseline) / max(bottom - top, 1), *DESCENT_RANGE))
