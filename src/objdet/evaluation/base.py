"""The evaluator interface shared by every metrics_set, and the per-image inputs it takes.

An evaluator is fed one image at a time::

    evaluator.add_ground_truth(image_id, GroundTruth.from_sample(sample))
    evaluator.add_detections(image_id, ImageDetections.from_model_output(output))
    metrics = evaluator.evaluate()   # {'PascalBoxes_Precision/mAP@0.5IOU': 0.71, ...}

Inputs are numpy arrays in objdet's box convention: ``(x1, y1, x2, y2)`` float64 absolute
pixels, class ids are label-map ids. Both dataclasses coerce array-likes (lists, torch
tensors) to the documented dtypes and check their own invariants, raising ``DataError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError

if TYPE_CHECKING:
    from objdet.structures.sample import Sample

# The OD API's categories list: [{'id': 1, 'name': 'cat'}, ...] (LabelMap.categories()).
Category = Mapping[str, Any]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
MaskArray = NDArray[np.uint8]


def _to_numpy(value: Any) -> np.ndarray:
    """A numpy view of a list, numpy array or (any-device) torch tensor."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _numpy_or_none(value: Any) -> Any:
    return None if value is None else _to_numpy(value)


def _optional(value: Any, dtype: type, what: str, expected_len: int, owner: str) -> Any:
    """Coerce an optional per-object field and check its first dimension."""
    if value is None:
        return None
    array: np.ndarray = _to_numpy(value).astype(dtype, copy=False)
    if array.ndim == 0 or array.shape[0] != expected_len:
        raise DataError(
            f"{owner}: {what} must have first dimension {expected_len}, "
            f"got shape {tuple(array.shape)}"
        )
    return array


def _check_boxes(boxes: Any, owner: str) -> FloatArray:
    array = _to_numpy(boxes).astype(np.float64, copy=False)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise DataError(f"{owner}: boxes must be [N, 4] (x1, y1, x2, y2), got {array.shape}")
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise DataError(f"{owner}: box {row} has a non-finite coordinate: {array[row].tolist()}")
    inverted = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if inverted.any():
        row = int(np.flatnonzero(inverted)[0])
        raise DataError(
            f"{owner}: box {row} is inverted (expected x1 <= x2 and y1 <= y2 in "
            f"(x1, y1, x2, y2) pixels), got {array[row].tolist()}"
        )
    return array


