"""COCO box, mask and keypoint evaluators: the ``coco_detection_metrics``,
``coco_mask_metrics`` and ``coco_keypoint_metrics`` metrics_sets.

They take images one at a time (``add_ground_truth`` then ``add_detections``), keep only
compact numpy arrays per image (masks as run-length intervals), and compute pycocotools'
COCOeval numbers exactly, named as the OD API's ``coco_evaluation`` names them
(``DetectionBoxes_Precision/mAP``, ``DetectionMasks_Recall/AR@100 (small)``,
``Keypoints_Precision/mAP ByCategory/person``, ...). The ground truth they build is what the
OD API's ``coco_tools`` exports: box ``[x1, y1, x2 - x1, y2 - y1]``; ``area`` the given area
when > 0, else the box area; detections' areas from their boxes (masks: mask area).

Detections of a label outside ``categories`` are dropped, as the OD API's ``coco_tools``
drops them, but counted per id (``unknown_class_detections``) and reported in one warning by
``evaluate()``. Unlike the OD API, ground truth of such a label is an error (it drops that
too), as are detections before ground truth and adding an image twice. Ties in score keep
the order in which detections were added (pycocotools' stable sort). Bulk evaluation of JSON files is
``evaluate_coco_json`` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError
from objdet.evaluation import mask_rle
from objdet.evaluation.base import (
    Category,
    GroundTruth,
    HeadlineMetric,
    UnknownClassDetections,
    check_categories,
)
from objdet.evaluation.coco_accumulate import BOX_PARAMS, KEYPOINT_PARAMS, CocoParams
from objdet.evaluation.coco_bulk import evaluate_coco_json
from objdet.evaluation.coco_iou import box_iou_function, keypoint_oks_function, mask_iou_function
from objdet.evaluation.coco_matching import EvaluationTables, PairIouFunction
from objdet.evaluation.coco_run import named_metrics, run_coco
from objdet.structures.boxes import xyxy_to_xywh_array
from objdet.structures.detections import Detections

__all__ = [
    "DEFAULT_OKS_SIGMA",
    "CocoDetectionEvaluator",
    "CocoKeypointEvaluator",
    "CocoMaskEvaluator",
    "evaluate_coco_json",
]

logger = logging.getLogger(__name__)

# The OKS sigma of every keypoint when none are given (the OD API's CocoKeypointEvaluator;
# its comment says 0, its code uses 0.05).
DEFAULT_OKS_SIGMA = 0.05


class _ImageStore:
    """Per-image columns of one side (ground truth or detections), concatenated on demand."""

    def __init__(self) -> None:
        self.image_ids: list[Any] = []
        self.columns: dict[str, list[Any]] = {}

    def add(self, image_id: Any, count: int, **columns: Any) -> None:
        self.image_ids.append((image_id, count))
        for name, value in columns.items():
            self.columns.setdefault(name, []).append(value)

    def array(self, name: str, empty: NDArray[Any]) -> NDArray[Any]:
        parts = self.columns.get(name, [])
        return np.concatenate(parts) if parts else empty

    def items(self, name: str) -> list[Any]:
        return [item for part in self.columns.get(name, []) for item in part]

    def image_column(self, image_index: Mapping[Any, int]) -> NDArray[np.int64]:
        return np.repeat(
            np.array([image_index[i] for i, _ in self.image_ids], dtype=np.int64),
            np.array([n for _, n in self.image_ids], dtype=np.int64),
        )


class _CocoEvaluatorBase:
    """Shared bookkeeping: categories, the two stores, image-order checks, evaluation."""

    metric_prefix = ""
    params: CocoParams = BOX_PARAMS

    def __init__(self, categories: Sequence[Category], include_metrics_per_category: bool = False,
                 all_metrics_per_category: bool = False) -> None:
        self._names = check_categories(categories, type(self).__name__)
        self._category_ids = sorted(self._names)
        self._category_index = {c: i for i, c in enumerate(self._category_ids)}
        self._include_per_category = include_metrics_per_category
        self._all_per_category = all_metrics_per_category
        self.unknown_class_detections = UnknownClassDetections(self._category_ids)
        self.clear()

    def clear(self) -> None:
        """Forget every image added so far."""
        self.unknown_class_detections.clear()
        self._has_detections: dict[Any, bool] = {}
        self._gt = _ImageStore()
        self._dt = _ImageStore()

    def _category_column(self, labels: NDArray[np.int64], image_id: Any) -> NDArray[np.int64]:
        """Positions of ``labels`` in the categories; an unknown label is an error (only
        ground truth can hold one: unknown detections are dropped on arrival)."""
        unknown = [int(label) for label in labels if int(label) not in self._category_index]
        if unknown:
            raise DataError(
                f"image {image_id!r}: label {unknown[0]} is not among the evaluator's "
                f"categories {self._category_ids}"
            )
        return np.array([self._category_index[int(label)] for label in labels], dtype=np.int64)

    def _start_ground_truth(self, image_id: Any) -> None:
        if image_id in self._has_detections:
            raise DataError(f"ground truth for image {image_id!r} was already added")
        self._has_detections[image_id] = False

    def _start_detections(self, image_id: Any) -> None:
        if image_id not in self._has_detections:
            raise DataError(f"detections for image {image_id!r} come before its ground truth")
        if self._has_detections[image_id]:
            raise DataError(f"detections for image {image_id!r} were already added")
        self._has_detections[image_id] = True

    def _tables(self, gt_ignore_extra: NDArray[np.bool_] | None = None) -> EvaluationTables:
        try:
            image_ids = sorted(self._has_detections)
        except TypeError as error:
            raise DataError("image ids must be all int or all str to be ordered") from error
        image_index = {image_id: i for i, image_id in enumerate(image_ids)}
        crowd = self._gt.array("crowd", np.zeros(0, dtype=bool))
        ignore = crowd if gt_ignore_extra is None else crowd | gt_ignore_extra
        return EvaluationTables(
            num_images=len(image_ids),
            num_categories=len(self._category_ids),
            gt_image=self._gt.image_column(image_index),
            gt_category=self._gt.array("category", np.zeros(0, dtype=np.int64)),
            gt_area=self._gt.array("area", np.zeros(0)),
            gt_crowd=crowd,
            gt_ignore=ignore,
            gt_countable=np.ones(crowd.size, dtype=bool),
            dt_image=self._dt.image_column(image_index),
            dt_category=self._dt.array("category", np.zeros(0, dtype=np.int64)),
            dt_score=self._dt.array("score", np.zeros(0)),
            dt_area=self._dt.array("area", np.zeros(0)),
        )

    @property
    def headline_metric(self) -> HeadlineMetric:
        """COCO's AP averaged over IoU 0.50:0.95, e.g. ``DetectionBoxes_Precision/mAP``."""
        return HeadlineMetric(self.metric_prefix + "Precision/mAP")

    def _metrics(self, tables: EvaluationTables, pair_ious: PairIouFunction) -> dict[str, float]:
        self.unknown_class_detections.warn(self.metric_prefix.rstrip("_"))
        result = run_coco(tables, pair_ious, self.params)
        names = {i: self._names[c] for i, c in enumerate(self._category_ids)}
        metrics = named_metrics(result, names, self._include_per_category, self._all_per_category)
        return {self.metric_prefix + name: value for name, value in metrics.items()}

    def _add_boxes(self, image_id: Any, ground_truth: GroundTruth, **extra: Any) -> None:
        """Record one image's ground truth (plus ``extra`` columns)."""
        boxes = ground_truth.boxes
        box_area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0])
        areas = box_area if ground_truth.areas is None else np.where(
            ground_truth.areas > 0, ground_truth.areas, box_area)
        crowd = (np.zeros(boxes.shape[0], dtype=bool) if ground_truth.is_crowd is None
                 else ground_truth.is_crowd)
        category = self._category_column(ground_truth.labels, image_id)
        self._start_ground_truth(image_id)
        self._gt.add(image_id, boxes.shape[0], boxes=xyxy_to_xywh_array(boxes), area=areas, crowd=crowd,
                     category=category, **extra)

    def _add_detections(self, image_id: Any, detections: Detections, area: Any = None,
                        **extra: Any) -> None:
        """Record one image's detections; ``area`` defaults to the box areas."""
        boxes = xyxy_to_xywh_array(detections.boxes)
        category = self._category_column(detections.labels, image_id)
        self._start_detections(image_id)
        self._dt.add(image_id, boxes.shape[0], boxes=boxes, score=detections.scores,
                     area=boxes[:, 2] * boxes[:, 3] if area is None else area,
                     category=category, **extra)


