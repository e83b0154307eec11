"""Random crops of the OD API: ``random_crop_image`` and ``ssd_random_crop``.

A crop window is sampled the way ``tf.image.sample_distorted_bounding_box`` does (area and
aspect-ratio ranges, up to 100 attempts, a minimum fraction of some object covered, the whole
image when no attempt succeeds). Objects are then filtered as in the OD API's
``_strict_random_crop_image``:

1. boxes completely outside the window are pruned;
2. boxes whose overlap with the window, as a fraction of the box's own area (IoA), is below
   ``overlap_thresh`` are dropped;
3. the rest move into the window's frame and, when ``clip_boxes``, are clipped to it
   (keypoints outside the window become NaN and invisible).

Every per-object field (labels, flags, weights, masks, keypoints, ...) follows the same
selection. Boxes are ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) absolute pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from objdet.data.augment import (
    check_probability,
    check_range,
    random_integer,
    require_image,
    select_objects,
    uniform,
    with_new_geometry,
)
from objdet.structures.sample import Sample

MAX_CROP_ATTEMPTS = 100  # the OD API passes max_attempts=100 to sample_distorted_bounding_box


@dataclass(frozen=True)
class CropWindow:
    """A window in pixels: rows ``top : top + height``, columns ``left : left + width``."""

    top: int
    left: int
    height: int
    width: int


def _crop_size(
    image_height: int,
    image_width: int,
    area_range: tuple[float, float],
    aspect_ratio: float,
    generator: torch.Generator,
) -> tuple[int, int] | None:
    """(height, width) of a crop with the given aspect ratio (width / height) and an area in
    ``area_range`` (fractions of the image area), or None when rounding makes it impossible."""
    min_area = area_range[0] * image_height * image_width
    max_area = area_range[1] * image_height * image_width
    height = round(math.sqrt(min_area / aspect_ratio))
    max_height = round(math.sqrt(max_area / aspect_ratio))
    if round(max_height * aspect_ratio) > image_width:
        # the tallest height whose rounded width still fits the image
        max_height = int((image_width + 0.5 - 1e-7) / aspect_ratio)
    max_height = min(max_height, image_height)
    height = min(height, max_height)
    if height < max_height:
        height += random_integer(generator, 0, max_height - height + 1)
    width = round(height * aspect_ratio)
    # Nudge by one row when rounding pushed the area just outside the allowed range.
    if width * height < min_area:
        height += 1
        width = round(height * aspect_ratio)
    if width * height > max_area:
        height -= 1
        width = round(height * aspect_ratio)
    area = width * height
    if not (
        min_area <= area <= max_area and 0 < width <= image_width and 0 < height <= image_height
    ):
        return None
    return height, width


def _covers_some_object(
    window: CropWindow, boxes: list[list[float]], min_object_covered: float
) -> bool:
    """True when the window covers at least ``min_object_covered`` of some box's area.

    ``boxes`` are (x1, y1, x2, y2) lists: a handful per image, where tensor ops cost ~0.3 ms
    per call in overhead (measured; this runs for every crop attempt in the loader workers).
    """
    right, bottom = window.left + window.width, window.top + window.height
    for x1, y1, x2, y2 in boxes:
        area = (x2 - x1) * (y2 - y1)
        if area <= 0:  # zero-area boxes never satisfy the constraint (as in TensorFlow)
            continue
        overlap_width = max(min(x2, right) - max(x1, window.left), 0.0)
        overlap_height = max(min(y2, bottom) - max(y1, window.top), 0.0)
        if overlap_width * overlap_height / area >= min_object_covered:
            return True
    return False


def sample_crop_window(
    image_height: int,
    image_width: int,
    boxes: Tensor,
    *,
    min_object_covered: float,
    aspect_ratio_range: tuple[float, float],
    area_range: tuple[float, float],
    generator: torch.Generator,
) -> CropWindow:
    """A random crop window like ``tf.image.sample_distorted_bounding_box``.

    Args:
        boxes: ``Tensor[N, 4]`` (x1, y1, x2, y2) pixels; with N = 0 the whole image stands in.
        min_object_covered: the window must cover this fraction of at least one box.
        aspect_ratio_range: (min, max) of width / height.
        area_range: (min, max) of the window area as a fraction of the image area.

    Returns the whole image when no window satisfying the constraints is found.
    """
    limits = torch.tensor(
        [image_width, image_height, image_width, image_height], dtype=torch.float32
    )
    boxes = torch.minimum(boxes.float().clamp(min=0), limits)
    if boxes.shape[0] == 0:
        boxes = limits.new_tensor([[0.0, 0.0, image_width, image_height]])
    box_list = boxes.tolist()
    for _ in range(MAX_CROP_ATTEMPTS):
        aspect_ratio = uniform(generator, *aspect_ratio_range)
        size = _crop_size(image_height, image_width, area_range, aspect_ratio, generator)
        if size is None:
            continue
        height, width = size
        top = random_integer(generator, 0, image_height - height) if height < image_height else 0
        left = random_integer(generator, 0, image_width - width) if width < image_width else 0
        window = CropWindow(top, left, height, width)
        if _covers_some_object(window, box_list, min_object_covered):
            return window
    return CropWindow(0, 0, image_height, image_width)


def crop_to_window(
    sample: Sample, window: CropWindow, *, overlap_thresh: float, clip_boxes: bool
) -> Sample:
    """Crop ``sample`` to ``window`` and filter its objects as the OD API does (module doc)."""
    image = require_image(sample, "random_crop_image")
    right, bottom = window.left + window.width, window.top + window.height
    boxes = sample.boxes
    outside = (
        (boxes[:, 0] >= right)
        | (boxes[:, 1] >= bottom)
        | (boxes[:, 2] <= window.left)
        | (boxes[:, 3] <= window.top)
    )
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    overlap_width = (boxes[:, 2].clamp(max=right) - boxes[:, 0].clamp(min=window.left)).clamp(min=0)
    overlap_height = (boxes[:, 3].clamp(max=bottom) - boxes[:, 1].clamp(min=window.top)).clamp(
        min=0
    )
    # IoA of the box with the window; a degenerate box counts as fully inside when not outside.
    ioa = torch.where(areas > 0, overlap_width * overlap_height / areas.clamp(min=1e-12), 1.0)
    keep = ~outside & (ioa >= overlap_thresh)
    fields = select_objects(sample, keep)
    shift = torch.tensor([window.left, window.top, window.left, window.top], dtype=torch.float32)
    new_boxes = fields["boxes"] - shift
    if clip_boxes:
        limits = torch.tensor(
            [window.width, window.height, window.width, window.height], dtype=torch.float32
        )
        new_boxes = torch.minimum(new_boxes.clamp(min=0), limits)
    fields["boxes"] = new_boxes
    if fields["masks"] is not None:
        fields["masks"] = fields["masks"][:, window.top : bottom, window.left : right]
    if fields["keypoints"] is not None:
        fields.update(
            _crop_keypoints(
                fields["keypoints"], fields["keypoint_visibilities"], window, clip_boxes
            )
        )
    cropped_image = image[:, window.top : bottom, window.left : right]
    return with_new_geometry(sample, cropped_image, **fields)


def _crop_keypoints(
    keypoints: Tensor, visibilities: Tensor | None, window: CropWindow, clip_boxes: bool
) -> dict[str, Tensor | None]:
    """Keypoints ``[N, K, 2]`` in the window's frame; outside ones -> NaN/invisible if clipping."""
    moved = keypoints - keypoints.new_tensor([window.left, window.top])
    if not clip_boxes:
        return {"keypoints": moved, "keypoint_visibilities": visibilities}
    x, y = moved.unbind(dim=-1)
    inside = (x >= 0) & (x <= window.width) & (y >= 0) & (y <= window.height)  # NaN -> False
    moved = torch.where(inside[..., None], moved, torch.full_like(moved, float("nan")))
    if visibilities is not None:
        visibilities = visibilities & inside
    return {"keypoints": moved, "keypoint_visibilities": visibilities}


