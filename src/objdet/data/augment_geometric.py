"""Geometric augmentation steps of the OD API: flips, 90° rotation, scale, pad, box jitter.

Boxes are ``Tensor[N, 4]`` float32 (x1, y1, x2, y2) in absolute pixels of the image they belong
to, keypoints ``Tensor[N, K, 2]`` (x, y) absolute pixels, masks ``Tensor[N, H, W]`` uint8. The
OD API works in normalized (ymin, xmin, ymax, xmax); the formulas here are the same maps written
in pixels (e.g. its ``1 - xmax`` is our ``width - x2``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.tv_tensors import BoundingBoxFormat

from objdet.data.augment import (
    check_probability,
    check_range,
    happens,
    random_integer,
    require_image,
    uniform,
    uniform_tensor,
    with_new_geometry,
)
from objdet.errors import DataError
from objdet.structures.sample import Sample


def _permute_keypoints(sample: Sample, permutation: tuple[int, ...], step_name: str) -> dict:
    """Keypoints and visibilities reordered by ``permutation`` (e.g. left eye <-> right eye)."""
    if not permutation or sample.keypoints is None:
        return {}
    num_keypoints = sample.keypoints.shape[1]
    if len(permutation) != num_keypoints:
        raise DataError(
            f"{step_name}: keypoint permutation has {len(permutation)} entries but sample "
            f"{sample.filename or sample.source_id!r} has {num_keypoints} keypoints per object"
        )
    index = torch.tensor(permutation, dtype=torch.int64)
    changes = {"keypoints": sample.keypoints[:, index]}
    if sample.keypoint_visibilities is not None:
        changes["keypoint_visibilities"] = sample.keypoint_visibilities[:, index]
    return changes


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror left-right with ``probability`` (OD API ``random_horizontal_flip``).

    Args:
        probability: chance of flipping, in [0, 1].
        keypoint_flip_permutation: new order of the K keypoints after a flip (swaps left/right
            parts); empty = keep the order.
    """

    probability: float = 0.5
    keypoint_flip_permutation: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_probability("probability", self.probability)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_horizontal_flip")
        if not happens(generator, self.probability):
            return sample
        width = sample.width
        changes: dict = {
            "boxes": F.horizontal_flip_bounding_boxes(
                sample.boxes, format=BoundingBoxFormat.XYXY, canvas_size=(sample.height, width)
            )
        }
        if sample.masks is not None:
            changes["masks"] = sample.masks.flip(-1)
        if sample.keypoints is not None:
            keypoints = sample.keypoints.clone()
            keypoints[..., 0] = width - keypoints[..., 0]
            changes["keypoints"] = keypoints
        flipped = with_new_geometry(sample, F.horizontal_flip(image), **changes)
        permuted = _permute_keypoints(
            flipped, self.keypoint_flip_permutation, "random_horizontal_flip"
        )
        return dataclasses.replace(flipped, **permuted) if permuted else flipped


@dataclass(frozen=True)
class RandomVerticalFlip:
    """Mirror top-bottom with ``probability`` (OD API ``random_vertical_flip``)."""

    probability: float = 0.5
    keypoint_flip_permutation: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_probability("probability", self.probability)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_vertical_flip")
        if not happens(generator, self.probability):
            return sample
        height = sample.height
        changes: dict = {
            "boxes": F.vertical_flip_bounding_boxes(
                sample.boxes, format=BoundingBoxFormat.XYXY, canvas_size=(height, sample.width)
            )
        }
        if sample.masks is not None:
            changes["masks"] = sample.masks.flip(-2)
        if sample.keypoints is not None:
            keypoints = sample.keypoints.clone()
            keypoints[..., 1] = height - keypoints[..., 1]
            changes["keypoints"] = keypoints
        flipped = with_new_geometry(sample, F.vertical_flip(image), **changes)
        permuted = _permute_keypoints(
            flipped, self.keypoint_flip_permutation, "random_vertical_flip"
        )
        return dataclasses.replace(flipped, **permuted) if permuted else flipped


@dataclass(frozen=True)
class RandomRotation90:
    """Rotate 90° counter-clockwise with ``probability`` (OD API ``random_rotation90``).

    An ``H x W`` image becomes ``W x H``; a point (x, y) moves to (y, W - x).
    """

    probability: float = 0.5
    keypoint_rot_permutation: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_probability("probability", self.probability)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_rotation90")
        if not happens(generator, self.probability):
            return sample
        old_width = sample.width
        x1, y1, x2, y2 = sample.boxes.unbind(dim=1)
        changes: dict = {"boxes": torch.stack([y1, old_width - x2, y2, old_width - x1], dim=1)}
        if sample.masks is not None:
            changes["masks"] = torch.rot90(sample.masks, 1, dims=(-2, -1))
        if sample.keypoints is not None:
            x, y = sample.keypoints.unbind(dim=-1)
            changes["keypoints"] = torch.stack([y, old_width - x], dim=-1)
        # torch.rot90 from the H axis towards the W axis is counter-clockwise, as tf.image.rot90.
        rotated = with_new_geometry(sample, torch.rot90(image, 1, dims=(-2, -1)), **changes)
        permuted = _permute_keypoints(rotated, self.keypoint_rot_permutation, "random_rotation90")
        return dataclasses.replace(rotated, **permuted) if permuted else rotated


