"""Box layout conversions. Call them in readers and writers, never in the middle.

Internal layout: ``Tensor[N, 4]`` float32 ``(x1, y1, x2, y2)``, absolute pixels.
Edge layouts: tf.Example and exported outputs use normalized ``(ymin, xmin, ymax, xmax)``;
COCO uses absolute ``(x, y, w, h)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def _as_float64(boxes: Any) -> np.ndarray:
    if isinstance(boxes, Tensor):
        boxes = boxes.detach().cpu().numpy()
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


# The two edge conversions run once per decoded record: numpy keeps them ~6x cheaper than a
# chain of small torch ops. Arithmetic is float64, the result float32.
def normalized_yxyx_to_xyxy(boxes: Any, height: int, width: int) -> Tensor:
    """``[N, 4]`` normalized (ymin, xmin, ymax, xmax) -> ``[N, 4]`` absolute (x1, y1, x2, y2)."""
    array = _as_float64(boxes)[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float64)
    return torch.from_numpy(array.astype(np.float32))


def xyxy_to_normalized_yxyx(boxes: Any, height: int, width: int) -> Tensor:
    """``[N, 4]`` absolute (x1, y1, x2, y2) -> ``[N, 4]`` normalized (ymin, xmin, ymax, xmax)."""
    array = _as_float64(boxes)[:, [1, 0, 3, 2]] / np.array([height, width, height, width], np.float64)
    return torch.from_numpy(array.astype(np.float32))


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
