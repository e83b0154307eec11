"""Scale-and-crop augmentations: EfficientDet's scale jitter (the OD API's
``random_scale_crop_and_pad_to_square``) and CenterNet's ``random_square_crop_by_scale``.

Scale jitter: the image is resized so its longer side is ``output_size * s`` (``s`` uniform in
``[scale_min, scale_max)``), a random ``output_size`` square window of it is kept (only
where it is larger) and the rest of the square is padded with zeros, top-left aligned.
Boxes follow; boxes completely outside the window are dropped with every per-object field,
the rest are clipped to it; keypoints outside it become NaN and invisible.
Boxes are ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) absolute pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F

from objdet.data.augment import (
    check_range,
    random_integer,
    require_image,
    select_objects,
    uniform,
    with_new_geometry,
)
from objdet.data.augment_crop import CropWindow, _crop_keypoints
from objdet.data.augment_geometric import _resize_masks
from objdet.structures.sample import Sample


@dataclass(frozen=True)
class RandomScaleCropAndPadToSquare:
    """Scale by a random factor, crop to and pad to an ``output_size`` square (see module)."""

    output_size: int = 512
    scale_min: float = 0.1
    scale_max: float = 2.0

    def __post_init__(self) -> None:
        check_range("scale_min", self.scale_min, "scale_max", self.scale_max)
        if self.scale_min <= 0 or self.output_size <= 0:
            raise ValueError(f"scale_min and output_size must be > 0, got {self.scale_min} "
                             f"and {self.output_size}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_scale_crop_and_pad_to_square")
        size = self.output_size
        scale = uniform(generator, self.scale_min, self.scale_max)
        longest = max(sample.height, sample.width)
        # int() truncates as the OD API's tf.cast(..., tf.int32) does
        scaled_height = max(1, int(scale * size * sample.height / longest))
        scaled_width = max(1, int(scale * size * sample.width / longest))
        top = int(max(0, scaled_height - size) * uniform(generator, 0.0, 1.0))
        left = int(max(0, scaled_width - size) * uniform(generator, 0.0, 1.0))
        resized = F.resize(image, [scaled_height, scaled_width], antialias=False)
        window = resized[:, top : top + size, left : left + size]
        canvas = resized.new_zeros((resized.shape[0], size, size))
        canvas[:, : window.shape[1], : window.shape[2]] = window

        factors = torch.tensor([scaled_width / sample.width, scaled_height / sample.height] * 2)
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        boxes = sample.boxes * factors - shift  # [N, 4] in the window's frame
        inside = (boxes[:, 0] < size) & (boxes[:, 1] < size) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        fields = select_objects(sample, inside)
        fields["boxes"] = boxes[inside].clamp(0, size)
        if fields["masks"] is not None:
            masks = _resize_masks(fields["masks"], scaled_height, scaled_width)
            cropped = masks[:, top : top + size, left : left + size]
            padded = masks.new_zeros((masks.shape[0], size, size))
            padded[:, : cropped.shape[1], : cropped.shape[2]] = cropped
            fields["masks"] = padded
        if fields["keypoints"] is not None:
            scaled = fields["keypoints"] * factors[:2]
            fields.update(_crop_keypoints(scaled, fields["keypoint_visibilities"],
                                          CropWindow(top, left, size, size), clip_boxes=True))
        if fields.get("areas") is not None:
            fields["areas"] = fields["areas"] * float(factors[0] * factors[1])
        return with_new_geometry(sample, canvas, **fields)


@dataclass(frozen=True)
class RandomSquareCropByScale:
    """CenterNet's square crop: the OD API's ``random_square_crop_by_scale``.

    The side ``S = int(s * max(H, W))`` takes ``s`` from ``num_scales`` values evenly spaced
    in ``[scale_min, scale_max]``; the square is centred on a random pixel at least a border
    away from the edges (the border is ``max_border // 2**k`` for the smallest ``k`` that
    keeps it under half the image side). Its part inside the image is copied to a zero
    ``S x S`` canvas, except the image's last row and column, as the OD API slices
    (``min(crop_max, size - 1)``). Boxes follow; those completely outside the square are
    dropped with every per-object field, the rest clipped to it; keypoints outside it become
    NaN and invisible.
    """

    max_border: int = 128
    scale_min: float = 0.6
    scale_max: float = 1.3
    num_scales: int = 8

    def __post_init__(self) -> None:
        check_range("scale_min", self.scale_min, "scale_max", self.scale_max)
        if self.scale_min <= 0 or self.num_scales < 1 or self.max_border < 1:
            raise ValueError(f"scale_min must be > 0, num_scales and max_border >= 1; got "
                             f"{self.scale_min}, {self.num_scales}, {self.max_border}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_square_crop_by_scale")
        height, width = sample.height, sample.width
        scales = torch.linspace(self.scale_min, self.scale_max, self.num_scales)  # float32, as tf
        scale = float(scales[random_integer(generator, 0, self.num_scales)])
        # the square's side S, truncated as tf.cast (at least 1 pixel: an image needs one)
        size = max(1, int(scale * max(height, width)))
        border_y, border_x = _crop_border(self.max_border, height), _crop_border(self.max_border, width)
        center_y = random_integer(generator, border_y, height - border_y + 1)
        center_x = random_integer(generator, border_x, width - border_x + 1)
        half = size // 2
        top, left = center_y - half, center_x - half  # the square's corner in image pixels
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(center_y + half, height - 1), min(center_x + half, width - 1)
        region = image[:, y0:y1, x0:x1]
        canvas = image.new_zeros((image.shape[0], size, size))
        canvas[:, y0 - top : y0 - top + region.shape[1], x0 - left : x0 - left + region.shape[2]] = region

        boxes = sample.boxes - torch.tensor([left, top, left, top], dtype=torch.float32)  # [N, 4]
        inside = (boxes[:, 0] < size) & (boxes[:, 1] < size) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        fields = select_objects(sample, inside)
        fields["boxes"] = boxes[inside].clamp(0, size)
        if fields["masks"] is not None:
            masks = fields["masks"]
            cropped = masks[:, y0:y1, x0:x1]
            padded = masks.new_zeros((masks.shape[0], size, size))
            padded[:, y0 - top : y0 - top + cropped.shape[1], x0 - left : x0 - left + cropped.shape[2]] = cropped
            fields["masks"] = padded
        if fields["keypoints"] is not None:
            fields.update(_crop_keypoints(fields["keypoints"], fields["keypoint_visibilities"],
                                          CropWindow(top, left, size, size), clip_boxes=True))
        return with_new_geometry(sample, canvas, **fields)


def _crop_border(border: int, size: int) -> int:
    """The OD API's ``_get_crop_border``: ``border // clip(2**ceil(log2(2 * border / size)),
    1, border)`` (float32 arithmetic)."""
    exponent = math.ceil(float(torch.log(torch.tensor(2.0 * border / size)) / torch.log(torch.tensor(2.0))))
    divisor = int(min(max(2.0 ** exponent, 1.0), float(border)))
    return border // divisor
