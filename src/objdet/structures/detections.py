"""``Detections``: one image's detections, in objdet's conventions.

Boxes are ``(x1, y1, x2, y2)`` absolute pixels of the image; class ids are label-map ids.
One type for every producer and consumer: a model's eval-mode output
(``from_model_output``), the detections batch inference stores with a record
(``from_sample``), the evaluators, the ``Predictor`` and what is written from it. Other
layouts exist only at the edges, as methods: the OD API's output tensors and tf.Example
features (``normalized_boxes``, ``to_outputs``: normalized ``(ymin, xmin, ymax, xmax)``)
and JSON (``to_json``).

Arrays are numpy, not torch, so that evaluation runs without importing torch
(``objdet eval-coco`` starts in a fraction of a second). Array-likes (lists, numpy arrays,
torch tensors on any device) are coerced to the documented dtypes and the invariants
checked on construction, raising ``DataError``; ``evaluation.base.GroundTruth`` uses the same
checks (``as_numpy``, ``checked_boxes``, ``checked_labels``, ``optional_per_item``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError
from objdet.structures.boxes import xyxy_to_normalized_yxyx_array

if TYPE_CHECKING:
    from objdet.structures.label_map import LabelMap
    from objdet.structures.sample import Sample

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
MaskArray = NDArray[np.uint8]


def as_numpy(value: Any) -> np.ndarray:
    """A numpy view of a list, numpy array or (any-device) torch tensor."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def checked_boxes(boxes: Any, owner: str) -> FloatArray:
    """``[N, 4]`` float64 (x1, y1, x2, y2): finite, not inverted (empty input -> ``[0, 4]``)."""
    array = as_numpy(boxes).astype(np.float64, copy=False)
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


def checked_labels(labels: Any, num_boxes: int, owner: str) -> IntArray:
    """``[N]`` int64 label-map ids; whole-number floats are accepted, others are errors."""
    array = as_numpy(labels).reshape(-1)
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


def optional_per_item(value: Any, dtype: type, what: str, expected_len: int, owner: str) -> Any:
    """Coerce an optional per-box field to ``dtype`` and check its first dimension."""
    if value is None:
        return None
    array: np.ndarray = as_numpy(value).astype(dtype, copy=False)
    if array.ndim == 0 or array.shape[0] != expected_len:
        raise DataError(
            f"{owner}: {what} must have first dimension {expected_len}, "
            f"got shape {tuple(array.shape)}"
        )
    return array


