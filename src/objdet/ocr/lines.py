"""Glyph detections -> lines -> reading order -> words -> text.

``assemble_blocks(glyphs)`` does it in six steps, each robust to what scans do to text:

1. Duplicates: a glyph found twice (two classes at one spot, or a part of a ligature inside
   the ligature's box) keeps its best-scoring reading.
2. Scale: ``h``, the median glyph height, is the unit of every threshold below.
3. Skew: the median angle between each glyph and its nearest right-hand neighbour; the page
   is sheared by it, so skewed lines become horizontal bands.
4. Lines: glyphs left to right join the line whose recent band (the last few glyphs) they
   overlap most, so an uneven baseline is followed; a glyph far from every line (> 4 h to
   the right, e.g. the next column) starts a new one. Lines are read top to bottom, then
   left to right.
5. Blocks: the lines are cut at the gutters between text columns and read block by block,
   each top to bottom (``objdet.ocr.layout``), so that columns are not interleaved; pieces
   of lines side by side in one block (a line split by a wide gap) are one line again.
6. Words: a gap wider than the page's space threshold is a space. The threshold splits the
   page's gaps into letter gaps and word gaps (Otsu) when they fall in two groups, else it
   is ``DEFAULT_SPACE`` glyph heights.

Boxes are (x1, y1, x2, y2) pixels of the page.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from objdet.ocr.layout import find_blocks

DEFAULT_SPACE = 0.4  # x median glyph height: the space threshold when gaps do not split
CONTAINED = 0.75  # a glyph this much inside a better one is a duplicate reading of it
SAME_SPOT_IOU = 0.5
MIN_LINE_OVERLAP = 0.35  # vertical overlap with a line's band, x the smaller height
MAX_LINE_GAP = 4.0  # x h: a glyph further right than this from a line's end starts a new line
BAND_GLYPHS = 6  # the band of a line follows its last few glyphs


@dataclass(frozen=True)
class Glyph:
    """One detected glyph: ``box`` (x1, y1, x2, y2) pixels, its ``text``, its ``score``."""

    box: tuple[float, float, float, float]
    text: str
    score: float = 1.0

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center_x(self) -> float:
        return 0.5 * (self.box[0] + self.box[2])


@dataclass
class Word:
    glyphs: list[Glyph]

    @property
    def text(self) -> str:
        return "".join(g.text for g in self.glyphs)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return _union(g.box for g in self.glyphs)

    @property
    def score(self) -> float:
        return min(g.score for g in self.glyphs)


@dataclass
class Line:
    words: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def glyphs(self) -> list[Glyph]:
        return [g for w in self.words for g in w.glyphs]

    @property
    def box(self) -> tuple[float, float, float, float]:
        return _union(g.box for g in self.glyphs)


@dataclass
class Block:
    """A block of text (one column, or a heading above columns): its lines, top to bottom."""

    lines: list[Line] = field(default_factory=list)

    @property
    def text(self) -> str:
        return lines_text(self.lines)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return _union(line.box for line in self.lines)


def _union(boxes: object) -> tuple[float, float, float, float]:
    array = np.asarray(list(boxes), np.float64).reshape(-1, 4)  # type: ignore[call-overload]
    return (float(array[:, 0].min()), float(array[:, 1].min()),
            float(array[:, 2].max()), float(array[:, 3].max()))


def drop_duplicates(glyphs: Sequence[Glyph]) -> list[Glyph]:
    """Best score first, drop a glyph that overlaps a kept one at the same spot (IoU) or lies
    mostly inside it (a part of a ligature)."""
    kept: list[Glyph] = []
    boxes = np.zeros((0, 4))
    for glyph in sorted(glyphs, key=lambda g: -g.score):
        box = np.asarray(glyph.box, np.float64)
        if len(kept):
            width = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
            height = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
            inter = width * height  # [K]
            area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            if ((inter / (area + areas - inter) > SAME_SPOT_IOU) | (inter / area > CONTAINED)).any():
                continue
        kept.append(glyph)
        boxes = np.vstack([boxes, box[None]])
    return kept


def estimate_skew(glyphs: Sequence[Glyph], unit: float) -> float:
    """The page's text slope (dy/dx): the median over glyphs of the direction to the nearest
    glyph on their right that sits on about the same line."""
    if len(glyphs) < 3:
        return 0.0
    boxes = np.asarray([g.box for g in glyphs], np.float64)
    centers = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    bottoms = boxes[:, 3]
    slopes = []
    for index in range(len(glyphs)):
        dx = centers[:, 0] - centers[index, 0]  # [N]
        dy = centers[:, 1] - centers[index, 1]
        candidates = np.flatnonzero((dx > 0.2 * unit) & (dx < 3 * unit) & (np.abs(dy) < 0.5 * unit))
        if candidates.size:
            nearest = candidates[np.argmin(dx[candidates])]
            # bottoms sit on the baseline for most glyphs: steadier than centres
            slopes.append((bottoms[nearest] - bottoms[index]) / dx[nearest])
    if not slopes:
        return 0.0
    slope = float(np.median(slopes))
    return float(np.clip(slope, -math.tan(math.radians(15)), math.tan(math.radians(15))))


def group_lines(glyphs: Sequence[Glyph], unit: float, slope: float) -> list[list[Glyph]]:
    """Glyphs -> lines (each left to right), in reading order (module docstring, step 4)."""
    lines: list[list[Glyph]] = []
    bands: list[list[tuple[float, float]]] = []  # per line: sheared (top, bottom) of its glyphs

    def sheared(glyph: Glyph) -> tuple[float, float]:
        shift = slope * glyph.center_x
        return glyph.box[1] - shift, glyph.box[3] - shift

    for glyph in sorted(glyphs, key=lambda g: g.box[0]):
        top, bottom = sheared(glyph)
        best, best_overlap = -1, 0.0
        for index, band in enumerate(bands):
            if glyph.box[0] - lines[index][-1].box[2] > MAX_LINE_GAP * unit:
                continue
            recent = band[-BAND_GLYPHS:]
            # statistics.median: numpy's costs ~50x more on a few values, and this runs per glyph x line
            band_top = statistics.median([t for t, _ in recent])
            band_bottom = statistics.median([b for _, b in recent])
            overlap = min(bottom, band_bottom) - max(top, band_top)
            smaller = max(min(bottom - top, band_bottom - band_top), 1e-6)
            if overlap / smaller > max(best_overlap, MIN_LINE_OVERLAP):
                best, best_overlap = index, overlap / smaller
        if best < 0:
            lines.append([glyph])
            bands.append([(top, bottom)])
        else:
            lines[best].append(glyph)
            bands[best].append((top, bottom))
    order = sorted(range(len(lines)), key=lambda i: (
        round(statistics.median([b for _, b in bands[i]]) / unit), lines[i][0].box[0]))
    return [lines[i] for i in order]


def space_threshold(gaps: Sequence[float], unit: float) -> float:
    """The gap (pixels) above which two glyphs are in different words (module docstring)."""
    values = np.sort(np.asarray(gaps, np.float64))
    default = DEFAULT_SPACE * unit
    if values.size < 4:
        return default
    best, best_score, low_mean, high_mean = default, 0.0, 0.0, 0.0
    for split in range(1, values.size):  # Otsu on the sorted gaps
        low, high = values[:split], values[split:]
        score = low.size * high.size * (high.mean() - low.mean()) ** 2
        if score > best_score:
            best_score, best = score, 0.5 * (low[-1] + high[0])
            low_mean, high_mean = low.mean(), high.mean()
    if not 0.2 * unit <= best <= 0.9 * unit or high_mean - low_mean < 0.25 * unit:
        return default
    return float(best)


def assemble_blocks(glyphs: Sequence[Glyph], space: float | None = None) -> list[Block]:
    """Glyph detections of one page -> its blocks of lines of words, in reading order.
    ``space``: the space threshold in glyph heights (None: from the page's gaps)."""
    glyphs = drop_duplicates(glyphs)
    if not glyphs:
        return []
    unit = float(np.median([g.height for g in glyphs]))
    slope = estimate_skew(glyphs, unit)
    grouped = group_lines(glyphs, unit, slope)
    layout = find_blocks([np.asarray([g.box for g in line], np.float64) for line in grouped], unit, slope)
    blocks = [[_joined(grouped, spans) for spans in block] for block in layout]
    gaps = [b.box[0] - a.box[2] for block in blocks for line in block for a, b in itertools.pairwise(line)]
    threshold = space * unit if space is not None else space_threshold(gaps, unit)
    return [Block([_words(line, threshold) for line in block]) for block in blocks]


def _joined(grouped: Sequence[Sequence[Glyph]], spans: Sequence[tuple[int, int, int]]) -> list[Glyph]:
    """The glyphs, left to right, of a line made of the pieces ``spans`` (line index, first,
    end) of the grouped lines (``objdet.ocr.layout.find_blocks``)."""
    glyphs = [g for line, start, stop in spans for g in grouped[line][start:stop]]
    return glyphs if len(spans) == 1 else sorted(glyphs, key=lambda g: g.center_x)


def _words(members: Sequence[Glyph], threshold: float) -> Line:
    """A line's glyphs (left to right) -> its words: a gap above ``threshold`` is a space."""
    words = [Word([members[0]])]
    for previous, glyph in itertools.pairwise(members):
        if glyph.box[0] - previous.box[2] > threshold:
            words.append(Word([glyph]))
        else:
            words[-1].glyphs.append(glyph)
    return Line(words)


def assemble_lines(glyphs: Sequence[Glyph], space: float | None = None) -> list[Line]:
    """The lines of ``assemble_blocks``, block after block."""
    return [line for block in assemble_blocks(glyphs, space) for line in block.lines]


def lines_text(lines: Sequence[Line]) -> str:
    """The lines' text, joined by newlines."""
    return "\n".join(line.text for line in lines)


def blocks_text(blocks: Sequence[Block]) -> str:
    """The page's text: its blocks separated by a blank line."""
    return "\n\n".join(block.text for block in blocks)