class CocoDetectionEvaluator(_CocoEvaluatorBase):
    """COCO box metrics (``coco_detection_metrics``), as the OD API's evaluator of that name.

    Args:
        categories: ``[{'id': 1, 'name': 'cat'}, ...]``; ground truth labels outside it are
            errors, detections of them are dropped (and counted, see the module doc).
        include_metrics_per_category: add ``DetectionBoxes_PerformanceByCategory/mAP/<name>``.
        all_metrics_per_category: also add all 12 stats per category
            (``DetectionBoxes_Precision/mAP ByCategory/<name>``, ...).
    """

    metric_prefix = "DetectionBoxes_"

    def add_ground_truth(self, image_id: str | int, ground_truth: GroundTruth) -> None:
        self._add_boxes(image_id, ground_truth)

    def add_detections(self, image_id: str | int, detections: Detections) -> None:
        self._add_detections(image_id, self.unknown_class_detections.known(detections))

    def evaluate(self) -> dict[str, float]:
        """The 12 COCO box metrics (-1 where there is no ground truth to measure)."""
        tables = self._tables()
        ious = box_iou_function(self._dt.array("boxes", np.zeros((0, 4))),
                                self._gt.array("boxes", np.zeros((0, 4))), tables.gt_crowd)
        return self._metrics(tables, ious)


