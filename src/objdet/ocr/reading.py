"""Reading pages: a page image -> glyph detections (tiled, at the training scale) -> lines.

The detector sees fixed-size canvases (the config's ``fixed_shape_resizer``) at the scale it
was trained at. A page of any size and resolution is rescaled so that its text lines are as
high as the training pages' (``objdet.ocr.page_scale``; or by a given ``scale``), cut into
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
from objdet.ocr.page_scale import median_line_height

OCR_FILE = "ocr.json"  # in a model_dir / export: glyph texts and the training line height
DetectFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray, np.ndarray]]
# ``uint8 [3, T, T]`` tile -> (boxes [D, 4] x1y1x2y2 pixels, scores [D], label ids [D])


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
                 line_height: float, min_score: float = 0.3, overlap: float = 0.25) -> None:
        """``glyph_texts[i]`` is the text of label id i + 1; ``line_height`` the median line
        height of the training pages (pixels); ``overlap`` the tile overlap (x tile_size)."""
        self.detect = detect
        self.glyph_texts = glyph_texts
        self.tile_size = tile_size
        self.line_height = line_height
        self.min_score = min_score
        self.overlap = round(overlap * tile_size)

    @classmethod
    def from_predictor(cls, predictor: object, info: dict[str, object], min_score: float = 0.3) -> PageReader:
        from objdet.inference.predictor import Predictor

        assert isinstance(predictor, Predictor)
        canvas = predictor.canvas_size or _config_canvas(predictor)

        def detect(tile: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            found = predictor.predict_pixels(tile).above(min_score)
            return np.asarray(found.boxes), np.asarray(found.scores), np.asarray(found.labels)

        return cls(detect=detect, glyph_texts=list(info["glyph_texts"]),  # type: ignore[call-overload]
                   tile_size=int(canvas[0]), line_height=float(info["line_height"]),  # type: ignore[arg-type]
                   min_score=min_score)

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
        scale = scale or self.page_scale(gray)
        glyphs = [Glyph(tuple(float(v) / scale for v in box), text, score)  # type: ignore[arg-type]
                  for box, text, score in self.detect_glyphs(_rescaled(gray, scale))]
        return PageResult(assemble_blocks(glyphs), scale, (int(gray.shape[0]), int(gray.shape[1])))

    def detect_glyphs(self, gray: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        """Glyphs (box x1y1x2y2, text, score) of a page already at the training scale."""
        tile, overlap = self.tile_size, self.overlap
        height, width = gray.shape
        paper = int(np.percentile(gray, 90))
        found: list[tuple[np.ndarray, str, float]] = []
        for top, y_lo, y_hi in _tiles(height, tile, tile - overlap):
            for left, x_lo, x_hi in _tiles(width, tile, tile - overlap):
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
