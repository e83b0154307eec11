"""The OD API's ``grid_anchor_generator`` (Faster R-CNN's first stage).

One feature map; at each location ``len(scales) * len(aspect_ratios)`` anchors of height
``scale / sqrt(ratio) * base_height`` and width ``scale * sqrt(ratio) * base_width``, centred
on ``offset + index * stride`` (canvas pixels: unlike the SSD generators these are absolute,
and the offset defaults to 0, not half a stride). Order: row (y), column (x), then the
location's anchors aspect-ratio major, scale minor (the OD API's ``meshgrid(scales,
aspect_ratios)`` flattened).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from objdet.models.anchor_generators import tile_anchors


class GridAnchorGenerator:
    """``__call__([(H_f, W_f)], H, W) -> anchors [H_f * W_f * K, 4]`` (x1, y1, x2, y2) in
    canvas pixels; the image size is not used (anchors are absolute)."""

    def __init__(
        self,
        *,
        scales: Sequence[float] = (0.5, 1.0, 2.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        base_anchor_size: tuple[float, float] = (256.0, 256.0),
        stride: tuple[float, float] = (16.0, 16.0),
        offset: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        if not scales or not aspect_ratios:
            raise ValueError("scales and aspect_ratios must not be empty")
        if min(aspect_ratios) <= 0 or min(scales) <= 0:
            raise ValueError(f"scales and aspect_ratios must be > 0, got {list(scales)} and "
                             f"{list(aspect_ratios)}")
        self.scales, self.aspect_ratios = list(scales), list(aspect_ratios)
        self.base_anchor_size, self.stride, self.offset = base_anchor_size, stride, offset

    def num_anchors_per_location(self) -> list[int]:
        return [len(self.scales) * len(self.aspect_ratios)]

    def __call__(
        self, feature_map_sizes: list[tuple[int, int]], image_height: int, image_width: int
    ) -> Tensor:
        if len(feature_map_sizes) != 1:
            raise ValueError(f"grid anchors are for one feature map, got {len(feature_map_sizes)}")
        heights, widths = [], []
        for ratio in self.aspect_ratios:  # aspect-ratio major, scale minor
            for scale in self.scales:
                heights.append(scale / math.sqrt(ratio) * self.base_anchor_size[0])
                widths.append(scale * math.sqrt(ratio) * self.base_anchor_size[1])
        grid_height, grid_width = feature_map_sizes[0]
        anchors = tile_anchors(grid_height, grid_width, torch.tensor(heights, dtype=torch.float64),
                               torch.tensor(widths, dtype=torch.float64), self.stride, self.offset)
        return anchors.float()
