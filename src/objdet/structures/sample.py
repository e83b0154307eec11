"""``Sample``: one image and its annotations, in objdet's internal conventions."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


def _empty_boxes() -> Tensor:
    return torch.zeros((0, 4), dtype=torch.float32)


def _empty_ids() -> Tensor:
    return torch.zeros((0,), dtype=torch.int64)


@dataclass
class Sample:
    """One image and its annotations.

    Per-object fields are tensors whose first dimension is the number of objects N.
    Optional per-object fields are ``None`` when the source does not have them.

    Attributes:
        height, width: image size in pixels.
        boxes: ``Tensor[N, 4]`` float32 (x1, y1, x2, y2), absolute pixels.
        labels: ``Tensor[N]`` int64 label-map ids (1..num_classes).
        image: ``Tensor[3, H, W]`` uint8 RGB, or None when not decoded.
        encoded_image: the image file's bytes (JPEG/PNG), or None.
        image_format: 'jpeg' or 'png' (tf.Example image/format).
        filename, source_id, key: tf.Example image/filename, image/source_id, image/key/sha256.
        label_texts: class/text of each object, when the source names classes.
        difficult, is_crowd, group_of: ``Tensor[N]`` bool flags.
        weights: ``Tensor[N]`` float32 per-object loss weights.
        areas: ``Tensor[N]`` float32 object areas (pixels), when the source gives them.
        masks: ``Tensor[N, H, W]`` uint8 instance masks (0/1).
        keypoints: ``Tensor[N, K, 2]`` float32 (x, y) absolute pixels; NaN where unknown.
        keypoint_visibilities: ``Tensor[N, K]`` bool.
        image_labels: ``Tensor[L]`` int64 image-level label ids (Open Images verified labels).
        image_label_confidences: ``Tensor[L]`` float32 (1 = present, 0 = verified absent).
        neg_category_ids, not_exhaustive_category_ids: ``Tensor[*]`` int64 (LVIS/federated).
        detection_boxes/scores/labels: detections stored with the image (batch inference).
    """

    height: int
    width: int
    boxes: Tensor = field(default_factory=_empty_boxes)
    labels: Tensor = field(default_factory=_empty_ids)
    image: Tensor | None = None
    encoded_image: bytes | None = None
    image_format: str = "jpeg"
    filename: str = ""
    source_id: str = ""
    key: str = ""
    label_texts: list[str] | None = None
    difficult: Tensor | None = None
    is_crowd: Tensor | None = None
    group_of: Tensor | None = None
    weights: Tensor | None = None
    areas: Tensor | None = None
    masks: Tensor | None = None
    keypoints: Tensor | None = None
    keypoint_visibilities: Tensor | None = None
    image_labels: Tensor | None = None
    image_label_confidences: Tensor | None = None
    neg_category_ids: Tensor | None = None
    not_exhaustive_category_ids: Tensor | None = None
    detection_boxes: Tensor | None = None
    detection_scores: Tensor | None = None
    detection_labels: Tensor | None = None

    @property
    def num_objects(self) -> int:
        return int(self.boxes.shape[0])

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be [N, 4], got {tuple(self.boxes.shape)}")
        if self.labels.shape != (self.boxes.shape[0],):
            raise ValueError(
                f"labels must be [N] with N={self.boxes.shape[0]} boxes, "
                f"got {tuple(self.labels.shape)}"
            )