def _check_labels(labels: Any, num_boxes: int, owner: str) -> IntArray:
    array = _to_numpy(labels).reshape(-1)
    if (
        array.size
        and not np.issubdtype(array.dtype, np.integer)
        and not np.all(np.equal(np.mod(array, 1), 0))
    ):
        raise DataError(f"{owner}: labels must be integer label-map ids, got {array[:5]}")
    array = array.astype(np.int64, copy=False)
    if array.shape[0] != num_boxes:
        raise DataError(f"{owner}: {num_boxes} boxes but {array.shape[0]} labels")
    return array


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
        self.boxes = _check_boxes(self.boxes, owner)
        count = self.boxes.shape[0]
        self.labels = _check_labels(self.labels, count, owner)
        self.difficult = _optional(self.difficult, np.bool_, "difficult", count, owner)
        self.is_crowd = _optional(self.is_crowd, np.bool_, "is_crowd", count, owner)
        self.group_of = _optional(self.group_of, np.bool_, "group_of", count, owner)
        self.areas = _optional(self.areas, np.float64, "areas", count, owner)
        self.masks = _optional(self.masks, np.uint8, "masks", count, owner)
        self.keypoints = _optional(self.keypoints, np.float64, "keypoints", count, owner)
        self.keypoint_visibilities = _optional(
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
                setattr(self, name, _to_numpy(value).reshape(-1).astype(np.int64))

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
            image_labels = _to_numpy(sample.image_labels).reshape(-1).astype(np.int64)
            if sample.image_label_confidences is None:
                positive = image_labels
            else:
                confidences = _to_numpy(sample.image_label_confidences).reshape(-1)
                positive = image_labels[confidences >= 0.5]
                negative = image_labels[confidences < 0.5]
        return cls(
            boxes=_to_numpy(sample.boxes),
            labels=_to_numpy(sample.labels),
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


@dataclass
class ImageDetections:
    """The detections of one image.

    Attributes:
        boxes: ``[M, 4]`` float64 (x1, y1, x2, y2), absolute pixels.
        scores: ``[M]`` float64 confidences (finite; NaN is an error).
        labels: ``[M]`` int64 label-map ids.
        masks: ``[M, H, W]`` uint8 0/1 instance masks.
        keypoints: ``[M, K, 2]`` float64 (x, y) pixels.
        keypoint_scores: ``[M, K]`` float64, optional.
    """

    boxes: FloatArray
    scores: FloatArray
    labels: IntArray
    masks: MaskArray | None = None
    keypoints: FloatArray | None = None
    keypoint_scores: FloatArray | None = None

    def __post_init__(self) -> None:
        owner = "detections"
        self.boxes = _check_boxes(self.boxes, owner)
        count = self.boxes.shape[0]
        self.labels = _check_labels(self.labels, count, owner)
        scores = _to_numpy(self.scores).reshape(-1).astype(np.float64)
        if scores.shape[0] != count:
            raise DataError(f"{owner}: {count} boxes but {scores.shape[0]} scores")
        if not np.isfinite(scores).all():
            row = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise DataError(f"{owner}: score {row} is {scores[row]}, expected a finite number")
        self.scores = scores
        self.masks = _optional(self.masks, np.uint8, "masks", count, owner)
        self.keypoints = _optional(self.keypoints, np.float64, "keypoints", count, owner)
        self.keypoint_scores = _optional(
            self.keypoint_scores, np.float64, "keypoint_scores", count, owner
        )

    @property
    def num_detections(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def from_model_output(cls, output: Mapping[str, Any]) -> ImageDetections:
        """Detections from one image's eval-mode model output (torchvision's contract).

        ``output`` holds ``boxes [M, 4]``, ``scores [M]``, ``labels [M]`` and optionally
        ``masks`` (``[M, 1, H, W]`` float probabilities are thresholded at 0.5) and
        ``keypoints`` (``[M, K, 3]`` (x, y, visibility) keeps (x, y)).
        """
        missing = [key for key in ("boxes", "scores", "labels") if key not in output]
        if missing:
            raise DataError(f"model output lacks {missing}; it has {sorted(output)}")
        masks = output.get("masks")
        if masks is not None:
            masks = _to_numpy(masks)
            if masks.ndim == 4 and masks.shape[1] == 1:
                masks = masks[:, 0]
            if np.issubdtype(masks.dtype, np.floating):
                masks = (masks >= 0.5).astype(np.uint8)
        keypoints = output.get("keypoints")
        if keypoints is not None:
            keypoints = _to_numpy(keypoints)[..., :2]
        return cls(
            boxes=_to_numpy(output["boxes"]),
            scores=_to_numpy(output["scores"]),
            labels=_to_numpy(output["labels"]),
            masks=masks,
            keypoints=keypoints,
            keypoint_scores=output.get("keypoints_scores"),
        )

    @classmethod
    def from_sample(cls, sample: Sample) -> ImageDetections:
        """The detections stored with an image (``detection_*`` fields, batch inference)."""
        if sample.detection_boxes is None or sample.detection_scores is None:
            raise DataError(
                f"image {sample.source_id or sample.filename!r} has no detection_boxes/"
                "detection_scores (image/detection/* fields); run batch inference first"
            )
        if sample.detection_labels is None:
            labels = np.ones(int(sample.detection_boxes.shape[0]), dtype=np.int64)
        else:
            labels = _to_numpy(sample.detection_labels)
        return cls(
            boxes=_to_numpy(sample.detection_boxes),
            scores=_to_numpy(sample.detection_scores),
            labels=labels,
        )


@runtime_checkable
class DetectionEvaluator(Protocol):
    """What every metrics_set evaluator provides.

    ``add_ground_truth`` must come before ``add_detections`` for the same image; adding
    ground truth twice for one image id is an error. ``evaluate`` returns metric name ->
    value with the OD API's metric names; it may be called more than once.
    """

    def add_ground_truth(self, image_id: str | int, ground_truth: GroundTruth) -> None: ...

    def add_detections(self, image_id: str | int, detections: ImageDetections) -> None: ...

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
