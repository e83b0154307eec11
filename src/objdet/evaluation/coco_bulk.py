"""Bulk COCO evaluation of a ground-truth JSON against a results JSON (``objdet eval-coco``).

``evaluate_coco_json`` returns the OD API's metric names (``DetectionBoxes_Precision/mAP``,
...); ``evaluate_coco_files`` also returns pycocotools' ``eval`` arrays. See ``coco_json`` for
how fields are read and which inputs are rejected.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError
from objdet.evaluation import mask_rle
from objdet.evaluation.coco_accumulate import BOX_PARAMS, KEYPOINT_PARAMS
from objdet.evaluation.coco_iou import box_iou_function, keypoint_oks_function, mask_iou_function
from objdet.evaluation.coco_json import (
    DetectionFile,
    GroundTruthFile,
    column,
    load_detections,
    load_ground_truth,
)
from objdet.evaluation.coco_matching import EvaluationTables, PairIouFunction
from objdet.evaluation.coco_run import CocoResult, named_metrics, run_coco

IOU_TYPES = ("bbox", "segm", "keypoints")
METRIC_PREFIX = {"bbox": "DetectionBoxes_", "segm": "DetectionMasks_", "keypoints": "Keypoints_"}
# pycocotools' default per-keypoint sigmas of the 17 COCO person keypoints.
COCO_PERSON_SIGMAS = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
) / 10.0


def evaluate_coco_json(
    gt_path: str | os.PathLike[str],
    dt_path: str | os.PathLike[str],
    iou_type: str = "bbox",
    include_metrics_per_category: bool = False,
    all_metrics_per_category: bool = False,
    oks_sigmas: NDArray[np.float64] | None = None,
) -> dict[str, float]:
    """COCO metrics of a results file, named as the OD API names them.

    Args:
        gt_path: COCO ground truth (``images``, ``annotations``, ``categories``).
        dt_path: COCO results: a list of ``{image_id, category_id, score, bbox |
            segmentation | keypoints}``.
        iou_type: ``bbox``, ``segm`` or ``keypoints``.
        oks_sigmas: ``[K]`` keypoint sigmas; default COCO's 17 person sigmas.

    Returns:
        ``{"DetectionBoxes_Precision/mAP": ..., ...}`` (``DetectionMasks_`` for segm,
        ``Keypoints_`` for keypoints); -1 where there is no ground truth to measure.
    """
    result, ground_truth = evaluate_coco_files(gt_path, dt_path, iou_type, oks_sigmas)
    names = {i: ground_truth.category_names[c] for i, c in enumerate(ground_truth.category_ids)}
    metrics = named_metrics(result, names, include_metrics_per_category, all_metrics_per_category)
    return {METRIC_PREFIX[iou_type] + name: value for name, value in metrics.items()}


def evaluate_coco_files(
    gt_path: str | os.PathLike[str],
    dt_path: str | os.PathLike[str],
    iou_type: str = "bbox",
    oks_sigmas: NDArray[np.float64] | None = None,
) -> tuple[CocoResult, GroundTruthFile]:
    """Evaluate and return the full result (stats, precision and recall arrays)."""
    if iou_type not in IOU_TYPES:
        raise DataError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    ground_truth = load_ground_truth(gt_path)
    detections = load_detections(dt_path, ground_truth, iou_type)
    gt_ignore = ground_truth.crowd.copy()
    if iou_type == "bbox":
        assert detections.boxes is not None or not detections.records
        dt_boxes = detections.boxes if detections.boxes is not None else np.zeros((0, 4))
        dt_area = dt_boxes[:, 2] * dt_boxes[:, 3]
        pair_ious = box_iou_function(dt_boxes, ground_truth.boxes, ground_truth.crowd)
    elif iou_type == "segm":
        pair_ious, dt_area = _segm_inputs(ground_truth, detections)
    else:
        pair_ious, dt_area, no_keypoints = _keypoint_inputs(ground_truth, detections, oks_sigmas)
        gt_ignore |= no_keypoints
    tables = EvaluationTables(
        num_images=len(ground_truth.image_ids),
        num_categories=len(ground_truth.category_ids),
        gt_image=ground_truth.image_index,
        gt_category=ground_truth.category_index,
        gt_area=ground_truth.areas,
        gt_crowd=ground_truth.crowd,
        gt_ignore=gt_ignore,
        gt_countable=ground_truth.ids != 0,
        dt_image=detections.image_index,
        dt_category=detections.category_index,
        dt_score=detections.scores,
        dt_area=dt_area,
    )
    params = KEYPOINT_PARAMS if iou_type == "keypoints" else BOX_PARAMS
    return run_coco(tables, pair_ious, params), ground_truth


def _image_size(ground_truth: GroundTruthFile, image_id: object, where: str) -> tuple[int, int]:
    size = ground_truth.image_sizes.get(image_id)
    if size is None:
        raise DataError(f"{where}: image {image_id!r} has no height/width in {ground_truth.path}")
    return size


def _segm_inputs(
    ground_truth: GroundTruthFile, detections: DetectionFile
) -> tuple[PairIouFunction, NDArray[np.float64]]:
    """Masks of both files (polygons rasterized at the image size) and detection areas."""
    gt_masks = []
    for index, annotation in enumerate(ground_truth.annotations):
        where = f"{ground_truth.path}: annotations[{index}]"
        height, width = _image_size(ground_truth, annotation["image_id"], where)
        try:
            gt_masks.append(
                mask_rle.from_segmentation(annotation.get("segmentation"), height, width))
        except DataError as error:
            raise DataError(f"{where}: {error}") from None
    dt_masks = []
    for index, record in enumerate(detections.records):
        where = f"detections[{index}]"
        image_id = ground_truth.image_ids[detections.image_index[index]]
        height, width = _image_size(ground_truth, image_id, where)
        try:
            if "segmentation" in record:
                mask = mask_rle.from_segmentation(record["segmentation"], height, width)
            elif detections.boxes is not None:  # pycocotools: the box as a polygon
                mask = mask_rle.from_box(detections.boxes[index], height, width)
            else:
                raise DataError("has neither 'segmentation' nor 'bbox'")
        except DataError as error:
            raise DataError(f"{where}: {error}") from None
        dt_masks.append(mask)
    if detections.box_areas:
        assert detections.boxes is not None
        dt_area = detections.boxes[:, 2] * detections.boxes[:, 3]
    else:
        dt_area = np.array([float(m.area) for m in dt_masks], dtype=np.float64)
    return mask_iou_function(dt_masks, gt_masks, ground_truth.crowd), dt_area


def _keypoint_array(values: list, num_keypoints: int, where: str) -> NDArray[np.float64]:
    """``[N, K, 3]`` float64 from COCO's flat ``[x0, y0, v0, x1, ...]`` lists."""
    try:
        array = np.array(values, dtype=np.float64).reshape(len(values), -1)
    except ValueError:
        array = np.zeros((0, 0))
    if array.shape != (len(values), 3 * num_keypoints):
        raise DataError(
            f"{where}: every 'keypoints' must hold 3 * {num_keypoints} numbers "
            f"(one sigma per keypoint)"
        )
    return array.reshape(len(values), num_keypoints, 3)


