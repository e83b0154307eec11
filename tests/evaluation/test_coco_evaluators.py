"""The incremental COCO evaluators equal pycocotools on the OD API's export of the same data."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_coco_data import make_dataset

from objdet.errors import DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.coco import (
    CocoDetectionEvaluator,
    CocoKeypointEvaluator,
    CocoMaskEvaluator,
)
from objdet.evaluation.coco_run import DETECTION_STAT_NAMES, KEYPOINT_STAT_NAMES
from objdet.structures.detections import Detections

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CATEGORIES = [{"id": c, "name": f"class{c}"} for c in (1, 3, 4, 7, 9)]


def _xyxy(box: list[float]) -> list[float]:
    return [box[0], box[1], box[0] + box[2], box[1] + box[3]]


def _coco_box(xyxy: list[float]) -> list[float]:
    """What the OD API exports: [x1, y1, x2 - x1, y2 - y1] in float64."""
    return [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]


def _reference_stats(ground_truth: dict, results: list, iou_type: str, sigmas=None) -> list:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), iou_type)
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(value) for value in evaluator.stats]


def _decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], str):
        return coco_mask.decode(segmentation)
    rle = coco_mask.frPyObjects(segmentation, height, width)
    return coco_mask.decode(coco_mask.merge(rle if isinstance(rle, list) else [rle]))


def _feed(evaluator, ground_truth: dict, results: list, masks: bool = False) -> tuple[dict, list]:
    """Add every image to the evaluator; return the OD-API-style JSON of the same data."""
    sizes = {image["id"]: (image["height"], image["width"]) for image in ground_truth["images"]}
    exported_gt, exported_dt = [], []
    for image in ground_truth["images"]:
        image_id = image["id"]
        annotations = [a for a in ground_truth["annotations"] if a["image_id"] == image_id]
        boxes = np.array([_xyxy(a["bbox"]) for a in annotations]).reshape(-1, 4)
        gt_masks = None
        if masks:
            height, width = sizes[image_id]
            gt_masks = np.zeros((len(annotations), height, width), dtype=np.uint8)
            for index, annotation in enumerate(annotations):
                gt_masks[index] = _decode_segmentation(annotation["segmentation"], height, width)
        evaluator.add_ground_truth(image_id, GroundTruth(
            boxes=boxes, labels=[a["category_id"] for a in annotations],
            is_crowd=[bool(a["iscrowd"]) for a in annotations],
            areas=[a["area"] for a in annotations], masks=gt_masks))
        for index, (annotation, xyxy) in enumerate(zip(annotations, boxes.tolist())):
            exported = dict(annotation, bbox=_coco_box(xyxy))
            if masks:
                exported["segmentation"] = coco_mask.encode(np.asfortranarray(gt_masks[index]))
            exported_gt.append(exported)
        detections = [r for r in results if r["image_id"] == image_id]
        det_boxes = np.array([_xyxy(r["bbox"]) for r in detections]).reshape(-1, 4)
        det_masks = None
        if masks:
            det_masks = np.stack([coco_mask.decode(r["segmentation"]) for r in detections]) \
                if detections else np.zeros((0, *sizes[image_id]), dtype=np.uint8)
        evaluator.add_detections(image_id, Detections(
            boxes=det_boxes, scores=[r["score"] for r in detections],
            labels=[r["category_id"] for r in detections], masks=det_masks))
        for index, (result, xyxy) in enumerate(zip(detections, det_boxes.tolist())):
            if masks:  # the OD API exports masks without a box: area from the mask
                exported_dt.append({"image_id": image_id, "category_id": result["category_id"],
                                    "score": result["score"], "segmentation":
                                    coco_mask.encode(np.asfortranarray(det_masks[index]))})
            else:
                exported_dt.append({"image_id": image_id, "category_id": result["category_id"],
                                    "score": result["score"], "bbox": _coco_box(xyxy)})
    exported = dict(ground_truth, annotations=exported_gt)
    return exported, exported_dt


@pytest.mark.parametrize("seed", [0, 1])
def test_detection_evaluator_matches_pycocotools(seed: int) -> None:
    ground_truth, results = make_dataset(seed, num_images=50)
    evaluator = CocoDetectionEvaluator(CATEGORIES, include_metrics_per_category=True)
    exported_gt, exported_dt = _feed(evaluator, ground_truth, results)
    metrics = evaluator.evaluate()
    reference = _reference_stats(exported_gt, exported_dt, "bbox")
    assert [metrics[f"DetectionBoxes_{name}"] for name in DETECTION_STAT_NAMES] == reference
    assert "DetectionBoxes_PerformanceByCategory/mAP/class7" in metrics
    assert metrics == evaluator.evaluate()  # evaluate() may be called again
    evaluator.clear()
    assert set(evaluator.evaluate().values()) == {-1.0}


def test_mask_evaluator_matches_pycocotools() -> None:
    ground_truth, results = make_dataset(2, num_images=25)
    evaluator = CocoMaskEvaluator(CATEGORIES)
    exported_gt, exported_dt = _feed(evaluator, ground_truth, results, masks=True)
    metrics = evaluator.evaluate()
    reference = _reference_stats(exported_gt, exported_dt, "segm")
    assert [metrics[f"DetectionMasks_{name}"] for name in DETECTION_STAT_NAMES] == reference


def test_keypoint_evaluator_matches_pycocotools() -> None:
    ground_truth, results = make_dataset(3, num_images=40, keypoints=True)
    sigmas = np.linspace(0.025, 0.107, 17)
    evaluator = CocoKeypointEvaluator(
        category_id=1, category_keypoints=[{"id": i, "name": f"kp{i}"} for i in range(17)],
        class_text="person", oks_sigmas={f"kp{i}": float(s) for i, s in enumerate(sigmas)})
    exported_gt, exported_dt = [], []
    for image in ground_truth["images"]:
        image_id = image["id"]
        annotations = [a for a in ground_truth["annotations"] if a["image_id"] == image_id]
        points = np.array([a["keypoints"] for a in annotations]).reshape(-1, 17, 3)
        boxes = np.array([_xyxy(a["bbox"]) for a in annotations]).reshape(-1, 4)
        evaluator.add_ground_truth(image_id, GroundTruth(
            boxes=boxes, labels=[a["category_id"] for a in annotations],
            is_crowd=[bool(a["iscrowd"]) for a in annotations],
            areas=[a["area"] for a in annotations],
            keypoints=points[:, :, :2], keypoint_visibilities=points[:, :, 2] > 0))
        for annotation, xyxy, kp in zip(annotations, boxes.tolist(), points):
            if annotation["category_id"] == 1:
                kp = kp.copy()
                kp[:, 2] = np.where(kp[:, 2] > 0, 2, 0)
                exported_gt.append(dict(annotation, bbox=_coco_box(xyxy),
                                        keypoints=kp.reshape(-1).tolist()))
        detections = [r for r in results if r["image_id"] == image_id]
        det_points = np.array([r["keypoints"] for r in detections]).reshape(-1, 17, 3)
        det_boxes = np.array([_xyxy(r["bbox"]) for r in detections]).reshape(-1, 4)
        evaluator.add_detections(image_id, Detections(
            boxes=det_boxes, scores=[r["score"] for r in detections],
            labels=[r["category_id"] for r in detections], keypoints=det_points[:, :, :2]))
        exported_dt += [{"image_id": image_id, "category_id": 1, "score": r["score"],
                         "bbox": _coco_box(xyxy), "keypoints": r["keypoints"]}
                        for r, xyxy in zip(detections, det_boxes.tolist())
                        if r["category_id"] == 1]
    metrics = evaluator.evaluate()
    reference_gt = dict(ground_truth, annotations=exported_gt,
                        categories=[{"id": 1, "name": "person"}])
    reference = _reference_stats(reference_gt, exported_dt, "keypoints", sigmas)
    names = [f"Keypoints_{name} ByCategory/person" for name in KEYPOINT_STAT_NAMES]
    assert [metrics[name] for name in names] == reference
    assert reference[0] > 0


def test_evaluator_rejects_bad_order_and_labels() -> None:
    evaluator = CocoDetectionEvaluator(CATEGORIES)
    one_box = GroundTruth(boxes=[[0, 0, 10, 10]], labels=[1])
    with pytest.raises(DataError, match="before its ground truth"):
        evaluator.add_detections("a", Detections(boxes=[[0, 0, 1, 1]], scores=[1],
                                                      labels=[1]))
    evaluator.add_ground_truth("a", one_box)
    with pytest.raises(DataError, match="already added"):
        evaluator.add_ground_truth("a", one_box)
    with pytest.raises(DataError, match="label 2 is not among"):
        evaluator.add_ground_truth("b", GroundTruth(boxes=[[0, 0, 10, 10]], labels=[2]))
    evaluator.add_ground_truth("b", one_box)  # the failed add left no trace
    evaluator.add_detections("a", Detections(boxes=[[0, 0, 10, 10]], scores=[1],
                                                  labels=[1]))
    metrics = evaluator.evaluate()
    # One of the two objects found at precision 1: recall points 0..0.5 score 1.
    assert metrics["DetectionBoxes_Precision/mAP@.50IOU"] == pytest.approx(51 / 101)
    assert metrics["DetectionBoxes_Recall/AR@100"] == 0.5