@dataclass
class Detections:
    """The detections of one image (a ``Predictor`` returns them sorted by score).

    Attributes:
        boxes: ``[D, 4]`` float64 (x1, y1, x2, y2), absolute pixels.
        scores: ``[D]`` float64 confidences (finite; NaN is an error).
        labels: ``[D]`` int64 label-map ids.
        masks: ``[D, H, W]`` uint8 0/1 instance masks, optional.
        keypoints: ``[D, K, 2]`` float64 (x, y) pixels, optional.
        keypoint_scores: ``[D, K]`` float64, optional.
        image_size: ``(height, width)`` in pixels of the image the boxes are in; needed
            only for the normalized layouts (``normalized_boxes``, ``to_outputs``, JSON).
        box_masks: ``[D, mask_height, mask_width]`` float32 mask probabilities over each
            box (Mask R-CNN's, before they are pasted into the image: the OD API's exported
            ``detection_masks``), optional.
    """

    boxes: FloatArray
    scores: FloatArray
    labels: IntArray
    masks: MaskArray | None = None
    keypoints: FloatArray | None = None
    keypoint_scores: FloatArray | None = None
    image_size: tuple[int, int] | None = None
    box_masks: NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        owner = "detections"
        self.boxes = checked_boxes(self.boxes, owner)
        count = self.boxes.shape[0]
        self.labels = checked_labels(self.labels, count, owner)
        scores = as_numpy(self.scores).reshape(-1).astype(np.float64)
        if scores.shape[0] != count:
            raise DataError(f"{owner}: {count} boxes but {scores.shape[0]} scores")
        if not np.isfinite(scores).all():
            row = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise DataError(f"{owner}: score {row} is {scores[row]}, expected a finite number")
        self.scores = scores
        self.masks = optional_per_item(self.masks, np.uint8, "masks", count, owner)
        self.keypoints = optional_per_item(self.keypoints, np.float64, "keypoints", count, owner)
        self.keypoint_scores = optional_per_item(
            self.keypoint_scores, np.float64, "keypoint_scores", count, owner
        )
        self.box_masks = optional_per_item(self.box_masks, np.float32, "box_masks", count, owner)
        if self.image_size is not None:
            height, width = (int(v) for v in self.image_size)
            if height <= 0 or width <= 0:
                raise DataError(f"{owner}: image_size must be positive, got {height}x{width}")
            self.image_size = (height, width)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: NDArray[np.bool_]) -> Detections:
        """The detections where ``keep [D]`` is True, every field alike."""
        return Detections(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            labels=self.labels[keep],
            masks=None if self.masks is None else self.masks[keep],
            keypoints=None if self.keypoints is None else self.keypoints[keep],
            keypoint_scores=None if self.keypoint_scores is None else self.keypoint_scores[keep],
            image_size=self.image_size,
            box_masks=None if self.box_masks is None else self.box_masks[keep],
        )

    def above(self, min_score: float) -> Detections:
        """Only the detections with ``score >= min_score``."""
        return self.select(self.scores >= min_score)

    def class_names(self, label_map: LabelMap | None) -> list[str]:
        """Each detection's display name (else name); ``'class <id>'`` for unknown ids."""
        names = []
        for class_id in self.labels.tolist():
            if label_map is not None and class_id in label_map:
                names.append(label_map.item(class_id).label)
            else:
                names.append(f"class {class_id}")
        return names

    # -- edge layouts ---------------------------------------------------------------------

    def normalized_boxes(self) -> NDArray[np.float32]:
        """``[D, 4]`` float32 normalized (ymin, xmin, ymax, xmax): the OD API's layout."""
        height, width = self._size("normalized boxes")
        return xyxy_to_normalized_yxyx_array(self.boxes, height, width)

    def to_outputs(self, max_detections: int) -> dict[str, np.ndarray]:
        """The OD API's output tensors (batch 1, zero-padded to ``max_detections`` rows):
        the four box outputs, then ``detection_masks [1, max, mask_h, mask_w]`` (from
        ``box_masks``), ``detection_keypoints [1, max, K, 2]`` (normalized y, x) and
        ``detection_keypoint_scores [1, max, K]`` where the detections have them."""
        count = min(len(self), max_detections)

        def padded(values: np.ndarray, *shape: int) -> np.ndarray:
            rows = np.zeros((1, max_detections, *shape), np.float32)  # [1, max, ...]
            rows[0, :count] = values[:count]
            return rows

        outputs = {
            "detection_boxes": padded(self.normalized_boxes(), 4),
            "detection_scores": padded(self.scores),
            "detection_classes": padded(self.labels),
            "num_detections": np.array([count], np.float32),
        }
        if self.box_masks is not None:
            outputs["detection_masks"] = padded(self.box_masks, *self.box_masks.shape[1:])
        if self.keypoints is not None:
            height, width = self._size("normalized keypoints")
            normalized = self.keypoints[..., ::-1] / np.array([height, width])  # [D, K, 2] (y, x)
            outputs["detection_keypoints"] = padded(normalized, *normalized.shape[1:])
            if self.keypoint_scores is not None:
                outputs["detection_keypoint_scores"] = padded(self.keypoint_scores,
                                                              self.keypoint_scores.shape[1])
        return outputs

    def to_json(self, label_map: LabelMap | None = None) -> dict[str, Any]:
        """Plain JSON types: image size, and per detection both box layouts, score, class."""
        height, width = self._size("JSON")
        normalized = self.normalized_boxes()
        names = self.class_names(label_map)
        return {
            "image_height": height,
            "image_width": width,
            "num_detections": len(self),
            "detections": [
                {
                    "box_normalized_yxyx": [round(float(v), 6) for v in normalized[i]],
                    "box_xyxy": [round(float(v), 3) for v in self.boxes[i]],
                    "score": round(float(self.scores[i]), 6),
                    "class": int(self.labels[i]),
                    "class_name": names[i],
                }
                for i in range(len(self))
            ],
        }

    def _size(self, what: str) -> tuple[int, int]:
        if self.image_size is None:
            raise DataError(f"detections: {what} need the image size, and image_size is not set")
        return self.image_size

    # -- construction from the other layouts -----------------------------------------------

    @classmethod
    def from_model_output(
        cls, output: Mapping[str, Any], image_size: tuple[int, int] | None = None
    ) -> Detections:
        """Detections from one image's eval-mode model output (torchvision's contract).

        ``output`` holds ``boxes [D, 4]``, ``scores [D]``, ``labels [D]`` and optionally
        ``masks`` (``[D, 1, H, W]`` float probabilities are thresholded at 0.5),
        ``keypoints`` (``[D, K, 3]`` (x, y, visibility) keeps (x, y)) and
        ``keypoints_scores``.
        """
        missing = [key for key in ("boxes", "scores", "labels") if key not in output]
        if missing:
            raise DataError(f"model output lacks {missing}; it has {sorted(output)}")
        masks = output.get("masks")
        if masks is not None:
            masks = as_numpy(masks)
            if masks.ndim == 4 and masks.shape[1] == 1:
                masks = masks[:, 0]
            if np.issubdtype(masks.dtype, np.floating):
                masks = (masks >= 0.5).astype(np.uint8)
        keypoints = output.get("keypoints")
        if keypoints is not None:
            keypoints = as_numpy(keypoints)[..., :2]
        return cls(
            boxes=as_numpy(output["boxes"]),
            scores=as_numpy(output["scores"]),
            labels=as_numpy(output["labels"]),
            masks=masks,
            keypoints=keypoints,
            keypoint_scores=output.get("keypoints_scores"),
            image_size=image_size,
        )

    @classmethod
    def from_sample(cls, sample: Sample) -> Detections:
        """The detections stored with an image (``detection_*`` fields, batch inference)."""
        if sample.detection_boxes is None or sample.detection_scores is None:
            raise DataError(
                f"image {sample.source_id or sample.filename!r} has no detection_boxes/"
                "detection_scores (image/detection/* fields); run batch inference first"
            )
        if sample.detection_labels is None:
            labels = np.ones(int(sample.detection_boxes.shape[0]), dtype=np.int64)
        else:
            labels = as_numpy(sample.detection_labels)
        return cls(
            boxes=as_numpy(sample.detection_boxes),
            scores=as_numpy(sample.detection_scores),
            labels=labels,
            image_size=(sample.height, sample.width),
        )