@dataclass(frozen=True)
class RandomImageScale:
    """Resize by one random factor in ``[min_scale_ratio, max_scale_ratio)`` (both axes).

    The new size is ``floor(H * ratio) x floor(W * ratio)`` as in the OD API; boxes, keypoints
    and areas scale with the image, masks are resized with nearest neighbour.
    """

    min_scale_ratio: float = 0.5
    max_scale_ratio: float = 2.0

    def __post_init__(self) -> None:
        check_range(
            "min_scale_ratio", self.min_scale_ratio, "max_scale_ratio", self.max_scale_ratio
        )
        if self.min_scale_ratio <= 0:
            raise ValueError(f"min_scale_ratio must be > 0, got {self.min_scale_ratio}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_image_scale")
        ratio = uniform(generator, self.min_scale_ratio, self.max_scale_ratio)
        new_height = max(1, int(sample.height * ratio))
        new_width = max(1, int(sample.width * ratio))
        scale_x, scale_y = new_width / sample.width, new_height / sample.height
        scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=torch.float32)
        changes: dict = {"boxes": sample.boxes * scale}
        if sample.masks is not None:
            changes["masks"] = _resize_masks(sample.masks, new_height, new_width)
        if sample.keypoints is not None:
            changes["keypoints"] = sample.keypoints * scale[:2]
        if sample.areas is not None:
            changes["areas"] = sample.areas * (scale_x * scale_y)
        resized = F.resize(image, [new_height, new_width], antialias=True)
        return with_new_geometry(sample, resized, **changes)


