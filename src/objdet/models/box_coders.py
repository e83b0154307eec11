"""The OD API's ``faster_rcnn_box_coder``: boxes relative to anchors, scaled.

Codes are ``[ty, tx, th, tw]`` (the OD API's order, so converted TF checkpoints keep their
meaning): ``ty = scale_y * (yc - yc_a) / h_a``, ``th = scale_h * log(h / h_a)``, and so on.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keeps log() and divisions finite for degenerate (zero-size) boxes, as the OD API does.
_EPSILON = 1e-8


def _centers_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``[..., 4]`` (x1, y1, x2, y2) -> y centre, x centre, height, width, each ``[...]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return (y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1


class FasterRcnnBoxCoder:
    """Encode boxes against anchors and decode them back. ``code_size`` is 4."""

    code_size = 4

    def __init__(
        self,
        *,
        y_scale: float = 10.0,
        x_scale: float = 10.0,
        height_scale: float = 5.0,
        width_scale: float = 5.0,
    ) -> None:
        for name, value in (
            ("y_scale", y_scale),
            ("x_scale", x_scale),
            ("height_scale", height_scale),
            ("width_scale", width_scale),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.scales = (y_scale, x_scale, height_scale, width_scale)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """``boxes``, ``anchors`` ``[..., 4]`` (x1, y1, x2, y2), same units -> codes ``[..., 4]``."""
        y_center_a, x_center_a, height_a, width_a = _centers_and_sizes(anchors)
        y_center, x_center, height, width = _centers_and_sizes(boxes)
        height_a, width_a = height_a + _EPSILON, width_a + _EPSILON
        height, width = height + _EPSILON, width + _EPSILON
        y_scale, x_scale, height_scale, width_scale = self.scales
        return torch.stack(
            [
                y_scale * (y_center - y_center_a) / height_a,
                x_scale * (x_center - x_center_a) / width_a,
                height_scale * torch.log(height / height_a),
                width_scale * torch.log(width / width_a),
            ],
            dim=-1,
        )

    def decode(self, codes: Tensor, anchors: Tensor) -> Tensor:
        """Codes ``[..., 4]`` + anchors ``[..., 4]`` -> boxes ``[..., 4]`` (x1, y1, x2, y2)."""
        y_center_a, x_center_a, height_a, width_a = _centers_and_sizes(anchors)
        y_scale, x_scale, height_scale, width_scale = self.scales
        ty, tx, th, tw = codes.unbind(-1)
        height = torch.exp(th / height_scale) * height_a
        width = torch.exp(tw / width_scale) * width_a
        y_center = ty / y_scale * height_a + y_center_a
        x_center = tx / x_scale * width_a + x_center_a
        return torch.stack(
            [
                x_center - width / 2,
                y_center - height / 2,
                x_center + width / 2,
                y_center + height / 2,
            ],
            dim=-1,
        )