@dataclass(frozen=True)
class RandomCropImage:
    """OD API ``random_crop_image``: crop with probability ``1 - random_coef``.

    Args:
        min_object_covered: fraction of some box the window must cover.
        aspect_ratio_range: (min, max) window width / height.
        area_range: (min, max) window area / image area.
        overlap_thresh: minimum IoA (box area inside the window / box area) to keep a box.
        clip_boxes: clip kept boxes to the window.
        random_coef: chance of returning the sample unchanged.
    """

    min_object_covered: float = 1.0
    aspect_ratio_range: tuple[float, float] = (0.75, 1.33)
    area_range: tuple[float, float] = (0.1, 1.0)
    overlap_thresh: float = 0.3
    clip_boxes: bool = True
    random_coef: float = 0.0

    def __post_init__(self) -> None:
        check_probability("min_object_covered", self.min_object_covered)
        check_probability("random_coef", self.random_coef)
        check_range(
            "min_aspect_ratio",
            self.aspect_ratio_range[0],
            "max_aspect_ratio",
            self.aspect_ratio_range[1],
        )
        check_range("min_area", self.area_range[0], "max_area", self.area_range[1])
        if self.aspect_ratio_range[0] <= 0:
            raise ValueError(f"min_aspect_ratio must be > 0, got {self.aspect_ratio_range[0]}")
        if not 0 < self.area_range[1] <= 1:
            raise ValueError(f"max_area must be in (0, 1], got {self.area_range[1]}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        require_image(sample, "random_crop_image")
        # The OD API keeps the original image when a uniform draw falls below random_coef.
        if uniform(generator, 0.0, 1.0) < self.random_coef:
            return sample
        window = sample_crop_window(
            sample.height,
            sample.width,
            sample.boxes,
            min_object_covered=self.min_object_covered,
            aspect_ratio_range=self.aspect_ratio_range,
            area_range=self.area_range,
            generator=generator,
        )
        return crop_to_window(
            sample, window, overlap_thresh=self.overlap_thresh, clip_boxes=self.clip_boxes
        )


def default_ssd_crop_operations() -> tuple[RandomCropImage, ...]:
    """The 7 operations of the SSD paper that the OD API uses when none are configured."""
    return tuple(
        RandomCropImage(
            min_object_covered=covered,
            aspect_ratio_range=(0.5, 2.0),
            area_range=(0.1, 1.0),
            overlap_thresh=covered,
            clip_boxes=True,
            random_coef=0.15,
        )
        for covered in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    )


@dataclass(frozen=True)
class SSDRandomCrop:
    """OD API ``ssd_random_crop``: pick one crop operation uniformly, then apply it."""

    operations: Sequence[RandomCropImage] = dataclasses.field(
        default_factory=default_ssd_crop_operations
    )

    def __post_init__(self) -> None:
        if len(self.operations) == 0:
            raise ValueError("ssd_random_crop needs at least one operation")
        object.__setattr__(self, "operations", tuple(self.operations))

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        chosen = self.operations[random_integer(generator, 0, len(self.operations))]
        return chosen(sample, generator)
