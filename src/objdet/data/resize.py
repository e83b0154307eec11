"""The model's image resizer, applied in the input pipeline.

As in the OD API (whose inputs.py runs the model's ``preprocess`` inside the tf.data
pipeline), training images are resized by the data loader workers, so the main process
receives small ``[3, h, w]`` images and the model's own resize becomes a no-op. The
resize is the model's (``objdet.models.image_resizers.resize_image`` on float images), so a
resized image is exactly what the model would have computed itself, bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
from torch.nn import functional as F

from objdet.models.image_resizers import resize_image
from objdet.structures.sample import Sample


class Resizer(Protocol):
    interpolation: str

    def output_size(self, height: int, width: int) -> tuple[int, int]: ...


def resize_sample(sample: Sample, resizer: Resizer) -> Sample:
    """``sample`` resized to ``resizer.output_size``: image (float [0, 1]), boxes, masks,
    keypoints and areas scaled alike. A sample already at that size is returned as is."""
    if sample.image is None:
        raise ValueError("resize_sample needs a decoded image")
    height, width = resizer.output_size(sample.height, sample.width)
    if (height, width) == (sample.height, sample.width):
        return sample
    # one float copy in one pass (the largest image of the pipeline: a crop of a padded canvas)
    image = (
        sample.image.div(255.0) if sample.image.dtype == torch.uint8 else sample.image.float()
    )
    image = resize_image(image, (height, width), resizer.interpolation)
    scale_y, scale_x = height / sample.height, width / sample.width
    changes: dict[str, object] = {
        "image": image,  # not clamped: bicubic overshoot is what the model sees too
        "height": height,
        "width": width,
        "boxes": sample.boxes * torch.tensor([scale_x, scale_y, scale_x, scale_y]),
    }
    if sample.masks is not None and sample.masks.numel():
        changes["masks"] = F.interpolate(
            sample.masks[None].float(), size=(height, width), mode="nearest"
        )[0].to(sample.masks.dtype)
    if sample.keypoints is not None:
        changes["keypoints"] = sample.keypoints * torch.tensor([scale_x, scale_y])
    if sample.areas is not None:
        changes["areas"] = sample.areas * (scale_x * scale_y)
    return dataclasses.replace(sample, **changes)  # type: ignore[arg-type]
