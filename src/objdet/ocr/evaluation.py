"""``evaluate_reader``: CER and WER of a reader over a folder of pages and their texts.

``images`` holds ``PAGE.png`` (or .jpg, .tif, ...), ``gt`` holds ``PAGE.txt`` for each: the
page's lines separated by newlines. A page without its text is an error naming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from objdet.errors import DataError
from objdet.ocr.metrics import ErrorCounts
from objdet.ocr.reading import PageReader
from objdet.ocr.samples import read_gray

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@dataclass
class EvalReport:
    cer: float
    wer: float
    pages: int
    seconds: float  # reading time, all pages
    per_page: dict[str, float] = field(default_factory=dict)  # CER per page name

    def as_json(self) -> dict[str, object]:
        return {"cer": self.cer, "wer": self.wer, "pages": self.pages,
                "pages_per_second": self.pages / self.seconds if self.seconds else None,
                "per_page_cer": self.per_page}


def page_images(images_dir: Path) -> list[Path]:
    if not images_dir.is_dir():
        raise DataError(f"--images {images_dir}: not a folder")
    pages = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not pages:
        raise DataError(f"--images {images_dir}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return pages


def read_truth(gt_dir: Path, page: Path) -> str:
    path = gt_dir / f"{page.stem}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"--gt {gt_dir}: has no {path.name} for the page {page}") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text: {error}") from None


def evaluate_reader(reader: PageReader, images_dir: Path, gt_dir: Path,
                    max_pages: int | None = None) -> EvalReport:
    """Read every page of ``images_dir`` and compare with ``gt_dir`` (module docstring)."""
    pages = page_images(images_dir)[:max_pages]
    truths = [read_truth(gt_dir, page) for page in pages]  # all checked before reading
    total, per_page, seconds = ErrorCounts(), {}, 0.0
    for page, truth in zip(pages, truths):
        gray = read_gray(page)
        start = time.perf_counter()
        text = reader.read(gray).text
        seconds += time.perf_counter() - start
        one = ErrorCounts()
        one.add(truth, text)
        per_page[page.stem] = one.cer
        total.add(truth, text)
    return EvalReport(total.cer, total.wer, len(pages), seconds, per_page)