def _encode_masks(masks: NDArray[np.uint8] | None, count: int, what: str,
                  image_id: Any) -> list[mask_rle.RleMask]:
    if masks is None or masks.ndim != 3 or masks.shape[0] != count:
        shape = None if masks is None else tuple(masks.shape)
        raise DataError(f"image {image_id!r}: {what} needs masks [N, H, W] for its {count} "
                        f"objects, got {shape}")
    return [mask_rle.encode(mask) for mask in masks]


class CocoMaskEvaluator(_CocoEvaluatorBase):
    """COCO instance-mask metrics (``coco_mask_metrics``): ``DetectionMasks_...``.

    Ground truth and detections must carry ``masks`` ``[N, H, W]`` of the image size; they
    are stored run-length encoded. Arguments as ``CocoDetectionEvaluator``.
    """

    metric_prefix = "DetectionMasks_"

    def add_ground_truth(self, image_id: str | int, ground_truth: GroundTruth) -> None:
        masks = _encode_masks(ground_truth.masks, ground_truth.num_objects, "ground truth",
                              image_id)
        self._add_boxes(image_id, ground_truth, masks=masks)

    def add_detections(self, image_id: str | int, detections: Detections) -> None:
        detections = self.unknown_class_detections.known(detections)
        masks = _encode_masks(detections.masks, len(detections), "detections",
                              image_id)
        area = np.array([float(m.area) for m in masks], dtype=np.float64)
        self._add_detections(image_id, detections, area=area, masks=masks)

    def evaluate(self) -> dict[str, float]:
        """The 12 COCO mask metrics (-1 where there is no ground truth to measure)."""
        tables = self._tables()
        ious = mask_iou_function(self._dt.items("masks"), self._gt.items("masks"),
                                 tables.gt_crowd)
        return self._metrics(tables, ious)


