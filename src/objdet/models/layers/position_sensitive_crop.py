"""R-FCN's position-sensitive crop-and-pool, as the OD API's
``ops.batch_position_sensitive_crop_regions(..., global_pool=True)``.

Each box is split into a ``bins_y x bins_x`` grid. Bin ``(i, j)`` (row-major index ``b``)
is cropped only from the ``b``-th contiguous group of ``C / (bins_y * bins_x)`` channels, to
``crop_size / num_spatial_bins`` with :func:`~objdet.models.layers.crop_and_resize.crop_and_resize`
(the OD API's sampling), and mean-pooled; the bins' means are then averaged. The result holds
one value per channel of a group: for the class map, one logit per class.
"""

from __future__ import annotations

import torch
from torch import Tensor

from objdet.models.layers.crop_and_resize import crop_and_resize


def bin_crop_size(crop_size: tuple[int, int], num_spatial_bins: tuple[int, int]) -> tuple[int, int]:
    """The crop of one bin; ValueError unless ``crop_size`` is a multiple of the bins, as the
    OD API requires."""
    if crop_size[0] % num_spatial_bins[0] or crop_size[1] % num_spatial_bins[1]:
        raise ValueError(f"crop size {list(crop_size)} is not divisible by the number of spatial "
                         f"bins {list(num_spatial_bins)}")
    return crop_size[0] // num_spatial_bins[0], crop_size[1] // num_spatial_bins[1]


def position_sensitive_crop_and_pool(features: Tensor, boxes: Tensor, crop_size: tuple[int, int],
                                     num_spatial_bins: tuple[int, int]) -> Tensor:
    """``features [B, bins * D, H_f, W_f]``, ``boxes [B, N, 4]`` (x1, y1, x2, y2, fractions of
    the canvas) -> ``[B * N, D]`` (image-major)."""
    bins_y, bins_x = num_spatial_bins
    total_bins = bins_y * bins_x
    channels = int(features.shape[1])
    if channels % total_bins:
        raise ValueError(f"{channels} channels cannot be split into {total_bins} bins")
    depth = channels // total_bins
    crop = bin_crop_size(crop_size, num_spatial_bins)
    x1, y1, x2, y2 = boxes.unbind(-1)  # [B, N] each
    step_x, step_y = (x2 - x1) / bins_x, (y2 - y1) / bins_y
    pooled = []
    for bin_y in range(bins_y):
        for bin_x in range(bins_x):
            index = bin_y * bins_x + bin_x
            sub_boxes = torch.stack([x1 + bin_x * step_x, y1 + bin_y * step_y,
                                     x1 + (bin_x + 1) * step_x, y1 + (bin_y + 1) * step_y],
                                    dim=-1)  # [B, N, 4]
            group = features[:, index * depth:(index + 1) * depth]
            pooled.append(crop_and_resize(group, sub_boxes, crop).mean(dim=(2, 3)))  # [B*N, D]
    return torch.stack(pooled).sum(dim=0) / total_bins
