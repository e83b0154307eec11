"""Page layout: lines of glyphs -> column blocks in reading order (column finding as classic
OCR does it, in the spirit of Tesseract's, much simplified).

``find_blocks(lines, unit, slope)`` takes the lines of ``objdet.ocr.lines.group_lines`` (in
their reading order) as glyph boxes and returns blocks of line pieces:

1. Frame: boxes are taken in the page frame rotated by the skew, so that the gutter between
   two columns of a skewed page is a vertical band there.
2. Fragments: a line is cut at every gap wider than ``MIN_GUTTER`` glyph heights, much wider
   than word spacing (under 1 glyph height even in loosely set text). A line that ran across
   a narrow gutter becomes two fragments; a cut that is not a gutter is healed in step 4.
3. Gutters: from each gap between two side-by-side fragments a vertical band of whitespace
   grows up and down, narrowing past fragments that end (or start) inside it, until a
   fragment crosses it (a heading, a footer) or it would be narrower than ``MIN_GUTTER``.
   It is a gutter when rows of text border it on both sides: at least ``MIN_SIDE_LINES``
   on each and ``MIN_TALL_SIDE_LINES`` on one, that many of those on its right starting at
   one x (a column's left edge; rows, not lines: a line split at a hole is one row; the row
   that stops the band is beyond it). A wide word gap in one line, a river of spaces across
   two lines, or the holes glyphs the detector missed leave in a few rows, is not; nor are
   indentation and ragged margins (they are no gaps).
4. Blocks (a recursive X-Y cut along gutters): the tallest gutter splits the fragments into
   those above it (a heading), its left side, its right side and those below it (a footer),
   read in that order; each part is cut again until no gutter is left, and is then one
   block. A block's fragments of one line are one line again, and so are fragments side by
   side (a glyph that line grouping gave to the line of the next column over a narrow
   gutter rejoins its own); its lines keep their order.

Right-to-left scripts are not handled (lines are read left to right throughout).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_GUTTER = 1.2  # x glyph height: the narrowest whitespace band between two columns
MIN_SIDE_LINES = 2  # lines that must border a gutter on each side ...
MIN_TALL_SIDE_LINES = 3  # ... and on at least one side
ALIGNED = 0.25  # x its height: a fragment starting this near a gutter's right edge is aligned
SIDE_BY_SIDE = 0.25  # vertical overlap (x the smaller height) of two fragments side by side
SAME_ROW = 0.5  # ... of two fragments of one block that are one line

LineSpan = tuple[int, int, int]  # (line index, first glyph, end glyph): a piece of a line


@dataclass(frozen=True)
class _Fragment:
    line: int
    start: int
    stop: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the deskewed frame

    @property
    def center_y(self) -> float:
        return 0.5 * (self.box[1] + self.box[3])

    @property
    def center_x(self) -> float:
        return 0.5 * (self.box[0] + self.box[2])


@dataclass(frozen=True)
class _Gutter:
    left: float  # the whitespace band, deskewed x
    right: float
    top: float  # fragments with their centre above this (deskewed y) are above it
    bottom: float  # ... below this, below it
    extent: float  # height of the text beside it (pixels): the tallest gutter cuts first


def find_blocks(lines: Sequence[np.ndarray], unit: float, slope: float) -> list[list[list[LineSpan]]]:
    """``lines[i]``: ``[G_i, 4]`` x1y1x2y2 boxes of line i's glyphs, left to right (lines in
    reading order); ``unit``: the median glyph height; ``slope``: the text's dy/dx. Returns
    the blocks in reading order, each its lines top to bottom, each line the pieces of
    ``lines`` it is made of, left to right (module docstring)."""
    fragments = _fragments(lines, unit, slope)
    return [_block_lines(part) for part in _cut(fragments, MIN_GUTTER * unit)]


def _block_lines(fragments: list[_Fragment]) -> list[list[LineSpan]]:
    """A block's fragments -> its lines (step 4): the gaps inside a block are no gutter."""
    rows: list[list[_Fragment]] = []
    for fragment in sorted(fragments, key=lambda f: (f.line, f.start)):
        row = next((row for row in rows if any(_same_row(fragment, other) for other in row)), None)
        if row is None:
            rows.append([fragment])
        else:
            row.append(fragment)
    return [[(f.line, f.start, f.stop) for f in sorted(row, key=lambda f: f.box[0])] for row in rows]


def _same_row(a: _Fragment, b: _Fragment) -> bool:
    if a.line == b.line:
        return True
    # side by side (no more horizontal overlap than touching glyphs have), or a lone glyph
    # that line grouping put on the line of the next column (a comma below its row's band)
    narrower = min(a.box[2] - a.box[0], b.box[2] - b.box[0])
    lone_glyph = min(a.stop - a.start, b.stop - b.start) == 1
    if min(a.box[2], b.box[2]) - max(a.box[0], b.box[0]) > 0.5 * narrower and not lone_glyph:
        return False
    overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    return overlap > SAME_ROW * min(a.box[3] - a.box[1], b.box[3] - b.box[1])


def _count_rows(fragments: list[_Fragment]) -> int:
    """The rows of text the fragments are on: centres within half a fragment height are one
    row. Not their lines: a line that line grouping split at a wide hole (glyphs the detector
    missed) is two lines on one row, and three such rows must not make a gutter."""
    if not fragments:
        return 0
    centers = sorted(f.center_y for f in fragments)
    height = float(np.median([f.box[3] - f.box[1] for f in fragments]))
    return 1 + sum(below - above > 0.5 * height for above, below in itertools.pairwise(centers))