def _resize_masks(masks: Tensor, height: int, width: int) -> Tensor:
    """``[N, h, w]`` -> ``[N, height, width]`` nearest neighbour (N may be 0)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, height, width))
    return F.resize(masks, [height, width], interpolation=InterpolationMode.NEAREST_EXACT)


@dataclass(frozen=True)
class RandomPadImage:
    """Place the image at a random offset on a larger canvas (OD API ``random_pad_image``).

    The canvas size is drawn from ``[min_image_size, max_image_size)`` per axis, clamped to at
    least the image size; unset sizes default to the image size and twice the image size.

    Args:
        min_image_size, max_image_size: (height, width) in pixels, or None.
        pad_color: RGB on the [0, 255] scale; None = the image's per-channel mean.
    """

    min_image_size: tuple[int, int] | None = None
    max_image_size: tuple[int, int] | None = None
    pad_color: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.pad_color is not None and len(self.pad_color) != 3:
            raise ValueError(f"pad_color must have 3 values (RGB), got {list(self.pad_color)}")

    def _canvas_size(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int]:
        low = self.min_image_size or (height, width)
        high = self.max_image_size or (2 * height, 2 * width)
        sizes = []
        for axis, image_size in enumerate((height, width)):
            axis_high = max(high[axis], image_size)
            axis_low = max(low[axis], image_size)
            drawn = (
                random_integer(generator, axis_low, axis_high)
                if axis_high > axis_low
                else axis_high
            )
            sizes.append(drawn)
        return sizes[0], sizes[1]

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_pad_image")
        height, width = sample.height, sample.width
        canvas_height, canvas_width = self._canvas_size(height, width, generator)
        top = random_integer(generator, 0, canvas_height - height) if canvas_height > height else 0
        left = random_integer(generator, 0, canvas_width - width) if canvas_width > width else 0
        if self.pad_color is None:
            color = image.mean(dim=(1, 2), dtype=torch.float32)  # [C], no float copy of the image
        else:
            color = torch.tensor(self.pad_color, dtype=torch.float32)
        if not image.is_floating_point():
            color = color.round().clamp(0, 255)
        canvas = (
            color.to(image.dtype)[:, None, None].expand(-1, canvas_height, canvas_width).clone()
        )
        canvas[:, top : top + height, left : left + width] = image
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        changes: dict = {"boxes": sample.boxes + shift}
        if sample.masks is not None:
            masks = sample.masks.new_zeros((sample.masks.shape[0], canvas_height, canvas_width))
            masks[:, top : top + height, left : left + width] = sample.masks
            changes["masks"] = masks
        if sample.keypoints is not None:
            changes["keypoints"] = sample.keypoints + shift[:2]
        return with_new_geometry(sample, canvas, **changes)


@dataclass(frozen=True)
class RandomAbsolutePadImage:
    """Pad by a random number of pixels in ``[0, max_height_padding)`` and ``[0,
    max_width_padding)`` (OD API ``random_absolute_pad_image``: ``random_pad_image`` from the
    image size to the image size plus the padding), at a random offset.

    Args:
        max_height_padding, max_width_padding: pixels, >= 1 (the OD API's builder turns 0,
            unset, into 1: no padding).
        pad_color: RGB on the [0, 255] scale; None = the image's per-channel mean.
    """

    max_height_padding: int = 1
    max_width_padding: int = 1
    pad_color: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.max_height_padding < 1 or self.max_width_padding < 1:
            raise ValueError(f"max_height_padding and max_width_padding must be >= 1, got "
                             f"{self.max_height_padding} and {self.max_width_padding}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        height, width = sample.height, sample.width
        pad = RandomPadImage(min_image_size=(height, width),
                             max_image_size=(height + self.max_height_padding,
                                             width + self.max_width_padding),
                             pad_color=self.pad_color)
        return pad(sample, generator)


JITTER_MODES = (
    "default",
    "expand",
    "shrink",
    "expand_symmetric",
    "shrink_symmetric",
    "expand_symmetric_xy",
    "shrink_symmetric_xy",
)


@dataclass(frozen=True)
class RandomJitterBoxes:
    """Perturb box edges by up to ``ratio`` of the box size (OD API ``random_jitter_boxes``).

    Modes: ``default`` moves each edge independently in ``[-ratio, ratio]``; ``expand`` /
    ``shrink`` only grow / shrink; ``*_symmetric`` keep the centre (independent x/y factors);
    ``*_symmetric_xy`` use one factor for both axes. Boxes are clipped to the image.
    """

    ratio: float = 0.05
    jitter_mode: str = "default"

    def __post_init__(self) -> None:
        if self.jitter_mode not in JITTER_MODES:
            raise ValueError(
                f"jitter_mode must be one of {list(JITTER_MODES)}, got {self.jitter_mode!r}"
            )
        if self.ratio < 0:
            raise ValueError(f"ratio must be >= 0, got {self.ratio}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        boxes = sample.boxes
        x1, y1, x2, y2 = boxes.unbind(dim=1)
        center_x, center_y = (x1 + x2) / 2, (y1 + y2) / 2
        box_width = (x2 - x1).abs().clamp(min=1e-6)
        box_height = (y2 - y1).abs().clamp(min=1e-6)
        low, high = {"shrink": (-self.ratio, 0.0), "expand": (0.0, self.ratio)}.get(
            self.jitter_mode.split("_")[0], (-self.ratio, self.ratio)
        )
        num_boxes = boxes.shape[0]
        if "symmetric" in self.jitter_mode:
            factors = 1.0 + uniform_tensor(generator, (num_boxes, 2), low, high)
            height_factor, width_factor = factors[:, 0], factors[:, 1]
            # Largest factor that keeps both edges inside the image; clamping one edge clamps its
            # mirror too so the centre stays put.
            max_height_factor = (
                torch.minimum(2 * center_y, 2 * (sample.height - center_y)) / box_height
            )
            max_width_factor = (
                torch.minimum(2 * center_x, 2 * (sample.width - center_x)) / box_width
            )
            if self.jitter_mode.endswith("_xy"):
                width_factor = height_factor
                max_height_factor = max_width_factor = torch.minimum(
                    max_height_factor, max_width_factor
                )
            height_factor = torch.minimum(height_factor, max_height_factor.abs())
            width_factor = torch.minimum(width_factor, max_width_factor.abs())
            half_width, half_height = box_width * width_factor / 2, box_height * height_factor / 2
            jittered = torch.stack(
                [
                    center_x - half_width,
                    center_y - half_height,
                    center_x + half_width,
                    center_y + half_height,
                ],
                dim=1,
            )
        else:
            factors = 1.0 + uniform_tensor(generator, (num_boxes, 4), low, high)  # x1, y1, x2, y2
            half_sizes = (
                torch.stack([box_width, box_height, box_width, box_height], dim=1) * factors / 2
            )
            centers = torch.stack([center_x, center_y, center_x, center_y], dim=1)
            jittered = centers + half_sizes * torch.tensor([-1.0, -1.0, 1.0, 1.0])
        limits = torch.tensor(
            [sample.width, sample.height, sample.width, sample.height], dtype=torch.float32
        )
        jittered = torch.minimum(jittered.clamp(min=0), limits)
        return dataclasses.replace(sample, boxes=jittered.float())
