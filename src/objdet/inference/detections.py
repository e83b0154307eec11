"""``ImageDetections``: one image's detections in both objdet's and the OD API's layouts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from objdet.structures.label_map import LabelMap


@dataclass
class ImageDetections:
    """Detections of one image, sorted by score (highest first).

    Attributes:
        boxes: ``float32 [D, 4]`` (x1, y1, x2, y2) absolute pixels of the input image.
        normalized_boxes: ``float32 [D, 4]`` (ymin, xmin, ymax, xmax) in [0, 1] (OD API).
        scores: ``float32 [D]``.
        classes: ``int64 [D]`` label-map ids.
        class_names: the label map's display name (else name) per detection.
        image_height, image_width: input image size in pixels.
    """

    boxes: np.ndarray
    normalized_boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_names: list[str]
    image_height: int
    image_width: int

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def above(self, min_score: float) -> ImageDetections:
        """Only the detections with ``score >= min_score``."""
        keep = self.scores >= min_score
        return ImageDetections(
            self.boxes[keep], self.normalized_boxes[keep], self.scores[keep], self.classes[keep],
            [name for name, kept in zip(self.class_names, keep) if kept],
            self.image_height, self.image_width,
        )

    def to_outputs(self, max_detections: int) -> dict[str, np.ndarray]:
        """The OD API's output tensors (batch 1, zero-padded to ``max_detections`` rows)."""
        count = min(len(self), max_detections)
        boxes = np.zeros((1, max_detections, 4), np.float32)
        scores = np.zeros((1, max_detections), np.float32)
        classes = np.zeros((1, max_detections), np.float32)
        boxes[0, :count] = self.normalized_boxes[:count]
        scores[0, :count] = self.scores[:count]
        classes[0, :count] = self.classes[:count]
        return {
            "detection_boxes": boxes,
            "detection_scores": scores,
            "detection_classes": classes,
            "num_detections": np.array([count], np.float32),
        }

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types: image size, and per detection both box layouts, score, class."""
        return {
            "image_height": self.image_height,
            "image_width": self.image_width,
            "num_detections": len(self),
            "detections": [
                {
                    "box_normalized_yxyx": [round(float(v), 6) for v in self.normalized_boxes[i]],
                    "box_xyxy": [round(float(v), 3) for v in self.boxes[i]],
                    "score": round(float(self.scores[i]), 6),
                    "class": int(self.classes[i]),
                    "class_name": self.class_names[i],
                }
                for i in range(len(self))
            ],
        }


def class_names_for(classes: np.ndarray, label_map: LabelMap | None) -> list[str]:
    """Display name (else name) of each id; ``'class <id>'`` for ids the label map lacks."""
    names = []
    for class_id in classes.tolist():
        if label_map is not None and class_id in label_map:
            names.append(label_map.item(class_id).label)
        else:
            names.append(f"class {class_id}")
    return names
