"""Faster R-CNN on a feature pyramid (Lin et al. 2017), as the OD API's ``FasterRCNNMetaArch``
runs it with an FPN extractor (``faster_rcnn_resnet{50,101,152}_fpn_keras``):

- anchors: ``multiscale_anchor_generator`` levels, one per pyramid map, every level's grid
  offset by half its stride (:class:`FirstStageMultiscaleAnchors`);
- the RPN runs on every level (one shared first conv, one box/objectness head per level);
- each proposal is cropped from one level, chosen by its size (:func:`fpn_box_levels`), with
  the single-map crop's sampling (:func:`multilevel_crop_and_pool`).

Between the stages the pyramid travels as one tensor ``[B, C, sum_l h_l * w_l]`` (levels
finest first, each flattened row-major; :func:`pack_pyramid` / :func:`unpack_pyramid`), so
the stages' interface -- ``features`` in ``predict_first_stage``'s output, the joint between
the exported stages -- stays one tensor whatever the extractor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from objdet.models.anchor_generators import MultiscaleAnchorGenerator
from objdet.models.layers.crop_and_resize import crop_and_resize

# ``fpn_feature_levels``' pretraining image size: a box of sqrt(area) 224 on a 224x224
# canvas goes to level index ``num_levels - 2``.
PRETRAINING_IMAGE_SIZE = 224.0


class FirstStageMultiscaleAnchors:
    """``__call__(sizes, H, W) -> [A, 4]`` (x1, y1, x2, y2) canvas pixels: the OD API's
    ``MultiscaleGridAnchorGenerator`` as Faster R-CNN calls it -- without the image size,
    so every level's grid starts half a stride in (SSD passes the size, and a level whose
    stride does not divide it starts at 0)."""

    def __init__(self, generator: MultiscaleAnchorGenerator) -> None:
        self.generator = generator
        self.levels = list(generator.levels)

    def num_anchors_per_location(self) -> list[int]:
        return self.generator.num_anchors_per_location()

    def __call__(self, feature_map_sizes: list[tuple[int, int]], image_height: int,
                 image_width: int) -> Tensor:
        # A size every level's stride divides gives every level the half-stride offset.
        multiple = 2 ** self.levels[-1]
        return self.generator(feature_map_sizes, multiple, multiple)


def pack_pyramid(maps: Sequence[Tensor]) -> Tensor:
    """Maps ``[B, C, h_l, w_l]`` (finest first) -> ``[B, C, sum_l h_l * w_l]``."""
    return torch.cat([level.flatten(2) for level in maps], dim=2)


def unpack_pyramid(packed: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """:func:`pack_pyramid`'s inverse: ``[B, C, N]`` and each level's ``(h, w)`` -> maps."""
    total = sum(height * width for height, width in sizes)
    if packed.dim() != 3 or int(packed.shape[2]) != total:
        raise ValueError(f"packed pyramid of shape {tuple(packed.shape)} does not hold levels "
                         f"{list(sizes)} ({total} positions)")
    maps, start = [], 0
    for height, width in sizes:
        maps.append(packed[:, :, start:start + height * width].unflatten(2, (height, width)))
        start += height * width
    return maps


def fpn_box_levels(boxes: Tensor, canvas_size: tuple[int, int], num_levels: int) -> Tensor:
    """The OD API's ``ops.fpn_feature_levels(num_levels, num_levels - 2, sqrt(H * W) / 224,
    boxes)``: boxes ``[B, N, 4]`` (x1, y1, x2, y2) fractions of the canvas -> pyramid level
    index ``[B, N]`` int64 in ``0..num_levels - 1``: ``floor(log2(sqrt(box area in pixels) /
    224)) + num_levels - 2``, clamped (empty padding boxes go to level 0)."""
    height, width = canvas_size
    image_ratio = torch.tensor(float(height * width), dtype=boxes.dtype).sqrt() / (
        PRETRAINING_IMAGE_SIZE)
    sides = boxes[..., 2:4] - boxes[..., 0:2]  # [B, N, 2]
    areas_sqrt = sides.prod(dim=-1).sqrt()  # [B, N]
    log_2 = torch.tensor(math.log(2.0), dtype=boxes.dtype)  # rounded as TF's float32 log(2)
    levels = torch.floor(torch.log(areas_sqrt * image_ratio.to(boxes.device)) / log_2.to(
        boxes.device)) + (num_levels - 2)
    return levels.clamp(0, num_levels - 1).long()


def multilevel_crop_and_pool(maps: Sequence[Tensor], boxes: Tensor, levels: Tensor,
                             crop_size: int, pool_kernel: int, pool_stride: int, *,
                             zero_outside_samples: bool = False) -> Tensor:
    """Maps ``[B, C, h_l, w_l]``, boxes ``[B, N, 4]`` (x1, y1, x2, y2 fractions of the
    canvas), ``levels [B, N]`` -> ``[B * N, C, k, k]``: each box cropped from its level as
    :func:`~objdet.models.layers.crop_and_resize.crop_and_resize` samples one map (the OD API's
    ``multilevel_roi_align`` maps a box on level ``l`` to ``x * (w_l - 1)`` too), then the
    'VALID' max-pool. Every level crops every box and the box's own level is kept: static
    shapes, as the OD API's multilevel native crop."""
    selected = levels.reshape(-1, 1, 1, 1)  # [B * N, 1, 1, 1]
    crops: Tensor | None = None
    for index, level_map in enumerate(maps):
        level_crops = crop_and_resize(level_map, boxes, crop_size,  # [B * N, C, crop, crop]
                                      zero_outside_samples=zero_outside_samples)
        crops = level_crops if crops is None else torch.where(selected == index, level_crops,
                                                              crops)
    if crops is None:
        raise ValueError("multilevel_crop_and_pool needs at least one map")
    return F.max_pool2d(crops, pool_kernel, pool_stride)
