"""EfficientDet's scale jitter: the OD API's ``random_scale_crop_and_pad_to_square``.

The image is resized so its longer side is ``output_size * s`` (``s`` uniform in
``[scale_min, scale_max)``), a random ``output_size`` square window of it is kept (only
where it is larger) and the rest of the square is padded with zeros, top-left aligned.
Boxes follow; boxes completely outside the window are dropped with every per-object field,
the rest are clipped to it; keypoints outside it become NaN and invisible.
Boxes are ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) absolute pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F

from objdet.data.augment import (
    check_range,
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
