"""The OD API's crop-and-resize of proposals from a feature map (Faster R-CNN's second-stage
input), as ``tf.image.crop_and_resize`` / ``spatial_transform_ops.matmul_crop_and_resize``
sample it.

A box ``(x1, y1, x2, y2)`` in fractions of the *canvas* maps to feature coordinates
``x * (W_f - 1)``; a ``crop x crop`` grid samples ``x1 + j / (crop - 1) * (x2 - x1)`` (the box
centre when ``crop == 1``), bilinearly, each of the four neighbours outside the map counting
as 0 (the matmul op; ``tf.image.crop_and_resize`` zeroes a whole sample outside the map,
which is the same for boxes inside the image, as proposals are).

Why not ``torchvision.ops.roi_align``: its bins sample ``start + (i + 0.5) * bin`` with the
RoI size clamped to >= 1 feature pixel (``aligned=False``), so boxes under ~1 feature pixel
(16 image pixels) are sampled elsewhere. ``grid_sample(align_corners=True,
padding_mode="zeros")`` is exactly this sampling: its normalized ``-1..1`` is the box fraction
``0..1`` scaled by ``W_f - 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def crop_and_resize(features: Tensor, boxes: Tensor, crop_size: int | tuple[int, int], *,
                    zero_outside_samples: bool = False) -> Tensor:
    """``features [B, C, H_f, W_f]``, ``boxes [B, N, 4]`` (x1, y1, x2, y2, fractions of the
    canvas) -> crops ``[B * N, C, crop_height, crop_width]`` (image-major); ``crop_size`` is
    one side or (height, width). ``zero_outside_samples``: as ``tf.image.crop_and_resize``
    (the OD API without ``use_matmul_crop_and_resize``), a sample whose float32 position
    ``x1 * (W_f - 1) + j * (x2 - x1) * (W_f - 1) / (crop - 1)`` falls past the map is 0 as a
    whole: for a box ending on the canvas edge that sum can round to ``W_f - 1 + ulp``."""
    batch, num_boxes = boxes.shape[0], boxes.shape[1]  # symbolic under export: any batch
    crop_height, crop_width = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    x1, y1, x2, y2 = boxes.unbind(-1)  # [B, N] each
    xs = x1[..., None] + _steps(crop_width, boxes) * (x2 - x1)[..., None]  # [B, N, crop_w]
    ys = y1[..., None] + _steps(crop_height, boxes) * (y2 - y1)[..., None]  # [B, N, crop_h]
    grid = torch.stack(
        [xs[:, :, None, :].expand(-1, -1, crop_height, -1),
         ys[:, :, :, None].expand(-1, -1, -1, crop_width)], dim=-1,
    )  # [B, N, crop_h (y), crop_w (x), 2] as (x, y)
    grid = grid.reshape(batch, num_boxes * crop_height, crop_width, 2) * 2.0 - 1.0
    crops = F.grid_sample(features, grid.to(features.dtype), mode="bilinear",
                          padding_mode="zeros", align_corners=True)  # [B, C, N * crop_h, crop_w]
    channels = int(features.shape[1])
    crops = crops.reshape(batch, channels, num_boxes, crop_height, crop_width)
    crops = crops.transpose(1, 2).reshape(batch * num_boxes, channels, crop_height, crop_width)
    if not zero_outside_samples:
        return crops
    inside = (_inside_map(y1, y2, int(features.shape[2]), crop_height)[..., :, None]
              & _inside_map(x1, x2, int(features.shape[3]), crop_width)[..., None, :])  # [B, N, h, w]
    return crops * inside.reshape(batch * num_boxes, 1, crop_height, crop_width).to(crops.dtype)


def _inside_map(start: Tensor, end: Tensor, size: int, crop: int) -> Tensor:
    """Box sides ``[B, N]`` (fractions) -> bool ``[B, N, crop]``: whether each sample lies in
    ``[0, size - 1]`` as the CPU kernel of ``tf.image.crop_and_resize`` computes it."""
    if crop == 1:
        positions = (0.5 * (start + end) * (size - 1))[..., None]
    else:
        scale = (end - start) * (size - 1) / (crop - 1)  # [B, N]
        steps = torch.arange(crop, dtype=start.dtype, device=start.device)
        positions = (start * (size - 1))[..., None] + steps * scale[..., None]
    return (positions >= 0) & (positions <= size - 1)


def _steps(size: int, boxes: Tensor) -> Tensor:
    """Sample fractions along a box side: ``0 .. 1`` in ``size`` steps (the centre for 1)."""
    if size == 1:
        return boxes.new_full((1,), 0.5)
    return torch.linspace(0.0, 1.0, size, dtype=boxes.dtype, device=boxes.device)


def crop_and_pool(features: Tensor, boxes: Tensor, crop_size: int, pool_kernel: int,
                  pool_stride: int, *, zero_outside_samples: bool = False) -> Tensor:
    """:func:`crop_and_resize`, then a 'VALID' max-pool (the OD API's ``MaxPool2D`` layer):
    ``[B * N, C, (crop - kernel) // stride + 1, same]``."""
    crops = crop_and_resize(features, boxes, crop_size, zero_outside_samples=zero_outside_samples)
    return F.max_pool2d(crops, pool_kernel, pool_stride)
