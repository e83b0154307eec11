"""Per-image matching: IoU/IoA, difficult, group-of, masks, the VOC argmax rule."""

from __future__ import annotations

import numpy as np
import pytest

from objdet.errors import DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.per_image import (
    box_ioa,
    box_iou,
    mask_ioa,
    mask_iou,
    match_class,
    match_image,
)
from objdet.structures.detections import Detections


def boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def test_box_iou_and_ioa() -> None:
    a = boxes([0, 0, 10, 10])
    b = boxes([5, 0, 15, 10], [20, 20, 30, 30])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0]])
    # IoA divides by the first (detection) box's area
    np.testing.assert_allclose(box_ioa(a, boxes([0, 0, 100, 100])), [[1.0]])


def test_mask_iou_and_ioa_match_pixel_counts() -> None:
    det = np.zeros((1, 4, 4), np.uint8)
    det[0, :2] = 1  # 8 pixels
    gt = np.zeros((2, 4, 4), np.uint8)
    gt[0, :, :2] = 1  # 8 pixels, 4 shared
    gt[1] = 1
    np.testing.assert_allclose(mask_iou(det, gt), [[4 / 12, 8 / 16]], rtol=1e-6)
    np.testing.assert_allclose(mask_ioa(det, gt), [[0.5, 1.0]], rtol=1e-6)


def test_mask_ioa_of_exactly_half_reaches_the_threshold_as_in_the_odapi() -> None:
    """np_mask_ops computes in float32, where 22 + 1e-7 == 22: 11 of 22 pixels is 0.5, so
    the detection is folded into its group-of box (float64 gives 0.49999999773)."""
    det = np.zeros((1, 4, 11), np.uint8)
    det[0, :2] = 1  # 22 pixels
    group = np.zeros((1, 4, 11), np.uint8)
    group[0, 0] = 1  # 11 of them
    assert mask_ioa(det, group)[0, 0] == 0.5
    _, tp = match_class(
        boxes([0, 0, 11, 2]), np.array([0.9]), boxes([0, 0, 11, 1]), np.zeros(1, bool),
        np.ones(1, bool), det_masks=det, gt_masks=group)
    assert tp.size == 0  # ignored (group-of weight 0), not a false positive


def test_mask_size_mismatch_is_an_error() -> None:
    with pytest.raises(DataError, match="masks"):
        mask_iou(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 5, 5), np.uint8))


def test_difficult_match_is_ignored_and_duplicates_are_false_positives() -> None:
    scores, tp = match_class(
        boxes([0, 0, 10, 10], [0, 0, 10, 9], [20, 0, 30, 10], [20, 0, 30, 9]),
        np.array([0.9, 0.8, 0.7, 0.6]),
        boxes([0, 0, 10, 10], [20, 0, 30, 10]),
        gt_difficult=np.array([False, True]),
        gt_group_of=np.array([False, False]),
    )
    # Both detections of the difficult box are ignored, not counted.
    np.testing.assert_allclose(scores, [0.9, 0.8])
    np.testing.assert_allclose(tp, [1.0, 0.0])


def test_detection_does_not_fall_back_to_its_second_best_box() -> None:
    gt = boxes([0, 0, 10, 10], [0, 0, 10, 12])
    dets = boxes([0, 0, 10, 10], [0, 0, 10, 10.5])  # the 2nd prefers gt 0 (0.95 > 0.875)
    _, tp = match_class(dets, np.array([0.9, 0.8]), gt, np.zeros(2, bool), np.zeros(2, bool))
    np.testing.assert_allclose(tp, [1.0, 0.0])


def test_iou_exactly_at_threshold_matches() -> None:
    _, tp = match_class(
        boxes([0, 0, 20, 10]),
        np.array([0.5]),
        boxes([0, 0, 20, 20]),
        np.zeros(1, bool),
        np.zeros(1, bool),
    )
    np.testing.assert_allclose(tp, [1.0])


@pytest.mark.parametrize(
    "weight, expected_scores, expected_tp",
    [
        (0.0, [0.5], [0.0]),  # V2: detections in the group are dropped, no entry
        (1.0, [0.5, 0.9], [0.0, 1.0]),  # challenge: one TP with the best score
    ],
)
def test_several_detections_in_one_group_of_box(
    weight: float, expected_scores: list[float], expected_tp: list[float]
) -> None:
    scores, tp = match_class(
        boxes([10, 10, 20, 20], [30, 30, 40, 40], [60, 60, 70, 70], [200, 200, 210, 210]),
        np.array([0.9, 0.8, 0.7, 0.5]),
        boxes([0, 0, 100, 100]),
        gt_difficult=np.zeros(1, bool),
        gt_group_of=np.ones(1, bool),
        group_of_weight=weight,
    )
    np.testing.assert_allclose(scores, expected_scores)
    np.testing.assert_allclose(tp, expected_tp)


def test_single_box_match_comes_before_group_of() -> None:
    scores, tp = match_class(
        boxes([0, 0, 10, 10], [0, 0, 10, 10]),
        np.array([0.9, 0.8]),
        boxes([0, 0, 10, 10], [0, 0, 50, 50]),
        gt_difficult=np.zeros(2, bool),
        gt_group_of=np.array([False, True]),
        group_of_weight=1.0,
    )
    # det 0 is a TP on the single box; det 1 falls into the group-of box (entry 0.8).
    np.testing.assert_allclose(scores, [0.9, 0.8])
    np.testing.assert_allclose(tp, [1.0, 1.0])


def test_mask_mode_objects_without_mask_are_ignore_regions() -> None:
    gt_masks = np.zeros((2, 10, 10), np.uint8)
    gt_masks[0, :, :5] = 1  # object 0 has a mask; object 1 has none
    det_masks = np.zeros((3, 10, 10), np.uint8)
    det_masks[0, :, :5] = 1
    det_masks[1, :, 5:] = 1
    det_masks[2, :2, :2] = 1
    scores, tp = match_class(
        boxes([0, 0, 5, 10], [5, 0, 10, 10], [0, 0, 2, 2]),
        np.array([0.9, 0.8, 0.7]),
        boxes([0, 0, 5, 10], [5, 0, 10, 10]),
        np.zeros(2, bool),
        np.zeros(2, bool),
        det_masks=det_masks,
        gt_masks=gt_masks,
    )
    np.testing.assert_allclose(scores, [0.9, 0.7])  # det 1 matched the mask-less box: dropped
    np.testing.assert_allclose(tp, [1.0, 0.0])


def test_match_image_counts_degenerate_detections_and_localizes() -> None:
    gt = GroundTruth(boxes=[[0, 0, 10, 10]], labels=[1])
    det = Detections(
        boxes=[[0, 0, 10, 10], [5, 5, 5, 9], [0, 0, 3, 3]],
        scores=[0.9, 0.95, 0.4],
        labels=[1, 1, 2],
    )
    match = match_image(det, gt)
    assert match.num_degenerate == 1
    np.testing.assert_array_equal(match.class_ids, [1, 2])
    np.testing.assert_allclose(match.tp_weights, [1.0, 0.0])
    np.testing.assert_array_equal(match.localized_class_ids, [1])