def _deskewed(boxes: np.ndarray, slope: float) -> np.ndarray:
    """``[G, 4]`` boxes -> ``[G, 4]`` boxes of the same size around their centres rotated by
    the skew angle (the rotation that makes the text lines horizontal)."""
    angle = math.atan(slope)
    cos, sin = math.cos(angle), math.sin(angle)
    center_x, center_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2  # [G]
    half_w, half_h = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
    x, y = center_x * cos + center_y * sin, center_y * cos - center_x * sin
    return np.stack([x - half_w, y - half_h, x + half_w, y + half_h], 1)  # [G, 4]


def _fragments(lines: Sequence[np.ndarray], unit: float, slope: float) -> list[_Fragment]:
    """Each line cut at its gaps wider than MIN_GUTTER (step 2)."""
    fragments = []
    for index, line in enumerate(lines):
        boxes = _deskewed(np.asarray(line, np.float64).reshape(-1, 4), slope)  # [G, 4]
        if not len(boxes):
            continue
        reach = np.maximum.accumulate(boxes[:, 2])  # [G] right end of the glyphs so far
        cuts = np.flatnonzero(boxes[1:, 0] - reach[:-1] > MIN_GUTTER * unit) + 1
        for start, stop in zip([0, *cuts], [*cuts, len(boxes)]):
            piece = boxes[start:stop]
            fragments.append(_Fragment(index, int(start), int(stop), (
                float(piece[:, 0].min()), float(piece[:, 1].min()),
                float(piece[:, 2].max()), float(piece[:, 3].max()))))
    return fragments


def _cut(fragments: list[_Fragment], min_width: float) -> list[list[_Fragment]]:
    """Fragments -> blocks in reading order (step 4)."""
    gutter = _tallest_gutter(fragments, min_width)
    if gutter is None:
        return [fragments]
    middle = [f for f in fragments if gutter.top < f.center_y < gutter.bottom]
    middle_x = 0.5 * (gutter.left + gutter.right)
    parts = ([f for f in fragments if f.center_y <= gutter.top],
             [f for f in middle if f.center_x < middle_x],
             [f for f in middle if f.center_x >= middle_x],
             [f for f in fragments if f.center_y >= gutter.bottom])
    return [block for part in parts if part for block in _cut(part, min_width)]


def _tallest_gutter(fragments: list[_Fragment], min_width: float) -> _Gutter | None:
    """Of the gutters grown from the gaps between side-by-side fragments (step 3), the one
    with the tallest text beside it (the leftmost of equals)."""
    if len(fragments) < 2 * MIN_SIDE_LINES:
        return None
    boxes = np.asarray([f.box for f in fragments], np.float64)  # [F, 4]
    heights = boxes[:, 3] - boxes[:, 1]
    by_height = sorted(range(len(fragments)), key=lambda i: fragments[i].center_y)
    best: _Gutter | None = None
    for index, box in enumerate(boxes):
        overlap = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])  # [F]
        beside = (boxes[:, 0] >= box[2]) & (overlap > SIDE_BY_SIDE * np.minimum(heights, heights[index]))
        if not beside.any():
            continue
        right = int(np.flatnonzero(beside)[np.argmin(boxes[beside, 0])])  # the next one on the right
        if boxes[right, 0] - box[2] < min_width:
            continue
        center_y = 0.5 * (fragments[index].center_y + fragments[right].center_y)
        gutter = _grow(fragments, by_height, float(box[2]), float(boxes[right, 0]), center_y, min_width)
        if gutter is not None and (best is None or (gutter.extent, -gutter.left) > (best.extent, -best.left)):
            best = gutter
    return best


def _grow(fragments: list[_Fragment], by_height: list[int], left: float, right: float,
          center_y: float, min_width: float) -> _Gutter | None:
    """The band [left, right] grown up and down from ``center_y`` (step 3); None when it is
    no gutter. ``by_height``: the fragment indices by their centre's height."""
    upward = [i for i in reversed(by_height) if fragments[i].center_y < center_y]
    downward = [i for i in by_height if fragments[i].center_y >= center_y]
    bounds = []
    for order in (upward, downward):
        bound = math.inf if order is downward else -math.inf
        for index in order:
            x1, _, x2, _ = fragments[index].box
            if x2 <= left or x1 >= right:
                continue
            # a fragment that ends (starts) inside the band narrows it; one across stops it
            new_left, new_right = (x2, right) if x1 < left and x2 < right else (
                (left, x1) if x1 > left and x2 > right else (left, left))
            if new_right - new_left < min_width:
                # the whole row of the fragment that stops it is beyond the band: its pieces
                # beside the band are no side of a gutter
                bound = fragments[index].box[3] if order is upward else fragments[index].box[1]
                break
            left, right = new_left, new_right
        bounds.append(bound)
    top, bottom = bounds
    middle = [f for f in fragments if top < f.center_y < bottom]
    right_side = [f for f in middle if f.box[0] >= right]
    # a column's lines start at one x (a tab stop, as Tesseract calls it); lines that go on
    # after glyphs the detector missed start anywhere
    aligned = [f for f in right_side if f.box[0] - right < ALIGNED * (f.box[3] - f.box[1])]
    sides = sorted([_count_rows([f for f in middle if f.box[2] <= left]), _count_rows(right_side)])
    if sides[0] < MIN_SIDE_LINES or sides[1] < MIN_TALL_SIDE_LINES:
        return None
    if _count_rows(aligned) < MIN_TALL_SIDE_LINES:
        return None
    extent = max(f.box[3] for f in middle) - min(f.box[1] for f in middle)
    return _Gutter(left, right, top, bottom, extent)
