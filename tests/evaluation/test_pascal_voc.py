"""PASCAL VOC and weighted VOC metrics on a hand-computed two-image case; bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from objdet.errors import DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.pascal_voc import (
    PascalDetectionEvaluator,
    PascalInstanceSegmentationEvaluator,
    WeightedPascalDetectionEvaluator,
)
from objdet.structures.detections import Detections

CATEGORIES = [
    {"id": 1, "name": "cat"},
    {"id": 2, "name": "dog"},
    {"id": 3, "name": "bird"},  # no ground truth, no detections
    {"id": 4, "name": "fish"},  # no ground truth, one detection
]


def feed(evaluator: object) -> None:
    """Image A: a difficult cat, a duplicate cat, a fish without ground truth.

    cat: 0.9 TP, 0.85 FP (image B), 0.7 FP (duplicate); the 0.8 detection of the
    difficult cat is ignored; 2 counted cats -> AP 0.5.
    dog: 0.95 TP (IoU exactly 0.5), 0.6 TP; 2 dogs -> AP 1.0.
    """
    evaluator.add_ground_truth(
        "A",
        GroundTruth(  # type: ignore[attr-defined]
            boxes=[[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]],
            labels=[1, 1, 2],
            difficult=[False, True, False],
        ),
    )
    evaluator.add_detections(
        "A",
        Detections(  # type: ignore[attr-defined]
            boxes=[
                [0, 0, 10, 10],
                [20, 0, 30, 10],
                [0, 0, 10, 9.5],
                [0, 20, 10, 30],
                [50, 50, 60, 60],
            ],
            scores=[0.9, 0.8, 0.7, 0.6, 0.5],
            labels=[1, 1, 1, 2, 4],
        ),
    )
    evaluator.add_ground_truth(
        "B",
        GroundTruth(  # type: ignore[attr-defined]
            boxes=[[0, 0, 10, 10], [0, 0, 20, 20]],
            labels=[1, 2],
        ),
    )
    evaluator.add_detections(
        "B",
        Detections(  # type: ignore[attr-defined]
            boxes=[[40, 40, 50, 50], [0, 0, 20, 10]],
            scores=[0.85, 0.95],
            labels=[1, 2],
        ),
    )


def test_pascal_voc_hand_computed() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES, evaluate_corlocs=True)
    feed(evaluator)
    metrics = evaluator.evaluate()
    assert metrics["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.75)
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/cat"] == pytest.approx(0.5)
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == pytest.approx(1.0)
    assert math.isnan(metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/bird"])
    assert math.isnan(metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/fish"])
    # CorLoc: cat localized in A (0.9 hit), not in B (0.85 missed); dog in both.
    assert metrics["PascalBoxes_PerformanceByCategory/CorLoc@0.5IOU/cat"] == pytest.approx(0.5)
    assert metrics["PascalBoxes_PerformanceByCategory/CorLoc@0.5IOU/dog"] == pytest.approx(1.0)
    assert math.isnan(metrics["PascalBoxes_PerformanceByCategory/CorLoc@0.5IOU/fish"])
    assert metrics["PascalBoxes_Precision/meanCorLoc@0.5IOU"] == pytest.approx(0.75)
    assert next(iter(metrics)) == "PascalBoxes_Precision/mAP@0.5IOU"


def test_weighted_pascal_pools_classes_with_ground_truth() -> None:
    evaluator = WeightedPascalDetectionEvaluator(CATEGORIES)
    feed(evaluator)
    metrics = evaluator.evaluate()
    # pooled: .95 T, .9 T, .85 F, .7 F, .6 T over 4 objects (the fish FP is not pooled):
    # recall .25 @ 1, .5 @ 1, .75 @ .6 -> 0.25 + 0.25 + 0.25 * 0.6
    assert metrics["WeightedPascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.65)
    assert metrics["WeightedPascalBoxes_PerformanceByCategory/AP@0.5IOU/cat"] == pytest.approx(0.5)


def test_no_ground_truth_at_all_gives_nan_map() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES)
    evaluator.add_ground_truth(1, GroundTruth(boxes=np.zeros((0, 4)), labels=[]))
    evaluator.add_detections(1, Detections(boxes=[[0, 0, 1, 1]], scores=[0.3], labels=[1]))
    assert math.isnan(evaluator.evaluate()["PascalBoxes_Precision/mAP@0.5IOU"])


def test_class_without_detections_has_zero_ap() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES)
    evaluator.add_ground_truth(1, GroundTruth(boxes=[[0, 0, 1, 1]], labels=[2]))
    evaluator.add_detections(1, Detections(boxes=np.zeros((0, 4)), scores=[], labels=[]))
    assert evaluator.evaluate()["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == 0.0


def test_clear_and_evaluate_again() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES)
    feed(evaluator)
    first = evaluator.evaluate()
    assert evaluator.evaluate() == pytest.approx(first, nan_ok=True)
    evaluator.clear()
    feed(evaluator)  # same image ids are accepted again after clear()
    assert evaluator.evaluate()["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.75)


def test_mask_evaluator_matches_masks_not_boxes() -> None:
    evaluator = PascalInstanceSegmentationEvaluator(CATEGORIES)
    gt_mask = np.zeros((1, 8, 8), np.uint8)
    gt_mask[0, :4] = 1
    evaluator.add_ground_truth("m", GroundTruth(boxes=[[0, 0, 8, 8]], labels=[1], masks=gt_mask))
    det_masks = np.zeros((2, 8, 8), np.uint8)
    det_masks[0, 4:] = 1  # same box, disjoint mask: FP
    det_masks[1, :4] = 1
    evaluator.add_detections(
        "m",
        Detections(
            boxes=[[0, 0, 8, 8], [0, 0, 8, 4]],
            scores=[0.9, 0.5],
            labels=[1, 1],
            masks=det_masks,
        ),
    )
    assert evaluator.evaluate()["PascalMasks_Precision/mAP@0.5IOU"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (
            lambda: Detections(boxes=[[0, 0, 1, 1]], scores=[float("nan")], labels=[1]),
            "score 0 is nan",
        ),
        (lambda: Detections(boxes=[[5, 0, 1, 1]], scores=[0.5], labels=[1]), "inverted"),
        (lambda: GroundTruth(boxes=[[0, 0, 1, 1]], labels=[1, 2]), "1 boxes but 2 labels"),
        (lambda: GroundTruth(boxes=[[0, 0, 1]], labels=[1]), r"\[N, 4\]"),
    ],
)
def test_malformed_inputs_are_data_errors(make_input: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make_input()  # type: ignore[operator]


def test_protocol_misuse_is_reported() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES)
    detections = Detections(boxes=[[0, 0, 1, 1]], scores=[0.5], labels=[1])
    with pytest.raises(DataError, match="before its ground truth"):
        evaluator.add_detections("x", detections)
    evaluator.add_ground_truth("x", GroundTruth(boxes=[[0, 0, 1, 1]], labels=[1]))
    with pytest.raises(DataError, match="already added"):
        evaluator.add_ground_truth("x", GroundTruth(boxes=[[0, 0, 1, 1]], labels=[1]))
    evaluator.add_detections("x", detections)
    with pytest.raises(DataError, match="already added"):
        evaluator.add_detections("x", detections)


def test_unknown_class_ids_are_named_in_ground_truth_and_dropped_from_detections() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES)
    with pytest.raises(DataError, match=r"ground truth class ids \[7, 9\]"):
        evaluator.add_ground_truth("x", GroundTruth(boxes=np.zeros((3, 4)), labels=[9, 1, 7]))
    evaluator.add_ground_truth("y", GroundTruth(boxes=[[0, 0, 1, 1]], labels=[1]))
    evaluator.add_detections("y", Detections(
        boxes=[[0, 0, 1, 1]] * 3, scores=[0.9, 0.8, 0.7], labels=[0, 1, 9]))
    assert evaluator.unknown_class_detections.counts == {0: 1, 9: 1}
    assert evaluator.evaluate()["PascalBoxes_Precision/mAP@0.5IOU"] == 1.0


def test_mask_evaluator_requires_masks() -> None:
    evaluator = PascalInstanceSegmentationEvaluator(CATEGORIES)
    with pytest.raises(DataError, match="evaluates masks"):
        evaluator.add_ground_truth("x", GroundTruth(boxes=[[0, 0, 1, 1]], labels=[1]))


def test_zero_area_detections_are_dropped_and_counted() -> None:
    evaluator = PascalDetectionEvaluator(CATEGORIES)
    evaluator.add_ground_truth("x", GroundTruth(boxes=[[0, 0, 10, 10]], labels=[1]))
    evaluator.add_detections(
        "x", Detections(boxes=[[3, 3, 3, 8], [0, 0, 10, 10]], scores=[0.9, 0.8], labels=[1, 1])
    )
    assert evaluator.evaluate()["PascalBoxes_Precision/mAP@0.5IOU"] == 1.0
    assert evaluator.num_degenerate_detections == 1


def test_categories_must_be_well_formed() -> None:
    with pytest.raises(DataError, match="appears twice"):
        PascalDetectionEvaluator([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
    with pytest.raises(DataError, match="at least one category"):
        PascalDetectionEvaluator([])
