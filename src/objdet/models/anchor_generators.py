"""Anchor generators: the OD API's ``ssd_anchor_generator`` and ``multiscale_anchor_generator``.

Both return anchors as ``Tensor[A, 4]`` (x1, y1, x2, y2) in absolute pixels of the batch
canvas (the resized, padded input the feature extractor sees). Anchors are ordered like the
box predictor's outputs: feature map by feature map, then row (y), column (x), and the
anchors of one location innermost. The OD API works in normalized coordinates; the box
coder and IoU are invariant to that scaling, so pixels change no result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

BoxSpec = tuple[float, float]  # (scale, aspect_ratio); aspect ratio = width / height


def tile_anchors(
    grid_height: int,
    grid_width: int,
    heights: Tensor,
    widths: Tensor,
    stride: tuple[float, float],
    offset: tuple[float, float],
) -> Tensor:
    """Anchors of sizes ``heights``/``widths`` ``[K]`` centred on a grid -> ``[H*W*K, 4]``.

    Centres are ``offset + index * stride`` (y, x), in whatever unit stride/offset use.
    """
    y_centers = torch.arange(grid_height, dtype=torch.float64) * stride[0] + offset[0]
    x_centers = torch.arange(grid_width, dtype=torch.float64) * stride[1] + offset[1]
    y_grid, x_grid = torch.meshgrid(y_centers, x_centers, indexing="ij")  # [H, W]
    y_grid = y_grid[:, :, None]  # [H, W, 1]
    x_grid = x_grid[:, :, None]
    half_heights = heights.double()[None, None, :] / 2  # [1, 1, K]
    half_widths = widths.double()[None, None, :] / 2
    corners = torch.stack(
        [x_grid - half_widths, y_grid - half_heights, x_grid + half_widths, y_grid + half_heights],
        dim=-1,
    )  # [H, W, K, 4]
    return corners.reshape(-1, 4)


def create_ssd_box_specs(
    *,
    num_layers: int,
    min_scale: float,
    max_scale: float,
    scales: Sequence[float] = (),
    aspect_ratios: Sequence[float],
    interpolated_scale_aspect_ratio: float = 1.0,
    reduce_boxes_in_lowest_layer: bool = True,
) -> list[list[BoxSpec]]:
    """The OD API's ``create_ssd_anchors`` box specs: per layer, a list of (scale, ratio).

    Scales run linearly from ``min_scale`` to ``max_scale`` over the layers (or are given),
    followed by 1.0; each layer also gets a box of scale ``sqrt(s_i * s_{i+1})`` with ratio
    ``interpolated_scale_aspect_ratio`` (when > 0). The lowest layer may be reduced to
    ``(0.1, 1.0), (s_0, 2.0), (s_0, 0.5)``.
    """
    if scales:
        layer_scales = list(scales) + [1.0]
    elif num_layers == 1:
        layer_scales = [min_scale, 1.0]
    else:
        step = (max_scale - min_scale) / (num_layers - 1)
        layer_scales = [min_scale + step * index for index in range(num_layers)] + [1.0]
    specs: list[list[BoxSpec]] = []
    for layer in range(num_layers):
        scale, next_scale = layer_scales[layer], layer_scales[layer + 1]
        if layer == 0 and reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        layer_specs = [(scale, ratio) for ratio in aspect_ratios]
        if interpolated_scale_aspect_ratio > 0.0:
            layer_specs.append((math.sqrt(scale * next_scale), interpolated_scale_aspect_ratio))
        specs.append(layer_specs)
    return specs


class SSDAnchorGenerator(nn.Module):
    """The OD API's ``MultipleGridAnchorGenerator`` (what ``ssd_anchor_generator`` builds).

    ``box_specs[layer]`` lists (scale, aspect_ratio) per location. Sizes are relative to the
    shorter image side times ``base_anchor_size`` (height, width), so anchors stay square in
    pixels on non-square images. ``strides``/``offsets`` are per-layer (y, x) pixels; by
    default a layer of ``h x w`` cells gets stride ``image / (h, w)`` and offset half a stride.
    """

    def __init__(
        self,
        *,
        box_specs: list[list[BoxSpec]],
        base_anchor_size: tuple[float, float] = (1.0, 1.0),
        strides: list[tuple[float, float]] | None = None,
        offsets: list[tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        for name, values in (("strides", strides), ("offsets", offsets)):
            if values is not None and len(values) != len(box_specs):
                raise ValueError(f"{name} has {len(values)} entries for {len(box_specs)} layers")
        self.box_specs = box_specs
        self.base_anchor_size = base_anchor_size
        self.strides = strides
        self.offsets = offsets

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature-map cell, one entry per layer."""
        return [len(specs) for specs in self.box_specs]

    def forward(
        self, feature_map_sizes: Sequence[tuple[int, int]], image_height: int, image_width: int
    ) -> Tensor:
        """``[(h, w)]`` per layer + canvas size -> ``[A, 4]`` (x1, y1, x2, y2) pixels (float32)."""
        if len(feature_map_sizes) != len(self.box_specs):
            raise ValueError(
                f"{len(feature_map_sizes)} feature maps for {len(self.box_specs)} anchor layers"
            )
        shorter_side = min(image_height, image_width)
        base_height = self.base_anchor_size[0] * shorter_side
        base_width = self.base_anchor_size[1] * shorter_side
        layers = []
        for layer, (grid_height, grid_width) in enumerate(feature_map_sizes):
            scales = torch.tensor([spec[0] for spec in self.box_specs[layer]], dtype=torch.float64)
            ratios = torch.tensor([spec[1] for spec in self.box_specs[layer]], dtype=torch.float64)
            heights = scales / ratios.sqrt() * base_height
            widths = scales * ratios.sqrt() * base_width
            stride = (image_height / grid_height, image_width / grid_width)
            if self.strides is not None:
                stride = self.strides[layer]
            offset = (stride[0] / 2, stride[1] / 2)
            if self.offsets is not None:
                offset = self.offsets[layer]
            layers.append(tile_anchors(grid_height, grid_width, heights, widths, stride, offset))
        return torch.cat(layers).float()


