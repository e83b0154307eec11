"""evaluate_coco_files / evaluate_coco_json equal pycocotools' COCOeval bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_coco_data import make_dataset, pycocotools_eval, write_dataset

from objdet.errors import DataError
from objdet.evaluation.coco import evaluate_coco_json
from objdet.evaluation.coco_bulk import evaluate_coco_files

# pycocotools' mask decoding warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _assert_identical(reference, result) -> None:
    np.testing.assert_array_equal(result.accumulated.precision, reference.eval["precision"])
    np.testing.assert_array_equal(result.accumulated.recall, reference.eval["recall"])
    assert result.stats == [float(value) for value in reference.stats]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbox_matches_pycocotools(tmp_path: Path, seed: int) -> None:
    ground_truth, results = make_dataset(seed, num_images=80)
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    result, _ = evaluate_coco_files(gt_path, dt_path, "bbox")
    _assert_identical(pycocotools_eval(gt_path, dt_path, "bbox"), result)
    assert max(result.stats) > 0.1  # the data is not trivially empty


@pytest.mark.parametrize("seed", [3, 4])
def test_segm_matches_pycocotools(tmp_path: Path, seed: int) -> None:
    ground_truth, results = make_dataset(seed, num_images=40)
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    result, _ = evaluate_coco_files(gt_path, dt_path, "segm")
    _assert_identical(pycocotools_eval(gt_path, dt_path, "segm"), result)


def test_segm_areas_from_masks_when_detections_have_no_box(tmp_path: Path) -> None:
    ground_truth, results = make_dataset(5, num_images=30)
    for result in results:
        del result["bbox"]  # pycocotools then takes the detection area from the mask
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    result, _ = evaluate_coco_files(gt_path, dt_path, "segm")
    _assert_identical(pycocotools_eval(gt_path, dt_path, "segm"), result)


@pytest.mark.parametrize("with_boxes", [True, False])
def test_keypoints_match_pycocotools(tmp_path: Path, with_boxes: bool) -> None:
    ground_truth, results = make_dataset(6, num_images=50, keypoints=True)
    for result in results:
        result.pop("segmentation")
        if not with_boxes:  # areas from the keypoints' extent instead of the box
            result.pop("bbox")
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    result, _ = evaluate_coco_files(gt_path, dt_path, "keypoints")
    _assert_identical(pycocotools_eval(gt_path, dt_path, "keypoints"), result)
    assert len(result.stats) == 10


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_detections_of_unknown_categories_are_dropped_like_pycocotools(
    tmp_path: Path, iou_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Category ids the ground truth does not list (5: a gap, 90: above the largest), as a
    model with more classes predicts them: pycocotools ignores them; so does objdet, with
    one warning saying how many."""
    ground_truth, results = make_dataset(12, num_images=40)
    rng = np.random.default_rng(12)
    relabelled = rng.random(len(results)) < 0.3
    for result, unknown in zip(results, relabelled, strict=True):
        if unknown:
            result["category_id"] = int(rng.choice([5, 90]))
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    result, _ = evaluate_coco_files(gt_path, dt_path, iou_type)
    _assert_identical(pycocotools_eval(gt_path, dt_path, iou_type), result)
    assert max(result.stats) > 0.02 and relabelled.sum() > 100
    [message] = [r.getMessage() for r in caplog.records if "not among the" in r.getMessage()]
    assert f"dt.json: dropped {relabelled.sum()} detections of category ids [5, 90], " in message
    assert "not among the 5 categories of " in message


def test_ground_truth_id_zero_counts_as_unmatched_like_pycocotools(tmp_path: Path) -> None:
    ground_truth, results = make_dataset(7, num_images=30)
    annotations = ground_truth["annotations"]
    for annotation in annotations:
        annotation["id"] -= 1  # ids 0..n-1: a detection matched to id 0 is a FP there
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    result, _ = evaluate_coco_files(gt_path, dt_path, "bbox")
    _assert_identical(pycocotools_eval(gt_path, dt_path, "bbox"), result)


def test_od_api_metric_names_and_per_category(tmp_path: Path) -> None:
    ground_truth, results = make_dataset(8, num_images=30)
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    metrics = evaluate_coco_json(gt_path, dt_path, "bbox", include_metrics_per_category=True,
                                 all_metrics_per_category=True)
    reference = pycocotools_eval(gt_path, dt_path, "bbox")
    assert metrics["DetectionBoxes_Precision/mAP"] == reference.stats[0]
    assert metrics["DetectionBoxes_Recall/AR@100 (large)"] == reference.stats[11]
    precision = reference.eval["precision"][:, :, 0, 0, 2]  # category 1, area all, 100 dets
    assert metrics["DetectionBoxes_PerformanceByCategory/mAP/class1"] == np.mean(
        precision[precision > -1])
    # Category 9 has no ground truth: -1, as the OD API reports.
    assert metrics["DetectionBoxes_Precision/mAP ByCategory/class9"] == -1.0
    assert len([k for k in metrics if "ByCategory/class3" in k]) == 12


def test_tied_scores_keep_file_order(tmp_path: Path) -> None:
    """Two equal-score detections on one object: the first in the file is the TP."""
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50],
                         "area": 2500, "iscrowd": 0}],
    }
    good = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.5}
    poor = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 36], "score": 0.5}
    for results in ([good, poor], [poor, good]):
        gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
        result, _ = evaluate_coco_files(gt_path, dt_path, "bbox")
        _assert_identical(pycocotools_eval(gt_path, dt_path, "bbox"), result)
    assert result.stats[2] < 1.0  # poor first: the TP at .75 IoU comes second


def test_empty_detections_and_empty_ground_truth(tmp_path: Path) -> None:
    ground_truth, _ = make_dataset(9, num_images=10)
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, [])
    metrics = evaluate_coco_json(gt_path, dt_path)
    assert metrics["DetectionBoxes_Precision/mAP"] == 0.0  # ground truth, nothing found
    ground_truth["annotations"] = []
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, [])
    assert set(evaluate_coco_json(gt_path, dt_path).values()) == {-1.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r[0].update(image_id=123456), "image_id 123456 is not in the ground truth"),
        (lambda r: r[0].update(category_id=None), "category_id None"),
        (lambda r: r[0].update(score=float("nan")), "score must be finite"),
        (lambda r: r[0].update(bbox=[1, 2, -3, 4]), "w, h >= 0"),
        (lambda r: r[0].pop("score"), "'score'"),
    ],
)
def test_bad_detections_raise_clear_errors(tmp_path: Path, change, message: str) -> None:
    ground_truth, results = make_dataset(10, num_images=5)
    results = results or [{"image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1}]
    change(results)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(ground_truth))
    dt_path = tmp_path / "dt.json"
    dt_path.write_text(json.dumps(results, allow_nan=True))
    with pytest.raises(DataError, match=message.replace("(", r"\(")) as raised:
        evaluate_coco_files(gt_path, dt_path, "bbox")
    assert "dt.json" in str(raised.value)