def _keypoint_inputs(
    ground_truth: GroundTruthFile,
    detections: DetectionFile,
    sigmas: NDArray[np.float64] | None,
) -> tuple[PairIouFunction, NDArray[np.float64], NDArray[np.bool_]]:
    """OKS function, detection areas and the ground truth without labeled keypoints."""
    sigmas = COCO_PERSON_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    gt_where = f"{ground_truth.path}: annotations"
    gt_keypoints = _keypoint_array(
        column(ground_truth.annotations, "keypoints", gt_where), sigmas.size, gt_where)
    num_labeled = np.asarray(
        column(ground_truth.annotations, "num_keypoints", gt_where), dtype=np.int64)
    dt_keypoints = _keypoint_array(
        column(detections.records, "keypoints", "detections"), sigmas.size, "detections")
    if detections.box_areas:
        assert detections.boxes is not None
        dt_area = detections.boxes[:, 2] * detections.boxes[:, 3]
    else:  # pycocotools: the area of the keypoints' bounding box
        extent = dt_keypoints[:, :, :2].max(axis=1) - dt_keypoints[:, :, :2].min(axis=1)
        dt_area = extent[:, 0] * extent[:, 1]
    oks = keypoint_oks_function(
        dt_keypoints[:, :, :2], gt_keypoints, ground_truth.areas, ground_truth.boxes, sigmas)
    return oks, dt_area, num_labeled == 0