class CocoKeypointEvaluator(_CocoEvaluatorBase):
    """COCO keypoint metrics of one category (``coco_keypoint_metrics``).

    Args:
        category_id: the label whose objects carry the keypoints; others are skipped.
        category_keypoints: ``[{'id': index into the K keypoints, 'name': str}, ...]``.
        class_text: the category's name, used in metric names
            (``Keypoints_Precision/mAP ByCategory/<class_text>``).
        oks_sigmas: keypoint name -> OKS sigma, one for every keypoint; None or empty uses
            ``DEFAULT_OKS_SIGMA`` for all and logs a warning, as the OD API does.
        label_map_ids: every id of the label map. Detections of these other classes are
            skipped as a matter of course; those of ids outside it (and outside
            ``category_id``) are counted in ``unknown_class_detections`` and reported by
            ``evaluate()``. None: only ``category_id`` is known.
    """

    metric_prefix = "Keypoints_"
    params = KEYPOINT_PARAMS

    def __init__(self, category_id: int, category_keypoints: Sequence[Mapping[str, Any]],
                 class_text: str, oks_sigmas: Mapping[str, float] | None = None, *,
                 label_map_ids: Iterable[int] | None = None) -> None:
        super().__init__([{"id": category_id, "name": class_text}])
        self._category_id = int(category_id)
        if label_map_ids is not None:
            self.unknown_class_detections = UnknownClassDetections([category_id, *label_map_ids])
        self._keypoint_ids = sorted(int(k["id"]) for k in category_keypoints)
        names = {int(k["id"]): str(k["name"]) for k in category_keypoints}
        if not oks_sigmas:
            logger.warning("%s keypoints: no OKS sigmas given; using %s for every keypoint "
                           "(the OD API's default)", class_text, DEFAULT_OKS_SIGMA)
            self._sigmas = np.full(len(self._keypoint_ids), DEFAULT_OKS_SIGMA)
        else:
            missing = [names[i] for i in self._keypoint_ids if names[i] not in oks_sigmas]
            if missing:
                raise DataError(f"oks_sigmas lacks keypoints {missing}")
            self._sigmas = np.array([float(oks_sigmas[names[i]]) for i in self._keypoint_ids])

    def _kept_keypoints(self, keypoints: NDArray[np.float64] | None, keep: NDArray[np.bool_],
                        image_id: Any, what: str) -> NDArray[np.float64]:
        """``[N, K', 2]`` (x, y) of the kept objects at the category's keypoint ids."""
        if not keep.any():
            return np.zeros((0, len(self._keypoint_ids), 2))
        if keypoints is None or keypoints.ndim != 3 or keypoints.shape[1] <= max(
                self._keypoint_ids, default=-1):
            shape = None if keypoints is None else tuple(keypoints.shape)
            raise DataError(f"image {image_id!r}: {what} need keypoints [N, K, 2] with K > "
                            f"{max(self._keypoint_ids, default=-1)}, got {shape}")
        return keypoints[keep][:, self._keypoint_ids, :2]

    def add_ground_truth(self, image_id: str | int, ground_truth: GroundTruth) -> None:
        keep = ground_truth.labels == self._category_id
        chosen = GroundTruth(
            boxes=ground_truth.boxes[keep], labels=ground_truth.labels[keep],
            is_crowd=None if ground_truth.is_crowd is None else ground_truth.is_crowd[keep],
            areas=None if ground_truth.areas is None else ground_truth.areas[keep])
        points = self._kept_keypoints(ground_truth.keypoints, keep, image_id, "ground truth")
        visible = np.asarray(np.isfinite(points).all(axis=2), dtype=bool)  # [N, K]
        if ground_truth.keypoint_visibilities is not None and keep.any():
            visible &= ground_truth.keypoint_visibilities[keep][:, self._keypoint_ids]
        # COCO's (x, y, v) with v = 2 (labeled, visible) or 0 (not labeled).
        coco = np.concatenate([np.nan_to_num(points), 2.0 * visible[:, :, None]], axis=2)
        self._add_boxes(image_id, chosen, keypoints=coco, no_keypoints=~visible.any(axis=1))

    def add_detections(self, image_id: str | int, detections: Detections) -> None:
        detections = self.unknown_class_detections.known(detections)
        keep = detections.labels == self._category_id
        points = self._kept_keypoints(detections.keypoints, keep, image_id, "detections")
        self._add_detections(image_id, detections.select(keep), keypoints=points)

    @property
    def headline_metric(self) -> HeadlineMetric:
        """``Keypoints_Precision/mAP ByCategory/<class_text>``: OKS AP over 0.50:0.95."""
        return HeadlineMetric(f"{self.metric_prefix}Precision/mAP ByCategory/{self._names[self._category_id]}")

    def evaluate(self) -> dict[str, float]:
        """The 10 COCO keypoint metrics, ``Keypoints_<name> ByCategory/<class_text>``."""
        tables = self._tables(self._gt.array("no_keypoints", np.zeros(0, dtype=bool)))
        num_keypoints = len(self._keypoint_ids)
        oks = keypoint_oks_function(
            self._dt.array("keypoints", np.zeros((0, num_keypoints, 2))),
            self._gt.array("keypoints", np.zeros((0, num_keypoints, 3))),
            tables.gt_area, self._gt.array("boxes", np.zeros((0, 4))), self._sigmas)
        metrics = self._metrics(tables, oks)
        name = self._names[self._category_id]
        return {f"{key} ByCategory/{name}": value for key, value in metrics.items()}
