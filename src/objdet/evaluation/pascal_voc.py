"""PASCAL VOC metrics, and the matching evaluator the Open Images protocols build on.

``MatchingEvaluator`` is the OD API's ObjectDetectionEvaluator + ObjectDetectionEvaluation:
per-class AP at one IoU threshold (all-point interpolation), mAP as the NaN-ignoring mean over
classes with ground truth, optionally CorLoc, or a weighted mAP over all classes' pooled
detections. Images are matched as soon as their detections arrive (``per_image.match_image``)
and only ``(class, score, tp weight)`` triples are kept, so memory grows with the number of
detections, not with boxes or masks. Ground truth is held only until its detections arrive.

Input rules (stricter than the OD API, which warns or silently skips):
- ground truth must be added before the detections of the same image; adding either twice
  for one image, or detections for an image without ground truth, raises ``DataError``;
- ground truth class ids not among the categories raise ``DataError`` naming them;
- detections of class ids not among the categories are dropped, as the OD API drops them
  (its per-class loops never reach them), counted per id in ``unknown_class_detections``
  and reported in one warning by ``evaluate()``;
- detections with zero width or height are dropped (as the OD API does) and counted in
  ``num_degenerate_detections``; mask protocols need masks on both sides.

Empty inputs: a class without ground truth has AP NaN and is left out of mAP (nanmean); with
no ground truth at all mAP is NaN.
"""

from __future__ import annotations

import itertools
import logging
import unicodedata
import warnings
from collections.abc import Sequence

import numpy as np

from objdet.errors import DataError
from objdet.evaluation.average_precision import (
    average_precision,
    cor_loc,
    precision_recall,
    restrict_to_recall,
)
from objdet.evaluation.base import (
    Category,
    GroundTruth,
    HeadlineMetric,
    UnknownClassDetections,
    check_categories,
)
from objdet.evaluation.per_image import match_image
from objdet.structures.detections import Detections

logger = logging.getLogger(__name__)

ImageId = str | int


