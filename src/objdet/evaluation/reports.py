"""Evaluation reports: metrics as JSON/CSV, a per-category table, precision-recall PNGs.

Every file is written atomically. NaN (AP of a class without ground truth) is ``null`` in
JSON (strict JSON has no NaN) and ``nan`` in CSV (as the OD API's ``str(value)`` writes it).
PNGs are drawn with Pillow (no plotting library needed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from objdet.atomic import atomic_write

_PER_CATEGORY = re.compile(r"^(?P<prefix>.*?)PerformanceByCategory/(?P<metric>[^/]+)/(?P<name>.+)$")


def write_metrics_json(path: str | os.PathLike[str], metrics: Mapping[str, float]) -> Path:
    """``{"name": value, ...}`` in the evaluator's order; NaN becomes null."""
    values = {name: (None if _is_nan(value) else float(value)) for name, value in metrics.items()}
    with atomic_write(Path(path), "w") as handle:
        json.dump(values, handle, indent=2, allow_nan=False)
        handle.write("\n")
    return Path(path)


def write_metrics_csv(path: str | os.PathLike[str], metrics: Mapping[str, float]) -> Path:
    """One ``name,value`` row per metric, no header: the OD API's metrics.csv."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for name, value in metrics.items():
        writer.writerow([name, str(float(value))])
    with atomic_write(Path(path), "w") as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def read_metrics_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """The metrics a ``write_metrics_csv`` file (or the OD API's metrics.csv) holds."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row[0]: float(row[1]) for row in csv.reader(handle) if row}


def per_category_table(metrics: Mapping[str, float]) -> str:
    """A text table: one row per category, one column per per-category metric.

    Reads names of the form ``<prefix>PerformanceByCategory/<metric>/<category>``; categories
    keep the evaluator's order. Missing values and NaN print as '-'.
    """
    columns: list[str] = []
    rows: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        match = _PER_CATEGORY.match(name)
        if match is None:
            continue
        column = f"{match['prefix']}{match['metric']}"
        if column not in columns:
            columns.append(column)
        rows.setdefault(match["name"], {})[column] = float(value)
    if not rows:
        return "(no per-category metrics)\n"
    header = ["category", *columns]
    body = [
        [category, *(_format(values.get(column)) for column in columns)]
        for category, values in rows.items()
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _format(value: float | None) -> str:
    return "-" if value is None or _is_nan(value) else f"{value:.4f}"


def _is_nan(value: float) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


def draw_precision_recall(
    precision: np.ndarray, recall: np.ndarray, title: str, size: tuple[int, int] = (400, 320)
) -> Image.Image:
    """A precision (y) over recall (x) plot, both axes 0..1, as an RGB image."""
    width, height = size
    left, right, top, bottom = 48, 16, 28, 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_pixel(r: float, p: float) -> tuple[float, float]:
        return left + r * plot_w, top + (1.0 - p) * plot_h

    for tick in np.linspace(0.0, 1.0, 6):
        x, y = to_pixel(tick, tick)
        draw.line([(x, top), (x, top + plot_h)], fill=(225, 225, 225))
        draw.line([(left, y), (left + plot_w, y)], fill=(225, 225, 225))
        draw.text((x - 8, top + plot_h + 4), f"{tick:.1f}", fill="black")
        draw.text((4, y - 6), f"{tick:.1f}", fill="black")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    draw.text((left, 6), title, fill="black")
    draw.text((left + plot_w // 2 - 16, height - 14), "recall", fill="black")
    if recall.size:
        # The curve starts at recall 0 with the first detection's precision.
        points = [to_pixel(0.0, float(precision[0]))]
        points += [to_pixel(r, p) for r, p in zip(recall.tolist(), precision.tolist(), strict=True)]
        draw.line(points, fill=(31, 119, 180), width=2)
    return image


def write_precision_recall_pngs(
    directory: str | os.PathLike[str],
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    average_precisions: Mapping[str, float] | None = None,
) -> list[Path]:
    """One ``pr_<category>.png`` per curve (category name -> (precision, recall))."""
    directory = Path(directory)
    written = []
    for name, (precision, recall) in curves.items():
        title = name
        if average_precisions and name in average_precisions:
            title += f"  AP={average_precisions[name]:.3f}"
        image = draw_precision_recall(precision, recall, title)
        path = directory / f"pr_{_file_safe(name)}.png"
        with atomic_write(path, "wb") as handle:
            image.save(handle, format="PNG")
        written.append(path)
    return written


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "category"
