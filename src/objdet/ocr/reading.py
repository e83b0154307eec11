"""Reading pages: a page image -> glyph detections (tiled, at the training scale) -> lines.

The detector sees fixed-size canvases (the config's ``fixed_shape_resizer``) at the scale it
was trained at. A page of any size and resolution is rescaled so that its text lines are as
high as the training pages' (``objdet.ocr.page_scale``), then so that the glyphs the detector
finds on a few tiles are as large as the middle of the training sizes (``refine_scale``; or
by a given ``scale``), cut into
overlapping canvas-sized tiles, and each tile's glyphs are kept where their centre lies in
the tile's core (the cores split each overlap in its middle; the overlap, a quarter tile,
is wide enough that a glyph whose centre is in a core is whole in that tile).

    reader = PageReader.from_model_dir("runs/ocr")       # latest checkpoint
    reader = PageReader.from_export("runs/ocr/export")   # an export with ocr.json beside it
    page = reader.read(gray)                             # PageResult: blocks, lines, text
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from objdet.errors import DataError, ObjdetError
from objdet.ocr.lines import Block, Glyph, Line, assemble_blocks, blocks_text
from objdet.ocr.page_scale import glyph_size, median_line_height

OCR_FILE = "ocr.json"  # in a model_dir / export: glyph texts and the training line height
DetectFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray, np.ndarray]]
# ``uint8 [3, T, T]`` tile -> (boxes [D, 4] x1y1x2y2 pixels, scores [D], label ids [D])
PROBE_TILES = 4  # the inkiest tiles the glyph size is measured on
SCALE_ROUNDS = 3  # measure, rescale, measure again: a page read far off scale is misread
SCALE_TOLERANCE = 0.05  # a correction smaller than this ends the rounds


@dataclass
class PageResult:
    blocks: list[Block]  # text columns (objdet.ocr.layout), in reading order
    scale: float  # the page was read at this scale (tile pixels per page pixel)
    size: tuple[int, int]  # page (height, width)

    @property
    def lines(self) -> list[Line]:
        """All lines in reading order: block after block."""
        return [line for block in self.blocks for line in block.lines]

    @property
    def text(self) -> str:
        """Blocks separated by a blank line, their lines by newlines."""
        return blocks_text(self.blocks)


def read_ocr_info(directory: Path) -> dict[str, object]:
    path = directory / OCR_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ObjdetError(f"{directory}: has no {OCR_FILE} (train it with `objdet ocr train`)") from None
    except json.JSONDecodeError as error:
        raise ObjdetError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(info, dict) or "glyph_texts" not in info or "line_height" not in info:
        raise ObjdetError(f"{path}: expected glyph_texts and line_height")
    return info


class PageReader:
    """Pages -> lines of text with one character detector (module docstring)."""

    def __init__(self, *, detect: DetectFn, glyph_texts: list[str], tile_size: int,
                 line_height: float, min_score: float = 0.3, overlap: float = 0.25,
                 glyph_heights: list[float] | None = None, glyph_height: float | None = None) -> None:
        """``glyph_texts[i]`` is the text of label id i + 1; ``line_height`` the median line
        height of the training pages (pixels); ``overlap`` the tile overlap (x tile_size).
        ``glyph_heights[i]``: glyph i + 1's height relative to the glyph set's median, and
        ``glyph_height``: the middle of the training pages' glyph sizes (pixels), both from
        ``synth.json``; without them the scale is the line height's alone."""
        self.detect = detect
        self.glyph_texts = glyph_texts
        self.tile_size = tile_size
        self.line_height = line_height
        self.min_score = min_score
        self.overlap = round(overlap * tile_size)
        if glyph_heights is not None and len(glyph_heights) != len(glyph_texts):
            raise ObjdetError(f"{OCR_FILE}: glyph_heights has {len(glyph_heights)} values for "
                              f"{len(glyph_texts)} glyph_texts")
        self.glyph_heights = None if glyph_heights is None else np.asarray(glyph_heights, np.float64)
        self.glyph_height = glyph_height
        self._label_index = {text: index for index, text in enumerate(glyph_texts)}

    @classmethod
    def from_predictor(cls, predictor: object, info: dict[str, object], min_score: float = 0.3) -> PageReader:
        from objdet.inference.predictor import Predictor

        assert isinstance(predictor, Predictor)
        canvas = predictor.canvas_size or _config_canvas(predictor)

        def detect(tile: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            found = predictor.predict_pixels(tile).above(min_score)
            return np.asarray(found.boxes), np.asarray(found.scores), np.asarray(found.labels)

        heights, size = info.get("glyph_heights"), info.get("glyph_height")
        return cls(detect=detect, glyph_texts=list(info["glyph_texts"]),  # type: ignore[call-overload]
                   tile_size=int(canvas[0]), line_height=float(info["line_height"]),  # type: ignore[arg-type]
                   min_score=min_score,
                   glyph_heights=[float(h) for h in heights] if isinstance(heights, list) else None,
                   glyph_height=float(size) if isinstance(size, (int, float)) else None)

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike[str], min_score: float = 0.3) -> PageReader:
        """The latest checkpoint of an ``objdet ocr train`` model_dir."""
        from objdet.inference.predictor import Predictor

        model_dir = Path(model_dir)
        info = read_ocr_info(model_dir)
        predictor = Predictor.from_checkpoint(model_dir / "pipeline.config", model_dir)
        return cls.from_predictor(predictor, info, min_score)

    @classmethod
    def from_export(cls, export_dir: str | os.PathLike[str], min_score: float = 0.3) -> PageReader:
        """An export directory written by ``objdet ocr train`` (``ocr.json`` inside)."""
        from objdet.inference.predictor import Predictor, resolve_export_directory

        directory = resolve_export_directory(export_dir)
        return cls.from_predictor(Predictor.from_export(directory), read_ocr_info(directory), min_score)

    def page_scale(self, gray: np.ndarray) -> float:
        """Tile pixels per page pixel: training line height / this page's (1 when unknown)."""
        height = median_line_height(gray)
        return float(np.clip(self.line_height / height, 0.05, 8.0)) if height and self.line_height else 1.0

    def read(self, gray: np.ndarray, scale: float | None = None) -> PageResult:
        """``[H, W]`` uint8 gray page -> its blocks of lines; ``scale``: as page_scale (None: measured)."""
        if gray.ndim != 2 or gray.size == 0:
            raise DataError(f"page: expected a [H, W] gray image, got shape {list(gray.shape)}")
        scale = scale or self.refine_scale(gray, self.page_scale(gray))
        glyphs = [Glyph(tuple(float(v) / scale for v in box), text, score)  # type: ignore[arg-type]
                  for box, text, score in self.detect_glyphs(_rescaled(gray, scale))]
        return PageResult(assemble_blocks(glyphs), scale, (int(gray.shape[0]), int(gray.shape[1])))

    def refine_scale(self, gray: np.ndarray, scale: float) -> float:
        """``scale`` (from the line height) corrected until the glyphs found on the page's
        inkiest tiles have the middle of the training sizes (``page_scale.glyph_size``): the
        line height of a page depends on its text (capitals, descenders), a glyph's height
        over its glyph's training height does not. ``scale`` as is without glyph_heights."""
        if self.glyph_heights is None or not self.glyph_height:
            return scale
        for _ in range(SCALE_ROUNDS):
            found = self.detect_glyphs(_rescaled(gray, scale), max_tiles=PROBE_TILES)
            if not found:
                break
            heights = np.asarray([box[3] - box[1] for box, _, _ in found])  # [D] tile pixels
            references = self.glyph_heights[[self._label_index[text] for _, text, _ in found]]  # [D]
            size = glyph_size(heights, references)
            if size is None:
                break
            corrected = float(np.clip(scale * self.glyph_height / size, 0.05, 8.0))
            done = abs(corrected / scale - 1.0) < SCALE_TOLERANCE
            scale = corrected
            if done:
                break
        return scale

    def detect_glyphs(self, gray: np.ndarray, max_tiles: int | None = None) -> list[tuple[np.ndarray, str, float]]:
        """Glyphs (box x1y1x2y2, text, score) of a page already at the training scale; with
        ``max_tiles``, of that many tiles only, those with the most ink."""
        tile, overlap = self.tile_size, self.overlap
        height, width = gray.shape
        paper = int(np.percentile(gray, 90))
        found: list[tuple[np.ndarray, str, float]] = []
        tiles = [(top, y_lo, y_hi, left, x_lo, x_hi)
                 for top, y_lo, y_hi in _tiles(height, tile, tile - overlap)
                 for left, x_lo, x_hi in _tiles(width, tile, tile - overlap)]
        if max_tiles is not None and len(tiles) > max_tiles:
            ink = [np.clip(paper - gray[top:top + tile, left:left + tile].astype(np.int32), 0, None).sum()
                   for top, _, _, left, _, _ in tiles]
            tiles = [tiles[i] for i in sorted(np.argsort(ink)[::-1][:max_tiles])]
        for top, y_lo, y_hi, left, x_lo, x_hi in tiles:
            canvas = np.full((tile, tile), paper, np.uint8)
            part = gray[top:top + tile, left:left + tile]
            canvas[:part.shape[0], :part.shape[1]] = part
            pixels = torch.from_numpy(canvas)[None].expand(3, -1, -1).contiguous()  # [3, T, T]
            boxes, scores, labels = self.detect(pixels)
            for box, score, label in zip(boxes, scores, labels):
                page_box = np.asarray(box, np.float64) + [left, top, left, top]
                cx, cy = (page_box[0] + page_box[2]) / 2, (page_box[1] + page_box[3]) / 2
                if x_lo <= cx < x_hi and y_lo <= cy < y_hi and 1 <= int(label) <= len(self.glyph_texts):
                    found.append((page_box, self.glyph_texts[int(label) - 1], float(score)))
        return found


def _tiles(length: int, tile: int, stride: int) -> list[tuple[int, float, float]]:
    """(start, core_lo, core_hi) of the tiles along one axis: the cores split each overlap
    in the middle, so they cover the axis once."""
    starts = [0] if length <= tile else [*range(0, length - tile, stride), length - tile]
    bounds = [-np.inf] + [(a + tile + b) / 2 for a, b in itertools.pairwise(starts)] + [np.inf]
    return [(start, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def _rescaled(gray: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 0.02:
        return gray
    height, width = gray.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.LANCZOS))


def _config_canvas(predictor: object) -> tuple[int, int]:
    """The fixed canvas of a model built from a config (checkpoints have no signature)."""
    resizer = predictor.model.image_resizer  # type: ignore[attr-defined]
    size = resizer.canvas_size([(1, 1)])
    if size[0] != size[1]:
        raise ObjdetError(f"the OCR reader needs a square fixed_shape_resizer; found {size}")
    return (int(size[0]), int(size[1]))
