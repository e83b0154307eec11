"""Box layout conversions. Call them in readers and writers, never in the middle.

Internal layout: ``Tensor[N, 4]`` float32 ``(x1, y1, x2, y2)``, absolute pixels.
Edge layouts: tf.Example and exported outputs use normalized ``(ymin, xmin, ymax, xmax)``;
COCO uses absolute ``(x, y, w, h)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalized_yxyx_to_xyxy(boxes: Tensor, height: int, width: int) -> Tensor:
    """``[N, 4]`` normalized (ymin, xmin, ymax, xmax) -> ``[N, 4]`` absolute (x1, y1, x2, y2)."""
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    ymin, xmin, ymax, xmax = boxes.unbind(dim=1)
    return torch.stack([xmin * width, ymin * height, xmax * width, ymax * height], dim=1).float()


def xyxy_to_normalized_yxyx(boxes: Tensor, height: int, width: int) -> Tensor:
    """``[N, 4]`` absolute (x1, y1, x2, y2) -> ``[N, 4]`` normalized (ymin, xmin, ymax, xmax)."""
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([y1 / height, x1 / width, y2 / height, x2 / width], dim=1).float()


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[N, 4]`` COCO (x, y, w, h) -> ``[N, 4]`` (x1, y1, x2, y2), same units."""
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    x, y, w, h = boxes.unbind(dim=1)
    return torch.stack([x, y, x + w, y + h], dim=1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[N, 4]`` (x1, y1, x2, y2) -> ``[N, 4]`` COCO (x, y, w, h), same units."""
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=1)
