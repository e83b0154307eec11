"""Synthetic pages drawn from glyph samples: the training data of the character detector.

Each page holds lines of text (from a corpus with a quarter of its words random, or random
words of the glyph set) drawn with the samples: one glyph size per page (varied between
pages), letter and word spacing that varies per page and per glyph (down to touching glyphs),
a skewed and jittered baseline, slight rotation of each glyph, then paper texture, blotchy
ink, blur and noise (or none: a share of the pages is printed clean). Every glyph
gets the tight box of the ink it drew, so the boxes are exact whatever the augmentation.

``synthesize(glyphs, output_dir, options)`` writes (atomically, as one folder)::

    train.record, eval.record   tf.Examples, one box per glyph, labels from label_map.pbtxt
    label_map.pbtxt             one class per glyph text (id 1..N in glyph order)
    pages.jsonl                 {"split", "filename", "text"} per page (lines joined by \\n)
    eval/images/PAGE.png        the eval pages as images, and eval/gt/PAGE.txt their text
                                (what ``objdet ocr eval --images --gt`` reads)
    synth.json                  glyph texts, options, the median line height of the pages, and
                                each glyph's height relative to the set's median (the reader
                                measures the size of a page's text with them)

Pages are deterministic per (seed, page index).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from objdet.atomic import atomic_directory, require_writable_directory
from objdet.errors import DataError
from objdet.ocr.page_scale import median_line_height
from objdet.ocr.samples import INK_THRESHOLD, GlyphSample

SYNTH_FILE = "synth.json"
RANDOM_WORDS = 0.25  # of a corpus's words are replaced by random glyphs (see _corpus_tokens)
CLEAN_PAGES = 0.15  # of the pages are printed clean: white paper, black ink, no blur or noise


@dataclass
class SynthOptions:
    num_pages: int = 1000
    num_eval_pages: int = 20
    page_height: int = 160  # the detector's canvas (configs/char_center_net.config)
    page_width: int = 160
    glyph_height: tuple[float, float] = (13.0, 20.0)  # median glyph height per page, pixels
    seed: int = 0


@dataclass
class SynthPage:
    """One page. ``image`` ``[H, W]`` uint8 gray; ``boxes`` ``[N, 4]`` float32 (x1, y1, x2, y2)
    pixels (exclusive ends) with ``glyph_texts[i]`` the text of box i; ``text`` the page's
    lines joined by newlines; ``ink`` ``[H, W]`` float32 the clean ink coverage drawn."""

    image: np.ndarray
    boxes: np.ndarray
    glyph_texts: list[str]
    text: str
    ink: np.ndarray


@dataclass
class SynthSummary:
    output_dir: Path
    num_train_pages: int
    num_eval_pages: int
    num_glyph_boxes: int
    glyph_texts: list[str] = field(default_factory=list)
    line_height: float = 0.0


class GlyphSet:
    """Samples grouped by text, and a tokenizer of text into glyph texts (longest first, so a
    ligature "st" wins over "s" + "t" where the set has it)."""

    def __init__(self, samples: Sequence[GlyphSample]) -> None:
        if not samples:
            raise DataError("no glyph samples given")
        self.by_text: dict[str, list[GlyphSample]] = {}
        for sample in samples:
            self.by_text.setdefault(sample.text, []).append(sample)
        self.texts = list(self.by_text)
        self._longest_first = sorted(self.texts, key=len, reverse=True)
        self.median_height = float(np.median([s.height for s in samples]))

    def relative_heights(self) -> list[float]:
        """Per glyph text (in ``texts`` order): its samples' median height / the set's median:
        a glyph of a page drawn at ``glyph_height`` is about this x glyph_height high."""
        return [float(np.median([s.height for s in self.by_text[t]])) / self.median_height for t in self.texts]

    def tokenize(self, text: str) -> list[str]:
        """``text`` -> glyph texts and " " (one per run of spaces); characters that no glyph
        covers are dropped (they cannot be drawn)."""
        tokens: list[str] = []
        index = 0
        while index < len(text):
            if text[index].isspace():
                if tokens and tokens[-1] != " ":
                    tokens.append(" ")
                index += 1
                continue
            match = next((t for t in self._longest_first if text.startswith(t, index)), None)
            if match is not None:
                tokens.append(match)
            index += len(match) if match else 1
        return tokens


def _random_words(glyphs: GlyphSet, rng: np.random.Generator, count: int) -> list[str]:
    tokens: list[str] = []
    for _ in range(count):
        length = int(rng.integers(1, 9))
        tokens.extend(glyphs.texts[int(i)] for i in rng.integers(0, len(glyphs.texts), length))
        tokens.append(" ")
    return tokens


def _corpus_tokens(glyphs: GlyphSet, corpus: str, rng: np.random.Generator, count: int) -> list[str]:
    """About ``count`` glyph tokens from a random place in the corpus, a ``RANDOM_WORDS``
    share of its words replaced by random glyphs: a corpus has few of some glyphs (capitals,
    digits: none of "Q" or "8" in 50,000 glyphs of a licence text) and few of the contexts
    pages hold (a heading in capitals), and a detector trained on it alone misses them."""
    start = int(rng.integers(0, max(1, len(corpus) - 1)))
    tokens = glyphs.tokenize(corpus[start:start + 4 * count] + " " + corpus[:4 * count])
    if not any(t != " " for t in tokens[:count]):
        return _random_words(glyphs, rng, count // 5)
    mixed: list[str] = []
    word: list[str] = []
    for token in [*tokens[:count], " "]:
        if token != " ":
            word.append(token)
            continue
        if word:
            # a random word ([:-1]: without its trailing space), drawn only when chosen
            mixed.extend(_random_words(glyphs, rng, 1)[:-1] if rng.random() < RANDOM_WORDS else word)
            mixed.append(" ")
        word = []
    return mixed


def _glyph_image(sample: GlyphSample, scale: float, angle: float) -> np.ndarray:
    """The sample scaled by ``scale`` and rotated by ``angle`` degrees, cropped to its ink."""
    height = max(2, round(sample.height * scale))
    width = max(1, round(sample.width * scale))
    image = Image.fromarray(sample.ink.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    if abs(angle) > 0.05:
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    ink = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    if rows.size == 0:  # a hairline glyph thinned out by scaling: keep its strongest pixels
        ink = ink / max(float(ink.max()), 1e-3)
        rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
        cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def render_page(glyphs: GlyphSet, options: SynthOptions, page_index: int,
                corpus: str | None = None) -> SynthPage:
    """One synthetic page, deterministic per (options.seed, page_index)."""
    rng = np.random.default_rng([options.seed, page_index])
    height, width = options.page_height, options.page_width
    glyph_height = rng.uniform(*options.glyph_height)
    scale = glyph_height / glyphs.median_height
    letter_gap, word_gap = rng.uniform(-0.03, 0.16), rng.uniform(0.35, 0.7)  # x glyph_height
    pitch = glyph_height * rng.uniform(1.45, 2.2)
    slope = math.tan(math.radians(rng.uniform(-2.5, 2.5)))
    max_glyphs = int(width / glyph_height * height / pitch * 2) + 8
    tokens = iter(_corpus_tokens(glyphs, corpus, rng, max_glyphs) if corpus
                  else _random_words(glyphs, rng, max_glyphs // 3))
    ink = np.zeros((height, width), np.float32)
    boxes: list[tuple[float, float, float, float]] = []
    box_texts: list[str] = []
    lines: list[str] = []
    margin = 0.3 * glyph_height
    baseline0 = rng.uniform(1.0, 1.6) * glyph_height
    while baseline0 + abs(slope) * width + 0.5 * glyph_height < height and len(lines) < 64:
        x0 = rng.uniform(margin, 2 * glyph_height)
        line = _draw_line(glyphs, tokens, rng, ink, boxes, box_texts,
                          x0=x0, baseline=baseline0, slope=slope, scale=scale,
                          gaps=(letter_gap * glyph_height, word_gap * glyph_height), margin=margin)
        if line is None:
            break
        if line:
            lines.append(line)
        baseline0 += pitch * rng.uniform(0.95, 1.05)
    image = _print_page(ink, rng)
    return SynthPage(image=image, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                     glyph_texts=box_texts, text="\n".join(lines), ink=ink)


def _draw_line(glyphs: GlyphSet, tokens: Iterator[str], rng: np.random.Generator,
               ink: np.ndarray, boxes: list[tuple[float, float, float, float]],
               box_texts: list[str], *, x0: float, baseline: float, slope: float, scale: float,
               gaps: tuple[float, float], margin: float) -> str | None:
    """Draw glyphs along one line until it is full; the line's text ("" when nothing was
    drawn), or None when the tokens ran out."""
    height, width = ink.shape
    x, text = x0, ""
    glyph_height = scale * glyphs.median_height
    for token in tokens:
        if token == " ":
            if text and not text.endswith(" "):
                x += gaps[1] * rng.uniform(0.85, 1.15)
                text += " "
            continue
        options = glyphs.by_text[token]
        sample = options[int(rng.integers(0, len(options)))]
        glyph_scale = scale * rng.uniform(0.96, 1.04)
        glyph = _glyph_image(sample, glyph_scale, rng.uniform(-3.0, 3.0))
        glyph_h, glyph_w = glyph.shape
        y_base = baseline + slope * (x - x0) + rng.normal(0.0, 0.04 * glyph_height)
        # the bottom sits descent x its height below the baseline (above it for a raised
        # glyph: a hyphen, quotes); the unrotated height, as the sample measured it
        top = round(y_base + sample.descent * sample.height * glyph_scale - glyph_h)
        left = round(x)
        if left + glyph_w > width - margin:
            return text.rstrip()
        if top < 0 or top + glyph_h > height:
            continue
        region = ink[top:top + glyph_h, left:left + glyph_w]
        np.maximum(region, glyph, out=region)
        boxes.append((left, top, left + glyph_w, top + glyph_h))
        box_texts.append(token)
        text += token
        x += glyph_w + gaps[0] + rng.normal(0.0, 0.04 * glyph_height)
        x = max(x, left + 0.6 * glyph_w)  # glyphs may touch or kern, never stack
    return text.rstrip() or None


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random grid of ``cell``-pixel squares, bilinear."""
    grid = rng.random((shape[0] // cell + 2, shape[1] // cell + 2)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((grid.shape[1] * cell, grid.shape[0] * cell),
                                                    Image.Resampling.BILINEAR)
    return np.asarray(image, np.float32)[:shape[0], :shape[1]]


def _print_page(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage ``[H, W]`` -> a printed page ``[H, W]`` uint8: paper tone and texture,
    uneven ink, blur, noise."""
    shape = ink.shape
    if rng.random() < CLEAN_PAGES:  # as a digital page or a crisp scan is
        page = rng.uniform(0.92, 1.0) * (1.0 - rng.uniform(0.9, 1.0) * ink)
        return np.clip(page * 255, 0, 255).astype(np.uint8)
    paper = rng.uniform(0.75, 1.0) - rng.uniform(0.0, 0.15) * _smooth_noise(rng, shape, int(rng.integers(16, 64)))
    paper = paper - rng.uniform(0.0, 0.06) * rng.random(shape, dtype=np.float32)  # grain
    darkness = rng.uniform(0.7, 1.0) - rng.uniform(0.0, 0.35) * _smooth_noise(rng, shape, int(rng.integers(3, 9)))
    page = paper * (1.0 - np.clip(darkness, 0.0, 1.0) * ink)
    blurred = Image.fromarray((np.clip(page, 0, 1) * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0)))
    noisy = np.asarray(blurred, np.float32) + rng.normal(0.0, rng.uniform(0.0, 10.0), shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _png(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _examples(pages: Sequence[SynthPage], names: Sequence[str], label_ids: dict[str, int]) -> Iterator[bytes]:
    import torch

    from objdet.data.example import encode_sample
    from objdet.structures.sample import Sample

    for page, name in zip(pages, names):
        height, width = page.image.shape
        yield encode_sample(Sample(
            height=height, width=width, boxes=torch.from_numpy(page.boxes),
            labels=torch.tensor([label_ids[t] for t in page.glyph_texts], dtype=torch.int64).reshape(-1),
            encoded_image=_png(page.image), image_format="png", filename=name, source_id=name,
            label_texts=list(page.glyph_texts)))


def synthesize(samples: Sequence[GlyphSample], output_dir: str | os.PathLike[str],
               options: SynthOptions | None = None, corpus: str | None = None) -> SynthSummary:
    """Write training and eval pages drawn from ``samples`` to ``output_dir`` (module doc)."""
    from objdet.data.tfrecord import write_sharded
    from objdet.structures.label_map import LabelMap

    options = options or SynthOptions()
    if options.num_pages < 1 or options.num_eval_pages < 0:
        raise DataError(f"--num_pages: {options.num_pages}; expected at least 1 training page")
    glyphs = GlyphSet(samples)
    if corpus is not None and not any(t != " " for t in glyphs.tokenize(corpus)):
        raise DataError("--text: the corpus holds none of the glyphs of the samples")
    output_dir = Path(output_dir)
    require_writable_directory(output_dir, f"synthetic pages {output_dir}")
    label_ids = {text: index + 1 for index, text in enumerate(glyphs.texts)}
    total = options.num_pages + options.num_eval_pages
    pages = [render_page(glyphs, options, index, corpus) for index in range(total)]
    names = [f"page_{index:05d}" for index in range(total)]
    split = options.num_pages
    line_heights = [h for h in (median_line_height(p.image) for p in pages[:50]) if h]
    summary = SynthSummary(output_dir, split, total - split, sum(len(p.boxes) for p in pages),
                           glyphs.texts, float(np.median(line_heights)) if line_heights else 0.0)
    with atomic_directory(output_dir) as tmp:
        LabelMap.from_names(glyphs.texts).save(tmp / "label_map.pbtxt")
        write_sharded(_examples(pages[:split], names[:split], label_ids), tmp / "train.record", 1)
        write_sharded(_examples(pages[split:], names[split:], label_ids), tmp / "eval.record", 1)
        (tmp / "eval" / "images").mkdir(parents=True)
        (tmp / "eval" / "gt").mkdir()
        with open(tmp / "pages.jsonl", "w", encoding="utf-8") as handle:
            for index, (page, name) in enumerate(zip(pages, names)):
                in_eval = index >= split
                handle.write(json.dumps({"split": "eval" if in_eval else "train", "filename": name,
                                         "text": page.text}, ensure_ascii=False) + "\n")
                if in_eval:
                    Image.fromarray(page.image, mode="L").save(tmp / "eval" / "images" / f"{name}.png")
                    (tmp / "eval" / "gt" / f"{name}.txt").write_text(page.text + "\n", encoding="utf-8")
        (tmp / SYNTH_FILE).write_text(json.dumps({
            "glyph_texts": glyphs.texts, "line_height": summary.line_height,
            "glyph_heights": [round(h, 4) for h in glyphs.relative_heights()],
            "options": asdict(options)}, ensure_ascii=False, indent=1), encoding="utf-8")
    return summary
