"""Metrics JSON/CSV, the per-category table and precision-recall PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from objdet.evaluation.reports import (
    per_category_table,
    read_metrics_csv,
    write_metrics_csv,
    write_metrics_json,
    write_precision_recall_pngs,
)

METRICS = {
    "PascalBoxes_Precision/mAP@0.5IOU": 0.75,
    "PascalBoxes_PerformanceByCategory/AP@0.5IOU/cat": 0.5,
    "PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog": 1.0,
    "PascalBoxes_PerformanceByCategory/AP@0.5IOU/bird": float("nan"),
    "PascalBoxes_PerformanceByCategory/CorLoc@0.5IOU/cat": 0.25,
}


def test_json_writes_nan_as_null(tmp_path: Path) -> None:
    path = write_metrics_json(tmp_path / "out" / "metrics.json", METRICS)
    loaded = json.loads(path.read_text())
    assert list(loaded) == list(METRICS)
    assert loaded["PascalBoxes_PerformanceByCategory/AP@0.5IOU/bird"] is None
    assert loaded["PascalBoxes_Precision/mAP@0.5IOU"] == 0.75


def test_csv_round_trips_in_the_od_api_format(tmp_path: Path) -> None:
    path = write_metrics_csv(tmp_path / "metrics.csv", METRICS)
    assert path.read_text().splitlines()[0] == "PascalBoxes_Precision/mAP@0.5IOU,0.75"
    loaded = read_metrics_csv(path)
    assert loaded["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == 1.0
    assert math.isnan(loaded["PascalBoxes_PerformanceByCategory/AP@0.5IOU/bird"])


def test_per_category_table_has_one_row_per_category() -> None:
    table = per_category_table(METRICS).splitlines()
    assert table[0].split() == ["category", "PascalBoxes_AP@0.5IOU", "PascalBoxes_CorLoc@0.5IOU"]
    assert table[2].split() == ["cat", "0.5000", "0.2500"]
    assert table[3].split() == ["dog", "1.0000", "-"]
    assert table[4].split() == ["bird", "-", "-"]
    assert per_category_table({"x": 1.0}) == "(no per-category metrics)\n"


def test_precision_recall_pngs_draw_the_curve(tmp_path: Path) -> None:
    curves = {
        "cat/black": (np.array([1.0, 0.5]), np.array([0.5, 1.0])),
        "dog": (np.zeros(0), np.zeros(0)),
    }
    paths = write_precision_recall_pngs(tmp_path, curves, {"cat/black": 0.75})
    assert [p.name for p in paths] == ["pr_cat_black.png", "pr_dog.png"]
    with Image.open(paths[0]) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (320, 400, 3)
    curve_color = np.all(pixels == (31, 119, 180), axis=-1)
    assert curve_color.sum() > 100  # the curve was drawn
    with Image.open(paths[1]) as image:
        assert not np.all(np.asarray(image.convert("RGB")) == (31, 119, 180), axis=-1).any()
