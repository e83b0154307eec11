"""The evaluator interface shared by every metrics_set, and the ground truth it takes.

An evaluator is fed one image at a time::

    evaluator.add_ground_truth(image_id, GroundTruth.from_sample(sample))
    evaluator.add_detections(image_id, Detections.from_model_output(output))
    metrics = evaluator.evaluate()   # {'PascalBoxes_Precision/mAP@0.5IOU': 0.71, ...}
    evaluator.headline_metric        # HeadlineMetric('PascalBoxes_Precision/mAP@0.5IOU')

Inputs are numpy arrays in objdet's box convention: ``(x1, y1, x2, y2)`` float64 absolute
pixels, class ids are label-map ids. ``GroundTruth`` (here) and ``Detections``
(``objdet.structures.detections``) coerce array-likes (lists, torch tensors) to the
documented dtypes and check their own invariants, raising ``DataError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError
from objdet.structures.detections import (
    Detections,
    as_numpy,
    checked_boxes,
    checked_labels,
    optional_per_item,
)

if TYPE_CHECKING:
    from objdet.structures.sample import Sample

logger = logging.getLogger(__name__)

# The OD API's categories list: [{'id': 1, 'name': 'cat'}, ...] (LabelMap.categories()).
Category = Mapping[str, Any]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
MaskArray = NDArray[np.uint8]


def _numpy_or_none(value: Any) -> Any:
    return None if value is None else as_numpy(value)


@dataclass
class GroundTruth:
    """The annotations of one image.

    Attributes:
        boxes: ``[N, 4]`` float64 (x1, y1, x2, y2), absolute pixels.
        labels: ``[N]`` int64 label-map ids.
        difficult: ``[N]`` bool; difficult boxes are neither TP nor FP (PASCAL VOC).
        is_crowd: ``[N]`` bool (COCO iscrowd).
        group_of: ``[N]`` bool (Open Images group-of boxes).
        areas: ``[N]`` float64 object areas in pixels (COCO area ranges), None = box area.
        masks: ``[N, H, W]`` uint8 0/1 instance masks.
        keypoints: ``[N, K, 2]`` float64 (x, y) pixels; NaN where unknown.
        keypoint_visibilities: ``[N, K]`` bool.
        image_labels: ``[L]`` int64 image-level labels verified present (Open Images).
        negative_image_labels: ``[L']`` int64 image-level labels verified absent.
        neg_category_ids, not_exhaustive_category_ids: int64 (LVIS-style federated labels).
    """

    boxes: FloatArray
    labels: IntArray
    difficult: BoolArray | None = None
    is_crowd: BoolArray | None = None
    group_of: BoolArray | None = None
    areas: FloatArray | None = None
    masks: MaskArray | None = None
    keypoints: FloatArray | None = None
    keypoint_visibilities: BoolArray | None = None
    image_labels: IntArray | None = None
    negative_image_labels: IntArray | None = None
    neg_category_ids: IntArray | None = None
    not_exhaustive_category_ids: IntArray | None = None

    def __post_init__(self) -> None:
        owner = "ground truth"
        self.boxes = checked_boxes(self.boxes, owner)
        count = self.boxes.shape[0]
        self.labels = checked_labels(self.labels, count, owner)
        self.difficult = optional_per_item(self.difficult, np.bool_, "difficult", count, owner)
        self.is_crowd = optional_per_item(self.is_crowd, np.bool_, "is_crowd", count, owner)
        self.group_of = optional_per_item(self.group_of, np.bool_, "group_of", count, owner)
        self.areas = optional_per_item(self.areas, np.float64, "areas", count, owner)
        self.masks = optional_per_item(self.masks, np.uint8, "masks", count, owner)
        self.keypoints = optional_per_item(self.keypoints, np.float64, "keypoints", count, owner)
        self.keypoint_visibilities = optional_per_item(
            self.keypoint_visibilities, np.bool_, "keypoint_visibilities", count, owner
        )
        for name in (
            "image_labels",
            "negative_image_labels",
            "neg_category_ids",
            "not_exhaustive_category_ids",
        ):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, as_numpy(value).reshape(-1).astype(np.int64))

    @property
    def num_objects(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def from_sample(cls, sample: Sample) -> GroundTruth:
        """The ground truth a ``Sample`` carries.

        ``sample.image_labels`` are split by ``image_label_confidences``: confidence >= 0.5
        is verified present, below is verified absent; without confidences all are present.
        """
        positive, negative = None, None
        if sample.image_labels is not None:
            image_labels = as_numpy(sample.image_labels).reshape(-1).astype(np.int64)
            if sample.image_label_confidences is None:
                positive = image_labels
            else:
                confidences = as_numpy(sample.image_label_confidences).reshape(-1)
                positive = image_labels[confidences >= 0.5]
                negative = image_labels[confidences < 0.5]
        return cls(
            boxes=as_numpy(sample.boxes),
            labels=as_numpy(sample.labels),
            difficult=_numpy_or_none(sample.difficult),
            is_crowd=_numpy_or_none(sample.is_crowd),
            group_of=_numpy_or_none(sample.group_of),
            areas=_numpy_or_none(sample.areas),
            masks=_numpy_or_none(sample.masks),
            keypoints=_numpy_or_none(sample.keypoints),
            keypoint_visibilities=_numpy_or_none(sample.keypoint_visibilities),
            image_labels=positive,
            negative_image_labels=negative,
            neg_category_ids=_numpy_or_none(sample.neg_category_ids),
            not_exhaustive_category_ids=_numpy_or_none(sample.not_exhaustive_category_ids),
        )


@dataclass(frozen=True)
class HeadlineMetric:
    """The one metric of an evaluator that ranks models (e.g. picks the best checkpoint).

    Attributes:
        key: its name in ``evaluate()``'s result, e.g. ``'PascalBoxes_Precision/mAP@0.5IOU'``.
        higher_is_better: the direction of improvement (True for every AP and recall).
    """

    key: str
    higher_is_better: bool = True


@runtime_checkable
class DetectionEvaluator(Protocol):
    """What every metrics_set evaluator provides.

    ``add_ground_truth`` must come before ``add_detections`` for the same image; adding
    ground truth twice for one image id is an error. ``evaluate`` returns metric name ->
    value with the OD API's metric names; it may be called more than once.
    ``headline_metric`` names the entry of that dict that ranks models.
    """

    @property
    def headline_metric(self) -> HeadlineMetric: ...

    def add_ground_truth(self, image_id: str | int, ground_truth: GroundTruth) -> None: ...

    def add_detections(self, image_id: str | int, detections: Detections) -> None: ...

    def evaluate(self) -> dict[str, float]: ...

    def clear(self) -> None: ...


def check_categories(categories: Sequence[Category], owner: str) -> dict[int, str]:
    """Category id -> name, checking the OD API categories list has unique integer ids."""
    by_id: dict[int, str] = {}
    for category in categories:
        if "id" not in category or "name" not in category:
            raise DataError(f"{owner}: each category needs 'id' and 'name', got {category!r}")
        class_id = int(category["id"])
        if class_id in by_id:
            raise DataError(f"{owner}: category id {class_id} appears twice")
        by_id[class_id] = str(category["name"])
    return by_id


class UnknownClassDetections:
    """The detections an evaluator drops because their class id is not among its categories,
    counted per id.

    A model predicts such ids when its num_classes exceeds the label map's largest id (the
    OD API's Open Images sample configs: 546 or 601 classes for ids up to 545) or the label
    map has gaps (COCO: 90 classes, 80 categories). The OD API's evaluators drop them
    silently (COCO: ``coco_tools`` keeps only ids in ``category_id_set``; PASCAL and Open
    Images: the per-class loops never reach them), so objdet drops them too, for the same
    metrics, and says so in one warning per ``evaluate()``. Ground truth of an unknown class
    stays an error: that is a data error, not a model's guess.
    """

    def __init__(self, category_ids: Iterable[int]) -> None:
        self._category_ids = np.array(sorted({int(i) for i in category_ids}), dtype=np.int64)
        self.counts: dict[int, int] = {}

    def clear(self) -> None:
        self.counts = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def known(self, detections: Detections) -> Detections:
        """``detections`` without those of unknown class ids (which are counted)."""
        known = np.isin(detections.labels, self._category_ids)
        if known.all():
            return detections
        ids, counts = np.unique(detections.labels[~known], return_counts=True)
        for class_id, count in zip(ids.tolist(), counts.tolist(), strict=True):
            self.counts[class_id] = self.counts.get(class_id, 0) + count
        return detections.select(known)

    def warn(self, evaluator: str) -> None:
        """Log how many were dropped, of which ids (nothing when none were)."""
        if not self.counts:
            return
        logger.warning(
            "%s: dropped %d detections of class ids %s, which are not among the %d categories "
            "(ids %s); they are not evaluated, as in the OD API",
            evaluator, self.total, _some_ids(sorted(self.counts)), len(self._category_ids),
            _some_ids(self._category_ids.tolist()),
        )


def _some_ids(ids: list[int], limit: int = 20) -> str:
    """``[1, 2, 3]``, or the first ``limit`` ids and how many more."""
    if len(ids) <= limit:
        return str(ids)
    return f"{str(ids[:limit])[:-1]}, ... ({len(ids) - limit} more)]"