class MatchingEvaluator:
    """Accumulates per-image matches; ``evaluate()`` returns the OD API's metric names.

    Args:
        categories: ``[{'id': 1, 'name': 'cat'}, ...]`` (``LabelMap.categories()``).
        metric_prefix: e.g. 'PascalBoxes'; metric names start with ``<prefix>_``.
        matching_iou_threshold: IoU (or IoA for group-of boxes) a match must reach.
        use_weighted_mean_ap: mAP from all classes' detections pooled into one curve.
        evaluate_masks: match masks instead of boxes (instance segmentation).
        evaluate_corlocs: also report CorLoc per class and its mean.
        group_of_weight: TP weight of a detected group-of box (0: its detections are ignored).
        use_difficult / use_group_of: whether the protocol reads those ground truth flags.
        recall_lower_bound / recall_upper_bound: AP over this recall range only.
    """

    def __init__(
        self,
        categories: Sequence[Category],
        *,
        metric_prefix: str,
        matching_iou_threshold: float = 0.5,
        use_weighted_mean_ap: bool = False,
        evaluate_masks: bool = False,
        evaluate_corlocs: bool = False,
        group_of_weight: float = 0.0,
        use_difficult: bool = True,
        use_group_of: bool = False,
        recall_lower_bound: float = 0.0,
        recall_upper_bound: float = 1.0,
    ) -> None:
        self._names = check_categories(categories, f"{metric_prefix} evaluator")
        if not self._names:
            raise DataError(f"{metric_prefix} evaluator: needs at least one category")
        self._class_ids = np.array(sorted(self._names), dtype=np.int64)  # [C]
        self.unknown_class_detections = UnknownClassDetections(self._names)
        self.metric_prefix = metric_prefix
        self.matching_iou_threshold = matching_iou_threshold
        self.use_weighted_mean_ap = use_weighted_mean_ap
        self.evaluate_masks = evaluate_masks
        self.evaluate_corlocs = evaluate_corlocs
        self.group_of_weight = group_of_weight
        self.use_difficult = use_difficult
        self.use_group_of = use_group_of
        self.recall_lower_bound = recall_lower_bound
        self.recall_upper_bound = recall_upper_bound
        self.clear()

    def clear(self) -> None:
        """Forget every image added so far."""
        num_classes = len(self._class_ids)
        self._num_gt_instances = np.zeros(num_classes, dtype=np.float64)
        self._num_gt_images = np.zeros(num_classes, dtype=np.int64)
        self._num_localized = np.zeros(num_classes, dtype=np.int64)
        self._pending_ground_truth: dict[ImageId, GroundTruth] = {}
        self._images_with_ground_truth: set[ImageId] = set()
        self._images_with_detections: set[ImageId] = set()
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.num_degenerate_detections = 0
        self.unknown_class_detections.clear()
        self.curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_images(self) -> int:
        return len(self._images_with_ground_truth)

    def add_ground_truth(self, image_id: ImageId, ground_truth: GroundTruth) -> None:
        """Count one image's objects per class; hold them until its detections arrive."""
        if image_id in self._images_with_ground_truth:
            raise DataError(f"image {image_id!r}: ground truth was already added")
        class_index = self._class_indices(ground_truth.labels, image_id, "ground truth")
        if self.evaluate_masks and ground_truth.num_objects and ground_truth.masks is None:
            raise DataError(
                f"image {image_id!r}: {self.metric_prefix} evaluates masks but the ground "
                "truth has none"
            )
        ignored = self._uncounted_objects(ground_truth)
        group_of = self._flags(ground_truth.group_of if self.use_group_of else None, ground_truth)
        weights = np.where(group_of, self.group_of_weight, 1.0) * ~ignored
        np.add.at(self._num_gt_instances, class_index, weights)
        self._num_gt_images[np.unique(class_index)] += 1
        self._images_with_ground_truth.add(image_id)
        self._pending_ground_truth[image_id] = ground_truth

    def add_detections(self, image_id: ImageId, detections: Detections) -> None:
        """Match one image's detections to its ground truth and keep only the outcome."""
        if image_id in self._images_with_detections:
            raise DataError(f"image {image_id!r}: detections were already added")
        if image_id not in self._images_with_ground_truth:
            raise DataError(
                f"image {image_id!r}: detections added before its ground truth "
                "(call add_ground_truth first; an image without objects needs an empty one)"
            )
        detections = self.unknown_class_detections.known(detections)
        if self.evaluate_masks and len(detections) and detections.masks is None:
            raise DataError(
                f"image {image_id!r}: {self.metric_prefix} evaluates masks but the "
                "detections have none"
            )
        ground_truth = self._pending_ground_truth.pop(image_id)
        detections = self._select_detections(image_id, detections)
        match = match_image(
            detections,
            ground_truth,
            iou_threshold=self.matching_iou_threshold,
            group_of_weight=self.group_of_weight,
            use_difficult=self.use_difficult,
            use_group_of=self.use_group_of,
            use_masks=self.evaluate_masks,
        )
        self._images_with_detections.add(image_id)
        self.num_degenerate_detections += match.num_degenerate
        self._num_localized[self._class_indices(match.localized_class_ids, image_id, "")] += 1
        self._chunks.append(
            (self._class_indices(match.class_ids, image_id, ""), match.scores, match.tp_weights)
        )

    def evaluate(self) -> dict[str, float]:
        """mAP, per-class AP (and CorLoc) named as the OD API names them."""
        self.unknown_class_detections.warn(self.metric_prefix)
        if self.num_degenerate_detections:
            logger.warning(
                "%s: dropped %d detections with zero width or height",
                self.metric_prefix,
                self.num_degenerate_detections,
            )
        per_class_ap, mean_ap = self._average_precisions()
        corlocs = cor_loc(self._num_gt_images, self._num_localized)
        prefix, threshold = f"{self.metric_prefix}_", self.matching_iou_threshold
        metrics = {self._summary_name(): mean_ap}
        if self.evaluate_corlocs:
            metrics[f"{prefix}Precision/meanCorLoc@{threshold}IOU"] = _nanmean(corlocs)
        for index, class_id in enumerate(self._class_ids.tolist()):
            name = unicodedata.normalize("NFKD", self._names[class_id])
            metrics[f"{prefix}PerformanceByCategory/AP@{threshold}IOU/{name}"] = float(
                per_class_ap[index]
            )
            if self.evaluate_corlocs:
                metrics[f"{prefix}PerformanceByCategory/CorLoc@{threshold}IOU/{name}"] = float(
                    corlocs[index]
                )
        return metrics

    def category_names(self) -> dict[int, str]:
        """Category id -> name, as given."""
        return dict(self._names)

    @property
    def headline_metric(self) -> HeadlineMetric:
        """The summary mAP, e.g. ``PascalBoxes_Precision/mAP@0.5IOU`` (higher is better)."""
        return HeadlineMetric(self._summary_name())

    # -- protocol hooks -----------------------------------------------------------------

    def _select_detections(self, image_id: ImageId, detections: Detections) -> Detections:
        """The detections the protocol evaluates (all of them here)."""
        return detections

    def _uncounted_objects(self, ground_truth: GroundTruth) -> np.ndarray:
        """``[N]`` objects that are not counted as ground truth instances."""
        ignored = self._flags(ground_truth.difficult if self.use_difficult else None, ground_truth)
        if self.evaluate_masks and ground_truth.masks is not None and ground_truth.num_objects:
            # Objects without a mask (empty) are ignore regions in mask protocols.
            ignored = ignored | ~ground_truth.masks.reshape(ground_truth.num_objects, -1).any(1)
        return ignored

    # -- internals ------------------------------------------------------------------------

    def _summary_name(self) -> str:
        name = f"{self.metric_prefix}_Precision/mAP@{self.matching_iou_threshold}IOU"
        if self.recall_lower_bound > 0.0 or self.recall_upper_bound < 1.0:
            name += f"@[{self.recall_lower_bound:.1f},{self.recall_upper_bound:.1f}]Recall"
        return name

    @staticmethod
    def _flags(flags: np.ndarray | None, ground_truth: GroundTruth) -> np.ndarray:
        if flags is None:
            return np.zeros(ground_truth.num_objects, dtype=bool)
        return flags.astype(bool)

    def _class_indices(self, labels: np.ndarray, image_id: ImageId, what: str) -> np.ndarray:
        """Positions ``[N]`` of label-map ids in the category list; unknown ids are an error
        (only ground truth can hold them: unknown detections are dropped on arrival)."""
        index = np.searchsorted(self._class_ids, labels)
        known = (index < len(self._class_ids)) & (
            self._class_ids[np.minimum(index, len(self._class_ids) - 1)] == labels
        )
        if not known.all():
            unknown = sorted(set(labels[~known].tolist()))
            raise DataError(
                f"image {image_id!r}: {what} class ids {unknown} are not among the "
                f"{len(self._class_ids)} categories (ids {self._class_ids.tolist()[:20]}"
                f"{'...' if len(self._class_ids) > 20 else ''})"
            )
        return index

    def _grouped_by_class(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per class position: ``(scores [K_c], tp_weights [K_c])`` in insertion order: image
        by image, as the OD API concatenates them (its tie order depends on this order)."""
        if not self._chunks:
            return [(np.zeros(0), np.zeros(0)) for _ in self._class_ids]
        class_index = np.concatenate([chunk[0] for chunk in self._chunks])
        scores = np.concatenate([chunk[1] for chunk in self._chunks])
        weights = np.concatenate([chunk[2] for chunk in self._chunks])
        order = np.argsort(class_index, kind="stable")
        bounds = np.searchsorted(class_index[order], np.arange(len(self._class_ids) + 1))
        return [
            (scores[order[start:end]], weights[order[start:end]])
            for start, end in itertools.pairwise(bounds)
        ]

    def _curve_ap(
        self, scores: np.ndarray, weights: np.ndarray, num_gt: float
    ) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
        curve = precision_recall(scores, weights, num_gt)
        if curve is None:
            return float("nan"), None
        curve = restrict_to_recall(*curve, self.recall_lower_bound, self.recall_upper_bound)
        return average_precision(*curve), curve

    def _average_precisions(self) -> tuple[np.ndarray, float]:
        per_class_ap = np.full(len(self._class_ids), np.nan)
        self.curves = {}
        grouped = self._grouped_by_class()
        for index, (scores, weights) in enumerate(grouped):
            if self._num_gt_instances[index] == 0:
                continue
            per_class_ap[index], curve = self._curve_ap(
                scores, weights, self._num_gt_instances[index]
            )
            if curve is not None:
                self.curves[int(self._class_ids[index])] = curve
        if not self.use_weighted_mean_ap:
            return per_class_ap, _nanmean(per_class_ap)
        # The OD API pools only classes with ground truth, in class order.
        with_gt = [i for i in range(len(grouped)) if self._num_gt_instances[i] > 0]
        pooled_scores = np.concatenate([grouped[i][0] for i in with_gt] or [np.zeros(0)])
        pooled_weights = np.concatenate([grouped[i][1] for i in with_gt] or [np.zeros(0)])
        mean_ap, _ = self._curve_ap(
            pooled_scores, pooled_weights, float(self._num_gt_instances.sum())
        )
        return per_class_ap, mean_ap


def _nanmean(values: np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a RuntimeWarning) when every value is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")


class PascalDetectionEvaluator(MatchingEvaluator):
    """``pascal_voc_detection_metrics``: box AP@0.5 per class, mAP over classes."""

    def __init__(
        self,
        categories: Sequence[Category],
        matching_iou_threshold: float = 0.5,
        evaluate_corlocs: bool = False,
    ) -> None:
        super().__init__(
            categories,
            metric_prefix="PascalBoxes",
            matching_iou_threshold=matching_iou_threshold,
            evaluate_corlocs=evaluate_corlocs,
        )


class WeightedPascalDetectionEvaluator(MatchingEvaluator):
    """``weighted_pascal_voc_detection_metrics``: mAP from all classes' detections pooled."""

    def __init__(self, categories: Sequence[Category], matching_iou_threshold: float = 0.5) -> None:
        super().__init__(
            categories,
            metric_prefix="WeightedPascalBoxes",
            matching_iou_threshold=matching_iou_threshold,
            use_weighted_mean_ap=True,
        )


class PascalInstanceSegmentationEvaluator(MatchingEvaluator):
    """``pascal_voc_instance_segmentation_metrics``: as PASCAL boxes, matching masks."""

    def __init__(self, categories: Sequence[Category], matching_iou_threshold: float = 0.5) -> None:
        super().__init__(
            categories,
            metric_prefix="PascalMasks",
            matching_iou_threshold=matching_iou_threshold,
            evaluate_masks=True,
        )


class WeightedPascalInstanceSegmentationEvaluator(MatchingEvaluator):
    """``weighted_pascal_voc_instance_segmentation_metrics``."""

    def __init__(self, categories: Sequence[Category], matching_iou_threshold: float = 0.5) -> None:
        super().__init__(
            categories,
            metric_prefix="WeightedPascalMasks",
            matching_iou_threshold=matching_iou_threshold,
            use_weighted_mean_ap=True,
            evaluate_masks=True,
        )
