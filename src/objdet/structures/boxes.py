"""Box layout conversions. Call them in readers and writers, never in the middle.

Internal layout: ``Tensor[N, 4]`` float32 ``(x1, y1, x2, y2)``, absolute pixels.
Edge layouts: tf.Example and exported outputs use normalized ``(ymin, xmin, ymax, xmax)``;
COCO uses absolute ``(x, y, w, h)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from torch import Tensor

# torch is imported inside the Tensor functions: the numpy ones (``*_array``) serve code
# that runs without torch (evaluation, ``structures.detections``).


def _as_float64(boxes: Any) -> np.ndarray:
    if hasattr(boxes, "detach"):  # torch.Tensor
        boxes = boxes.detach().cpu().numpy()
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


# The two edge conversions run once per decoded record: numpy keeps them ~6x cheaper than a
# chain of small torch ops. Arithmetic is float64, the result float32.
def normalized_yxyx_to_xyxy(boxes: Any, height: int, width: int) -> Tensor:
    """``[N, 4]`` normalized (ymin, xmin, ymax, xmax) -> ``[N, 4]`` absolute (x1, y1, x2, y2)."""
    import torch

    array = _as_float64(boxes)[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float64)
    return torch.from_numpy(array.astype(np.float32))


def xyxy_to_normalized_yxyx(boxes: Any, height: int, width: int) -> Tensor:
    """``[N, 4]`` absolute (x1, y1, x2, y2) -> ``[N, 4]`` normalized (ymin, xmin, ymax, xmax)."""
    import torch

    return torch.from_numpy(xyxy_to_normalized_yxyx_array(boxes, height, width))


def xyxy_to_normalized_yxyx_array(boxes: Any, height: int, width: int) -> NDArray[np.float32]:
    """``xyxy_to_normalized_yxyx`` returning a numpy float32 ``[N, 4]`` array."""
    array = _as_float64(boxes)[:, [1, 0, 3, 2]] / np.array([height, width, height, width], np.float64)
    return array.astype(np.float32)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[N, 4]`` COCO (x, y, w, h) -> ``[N, 4]`` (x1, y1, x2, y2), same units."""
    import torch

    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    x, y, w, h = boxes.unbind(dim=1)
    return torch.stack([x, y, x + w, y + h], dim=1)


def xyxy_to_xywh_array(boxes: Any) -> NDArray[np.float64]:
    """``xyxy_to_xywh`` for numpy: ``[N, 4]`` (x1, y1, x2, y2) -> float64 COCO (x, y, w, h)."""
    array = _as_float64(boxes)
    return np.concatenate([array[:, :2], array[:, 2:] - array[:, :2]], axis=1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[N, 4]`` (x1, y1, x2, y2) -> ``[N, 4]`` COCO (x, y, w, h), same units."""
    import torch

    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=1)