class MultiscaleAnchorGenerator(nn.Module):
    """RetinaNet-style anchors (the OD API's ``MultiscaleGridAnchorGenerator``).

    Level ``l`` in ``min_level..max_level`` has stride ``2**l`` and base size
    ``anchor_scale * 2**l``; each location gets, for every aspect ratio, the scales
    ``2**(i / scales_per_octave)`` (aspect ratio outer, scale inner, as the OD API orders
    them). The offset is half a stride when the image size is divisible by the stride.
    """

    def __init__(
        self,
        *,
        min_level: int,
        max_level: int,
        anchor_scale: float,
        aspect_ratios: Sequence[float],
        scales_per_octave: int,
    ) -> None:
        super().__init__()
        if max_level < min_level:
            raise ValueError(f"max_level {max_level} < min_level {min_level}")
        self.levels = list(range(min_level, max_level + 1))
        self.anchor_scale = anchor_scale
        octave_scales = [2 ** (index / scales_per_octave) for index in range(scales_per_octave)]
        self.specs = [(scale, ratio) for ratio in aspect_ratios for scale in octave_scales]

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature-map cell, one entry per level."""
        return [len(self.specs)] * len(self.levels)

    def forward(
        self, feature_map_sizes: Sequence[tuple[int, int]], image_height: int, image_width: int
    ) -> Tensor:
        """``[(h, w)]`` per level + canvas size -> ``[A, 4]`` (x1, y1, x2, y2) pixels (float32)."""
        if len(feature_map_sizes) != len(self.levels):
            raise ValueError(f"{len(feature_map_sizes)} feature maps for levels {self.levels}")
        scales = torch.tensor([spec[0] for spec in self.specs], dtype=torch.float64)
        ratios = torch.tensor([spec[1] for spec in self.specs], dtype=torch.float64)
        layers = []
        for level, (grid_height, grid_width) in zip(self.levels, feature_map_sizes):
            stride = float(2**level)
            base_size = self.anchor_scale * stride
            offset_y = stride / 2 if image_height % stride == 0 else 0.0
            offset_x = stride / 2 if image_width % stride == 0 else 0.0
            heights = scales / ratios.sqrt() * base_size
            widths = scales * ratios.sqrt() * base_size
            layers.append(
                tile_anchors(
                    grid_height, grid_width, heights, widths, (stride, stride), (offset_y, offset_x)
                )
            )
        return torch.cat(layers).float()
