"""Detections of a class id outside the categories: dropped as the OD API drops them, counted
and warned about once per evaluate(), for every metrics set; such ground truth stays an error.

A model with num_classes above the label map's largest id (the OD API's Open Images sample
configs), or a label map with gaps (COCO: 90 classes, 80 categories), predicts such ids.
Parity with the OD API on records holding them: test_offline.py (the ``unknown_ids`` case)
and test_odapi_mask_parity.py (``masks_unknown_ids.npz``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from objdet.errors import DataError
from objdet.evaluation.base import DetectionEvaluator, GroundTruth
from objdet.evaluation.registry import METRICS_SETS, build_evaluators
from objdet.structures.detections import Detections

# Ids 3 (a gap) and 7 (above the largest) are unknown.
CATEGORIES = [
    {"id": 1, "name": "cat", "keypoints": [{"id": 0, "name": "nose"}]},
    {"id": 2, "name": "dog"},
    {"id": 5, "name": "owl"},
]


def square_masks(boxes: list[list[float]]) -> np.ndarray:
    masks = np.zeros((len(boxes), 16, 16), np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, np.array(boxes, int), strict=True):
        mask[y1:y2, x1:x2] = 1
    return masks


def ground_truth(boxes: list[list[float]], labels: list[int]) -> GroundTruth:
    return GroundTruth(
        boxes=boxes, labels=labels, masks=square_masks(boxes), image_labels=[1],
        keypoints=np.array(boxes, float)[:, None, :2] + 1.0,
        keypoint_visibilities=np.ones((len(boxes), 1), bool),
    )  # fmt: skip


def detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        boxes=boxes, scores=scores, labels=labels, masks=square_masks(boxes),
        keypoints=np.array(boxes, float).reshape(-1, 4)[:, None, :2] + 1.0,
    )  # fmt: skip


# Two images: a found cat, unknown-class detections at every score level (on the cat, on
# the owl, elsewhere), a dog false positive and a missed owl.
IMAGES = [
    (
        ground_truth([[2, 2, 8, 8]], [1]),
        detections(
            [[2, 2, 8, 8], [2, 2, 8, 8], [9, 9, 14, 14], [2, 2, 8, 8], [9, 9, 15, 15]],
            [0.9, 0.95, 0.6, 0.5, 0.3],
            [1, 3, 7, 2, 1],
        ),
    ),
    (
        ground_truth([[4, 4, 12, 12], [0, 0, 3, 3]], [5, 1]),
        detections([[4, 4, 12, 12], [0, 0, 3, 3]], [0.99, 0.4], [7, 1]),
    ),
]
UNKNOWN_COUNTS = {3: 1, 7: 2}


def evaluate(evaluator: DetectionEvaluator, known_only: bool) -> dict[str, float]:
    evaluator.clear()
    for index, (truth, found) in enumerate(IMAGES):
        evaluator.add_ground_truth(index, truth)
        if known_only:
            found = found.select(np.isin(found.labels, [1, 2, 5]))
        evaluator.add_detections(index, found)
    return evaluator.evaluate()


def assert_same(found: dict[str, float], expected: dict[str, float]) -> None:
    assert sorted(found) == sorted(expected)
    for name, value in expected.items():
        assert (math.isnan(value) and math.isnan(found[name])) or found[name] == value, name


@pytest.mark.parametrize("name", sorted(METRICS_SETS))
def test_unknown_class_detections_are_dropped_counted_and_warned(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    [evaluator] = build_evaluators([name], CATEGORIES)
    expected = evaluate(evaluator, known_only=True)
    assert evaluator.unknown_class_detections.counts == {}  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="objdet.evaluation"):
        found = evaluate(evaluator, known_only=False)
    assert_same(found, expected)
    assert evaluator.unknown_class_detections.counts == UNKNOWN_COUNTS  # type: ignore[attr-defined]
    prefix = evaluator.headline_metric.key.split("_")[0]
    dropped = [r.getMessage() for r in caplog.records if "not among the" in r.getMessage()]
    warning = (
        f"{prefix}: dropped 3 detections of class ids [3, 7], which are not among the 3 "
        "categories (ids [1, 2, 5]); they are not evaluated, as in the OD API"
    )
    assert dropped == [warning]
    evaluator.clear()  # forgets the count, as it forgets the images
    assert evaluator.unknown_class_detections.counts == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(set(METRICS_SETS) - {"coco_keypoint_metrics"}))
def test_ground_truth_of_an_unknown_class_stays_an_error(name: str) -> None:
    [evaluator] = build_evaluators([name], CATEGORIES)
    with pytest.raises(DataError, match=r"image 'x': .*\b7\b.* not among"):
        evaluator.add_ground_truth("x", ground_truth([[2, 2, 8, 8], [1, 1, 4, 4]], [1, 7]))


def test_many_unknown_ids_are_summarized(caplog: pytest.LogCaptureFixture) -> None:
    [evaluator] = build_evaluators(["pascal_voc_detection_metrics"], CATEGORIES)
    evaluator.add_ground_truth(0, GroundTruth(boxes=[[0, 0, 4, 4]], labels=[1]))
    labels = list(range(10, 40))
    evaluator.add_detections(0, Detections(
        boxes=[[0, 0, 4, 4]] * len(labels), scores=np.linspace(0.1, 0.9, len(labels)),
        labels=labels))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="objdet.evaluation"):
        evaluator.evaluate()
    [message] = [r.getMessage() for r in caplog.records if "not among the" in r.getMessage()]
    assert "dropped 30 detections of class ids [10, 11, " in message
    assert "29, ... (10 more)]" in message
