"""CenterNet's training targets as the OD API's ``CenterNetCenterHeatmapTargetAssigner``
(adaptive Gaussian) and ``CenterNetBoxTargetAssigner`` compute them.

Ground-truth boxes arrive in canvas pixels ``(x1, y1, x2, y2)``; the OD API holds them
normalized to the canvas and multiplies by the output size ``max(canvas // stride, 1)``
(``to_absolute_coordinates``), so that is the frame used here ("output pixels").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def max_distance_for_overlap(height: Tensor, width: Tensor, min_iou: float) -> Tensor:
    """How far a box's corners may move keeping IoU >= ``min_iou`` (CenterNet's
    ``gaussian_radius``, the OD API's version: the smallest of three roots, each taken as
    ``(-b + sqrt(b^2 - 4ac)) / 2`` -- the OD API divides by 2, not 2a)."""

    def root(a: float | Tensor, b: Tensor, c: Tensor) -> Tensor:
        return (-b + torch.sqrt(b**2 - 4 * a * c)) / 2.0

    detection_offset = root(1.0, -(height + width),
                            width * height * ((1 - min_iou) / (1 + min_iou)))
    detection_in_gt = root(4.0, -2 * (height + width), (1 - min_iou) * width * height)
    gt_in_detection = root(4 * min_iou, (2 * min_iou) * (width + height),
                           (min_iou - 1) * width * height)
    return torch.minimum(torch.minimum(detection_offset, gt_in_detection), detection_in_gt)


def gaussian_sigma(height: Tensor, width: Tensor, min_iou: float) -> Tensor:
    """``(2 * max(floor(radius), 0) + 1) / 6`` per box ``[N]``."""
    radius = max_distance_for_overlap(height, width, min_iou)
    return (2 * torch.clamp(torch.floor(radius), min=0.0) + 1) / 6.0


@dataclass
class OutputFrameBoxes:
    """One image's boxes in output pixels: centers and sizes ``[N]`` each."""

    y_center: Tensor
    x_center: Tensor
    height: Tensor
    width: Tensor


def to_output_frame(boxes: Tensor, canvas_size: tuple[int, int], stride: int) -> OutputFrameBoxes:
    """Canvas-pixel boxes ``[N, 4]`` (x1, y1, x2, y2) -> centers and sizes in output pixels."""
    canvas_height, canvas_width = canvas_size
    out_height, out_width = max(canvas_height // stride, 1), max(canvas_width // stride, 1)
    ymin, ymax = boxes[:, 1] / canvas_height * out_height, boxes[:, 3] / canvas_height * out_height
    xmin, xmax = boxes[:, 0] / canvas_width * out_width, boxes[:, 2] / canvas_width * out_width
    return OutputFrameBoxes(y_center=(ymin + ymax) / 2, x_center=(xmin + xmax) / 2,
                            height=ymax - ymin, width=xmax - xmin)


def center_heatmap(boxes: OutputFrameBoxes, classes: Tensor, weights: Tensor, *,
                   num_classes: int, out_size: tuple[int, int], min_iou: float) -> Tensor:
    """``[out_h, out_w, num_classes]``: per class, the max over its boxes of a Gaussian at the
    floored center (sigma from :func:`gaussian_sigma`) times the box weight; 0 elsewhere.

    ``classes`` ``[N]`` 0-based class indices, ``weights`` ``[N]``."""
    out_height, out_width = out_size
    device, dtype = weights.device, weights.dtype
    heatmap = torch.zeros(out_height, out_width, num_classes, device=device, dtype=dtype)
    if classes.numel() == 0:
        return heatmap
    sigma = gaussian_sigma(boxes.height, boxes.width, min_iou)  # [N]
    y_grid = torch.arange(out_height, device=device, dtype=dtype).view(-1, 1, 1)
    x_grid = torch.arange(out_width, device=device, dtype=dtype).view(1, -1, 1)
    squared = ((x_grid - torch.floor(boxes.x_center)) ** 2
               + (y_grid - torch.floor(boxes.y_center)) ** 2)  # [out_h, out_w, N]
    gaussian = torch.exp(-squared / (2 * sigma * sigma)) * weights  # [out_h, out_w, N]
    for class_index in torch.unique(classes).tolist():
        members = classes == class_index
        heatmap[:, :, class_index] = gaussian[:, :, members].amax(dim=2)
    return heatmap.clamp(min=0.0)


def floor_offsets(boxes: OutputFrameBoxes) -> tuple[Tensor, Tensor]:
    """(``indices [N, 2]`` (y, x) int64 floored centers, ``offsets [N, 2]`` center - floor)."""
    y_floor, x_floor = torch.floor(boxes.y_center), torch.floor(boxes.x_center)
    indices = torch.stack([y_floor, x_floor], dim=1).long()
    offsets = torch.stack([boxes.y_center - y_floor, boxes.x_center - x_floor], dim=1)
    return indices, offsets


def valid_output_mask(resized_sizes: list[tuple[int, int]], out_size: tuple[int, int],
                      stride: int, device: torch.device) -> Tensor:
    """``[B, out_h * out_w, 1]`` 1 where the output pixel lies in ``ceil(resized / stride)``
    (the OD API's ``get_valid_anchor_weights_in_flattened_image``), else 0."""
    out_height, out_width = out_size
    rows = torch.arange(out_height, device=device).view(1, -1, 1)
    columns = torch.arange(out_width, device=device).view(1, 1, -1)
    limits = torch.tensor([[-(-height // stride), -(-width // stride)]
                           for height, width in resized_sizes], device=device)
    valid = (rows < limits[:, 0].view(-1, 1, 1)) & (columns < limits[:, 1].view(-1, 1, 1))
    return valid.reshape(len(resized_sizes), -1, 1).float()


__all__ = ["OutputFrameBoxes", "center_heatmap", "floor_offsets", "gaussian_sigma",
           "max_distance_for_overlap", "to_output_frame", "valid_output_mask"]
