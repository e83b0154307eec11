"""Photometric augmentation steps of the OD API: brightness, contrast, hue, saturation,
color distortion, grayscale, black patches and value normalization.

Images are ``Tensor[3, H, W]`` uint8 (or float32 on the OD API's [0, 255] scale). Like the OD
API, each color step works on ``image / 255``, clips to [0, 1] and scales back; a uint8 image
is rounded back to uint8, so the steps keep dtype, shape and range and are exact no-ops at
delta 0. Boxes and other annotations are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor

from objdet.data.augment import (
    Augmentation,
    check_probability,
    check_range,
    happens,
    require_image,
    uniform,
    with_new_image,
)
from objdet.structures.sample import Sample


def _to_unit_range(image: Tensor) -> Tensor:
    """[0, 255]-scale image -> float32 on [0, 1]."""
    return image.float() / 255.0


def _from_unit_range(unit_image: Tensor, like: Tensor) -> Tensor:
    """Clip to [0, 1] and return to ``like``'s dtype on the [0, 255] scale."""
    scaled = unit_image.clamp(0.0, 1.0) * 255.0
    if like.dtype == torch.uint8:
        return scaled.round().to(torch.uint8)
    return scaled.to(like.dtype)


def adjust_brightness(image: Tensor, delta: float) -> Tensor:
    """Add ``delta`` (a fraction of full scale) to every value, as ``tf.image.adjust_brightness``."""
    return _from_unit_range(_to_unit_range(image) + delta, image)


def adjust_contrast(image: Tensor, factor: float) -> Tensor:
    """Scale each channel's distance from its mean by ``factor`` (``tf.image.adjust_contrast``)."""
    unit = _to_unit_range(image)
    channel_means = unit.mean(dim=(-2, -1), keepdim=True)  # [3, 1, 1]
    return _from_unit_range((unit - channel_means) * factor + channel_means, image)


def adjust_hue(image: Tensor, delta: float) -> Tensor:
    """Rotate hue by ``delta`` turns of the color wheel (``tf.image.adjust_hue``)."""
    wrapped = (delta + 0.5) % 1.0 - 0.5  # torchvision wants [-0.5, 0.5]; hue is periodic
    if wrapped == 0.0:
        return image.clone()
    return _from_unit_range(F.adjust_hue(_to_unit_range(image), wrapped), image)


def adjust_saturation(image: Tensor, factor: float) -> Tensor:
    """Multiply HSV saturation by ``factor``, clipped to 1 (``tf.image.adjust_saturation``).

    With hue and value fixed, each channel is ``c = V - (V - c)``, where ``V - c`` is
    proportional to the saturation; so scaling saturation scales ``V - c`` directly. The
    factor is capped where saturation would pass 1 (the darkest channel reaching 0).
    """
    unit = _to_unit_range(image)
    value = unit.amax(dim=0, keepdim=True)  # [1, H, W]
    darkest = unit.amin(dim=0, keepdim=True)
    spread = value - darkest
    max_factor = torch.where(spread > 0, value / spread.clamp(min=1e-12), torch.ones_like(value))
    effective = torch.minimum(torch.full_like(value, factor), max_factor).clamp(min=0.0)
    return _from_unit_range(value - (value - unit) * effective, image)


@dataclass(frozen=True)
class RandomAdjustBrightness:
    """Brightness delta uniform in ``[-max_delta, max_delta)`` (fraction of full scale)."""

    max_delta: float = 0.2

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_adjust_brightness")
        delta = uniform(generator, -self.max_delta, self.max_delta)
        return with_new_image(sample, adjust_brightness(image, delta))


@dataclass(frozen=True)
class RandomAdjustContrast:
    """Contrast factor uniform in ``[min_delta, max_delta)``."""

    min_delta: float = 0.8
    max_delta: float = 1.25

    def __post_init__(self) -> None:
        check_range("min_delta", self.min_delta, "max_delta", self.max_delta)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_adjust_contrast")
        factor = uniform(generator, self.min_delta, self.max_delta)
        return with_new_image(sample, adjust_contrast(image, factor))


@dataclass(frozen=True)
class RandomAdjustHue:
    """Hue shift uniform in ``[-max_delta, max_delta)`` turns."""

    max_delta: float = 0.02

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_adjust_hue")
        delta = uniform(generator, -self.max_delta, self.max_delta)
        return with_new_image(sample, adjust_hue(image, delta))


@dataclass(frozen=True)
class RandomAdjustSaturation:
    """Saturation factor uniform in ``[min_delta, max_delta)``."""

    min_delta: float = 0.8
    max_delta: float = 1.25

    def __post_init__(self) -> None:
        check_range("min_delta", self.min_delta, "max_delta", self.max_delta)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_adjust_saturation")
        factor = uniform(generator, self.min_delta, self.max_delta)
        return with_new_image(sample, adjust_saturation(image, factor))


@dataclass(frozen=True)
class RandomDistortColor:
    """The OD API's fixed color distortion sequence; ``color_ordering`` 0 or 1 picks the order.

    0: brightness(32/255), saturation(0.5, 1.5), hue(0.2), contrast(0.5, 1.5).
    1: brightness(32/255), contrast(0.5, 1.5), saturation(0.5, 1.5), hue(0.2).
    """

    color_ordering: int = 0

    def __post_init__(self) -> None:
        if self.color_ordering not in (0, 1):
            raise ValueError(f"color_ordering must be 0 or 1, got {self.color_ordering}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        brightness = RandomAdjustBrightness(max_delta=32.0 / 255.0)
        saturation = RandomAdjustSaturation(min_delta=0.5, max_delta=1.5)
        hue = RandomAdjustHue(max_delta=0.2)
        contrast = RandomAdjustContrast(min_delta=0.5, max_delta=1.5)
        steps: tuple[Augmentation, ...]
        if self.color_ordering == 0:
            steps = (brightness, saturation, hue, contrast)
        else:
            steps = (brightness, contrast, saturation, hue)
        for step in steps:
            sample = step(sample, generator)
        return sample


@dataclass(frozen=True)
class RandomRGBToGray:
    """Replace the image by its (3-channel) grayscale with ``probability``."""

    probability: float = 0.1

    def __post_init__(self) -> None:
        check_probability("probability", self.probability)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_rgb_to_gray")
        if not happens(generator, self.probability):
            return sample
        return with_new_image(sample, F.rgb_to_grayscale(image, num_output_channels=3))


@dataclass(frozen=True)
class RandomBlackPatches:
    """Up to ``max_black_patches`` black squares, each added with ``probability``.

    A patch's side is ``size_to_image_ratio * min(H, W)`` pixels; its top-left corner is drawn
    uniformly in ``[0, 1 - size_to_image_ratio)`` of the height and width.
    """

    max_black_patches: int = 10
    probability: float = 0.5
    size_to_image_ratio: float = 0.1

    def __post_init__(self) -> None:
        check_probability("probability", self.probability)
        check_probability("size_to_image_ratio", self.size_to_image_ratio)
        if self.max_black_patches < 0:
            raise ValueError(f"max_black_patches must be >= 0, got {self.max_black_patches}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_black_patches")
        height, width = sample.height, sample.width
        side = int(min(height, width) * self.size_to_image_ratio)
        patched = image.clone()
        for _ in range(self.max_black_patches):
            apply = happens(generator, self.probability)
            top = int(uniform(generator, 0.0, 1.0 - self.size_to_image_ratio) * height)
            left = int(uniform(generator, 0.0, 1.0 - self.size_to_image_ratio) * width)
            if apply:
                patched[:, top : top + side, left : left + side] = 0
        return with_new_image(sample, patched)


@dataclass(frozen=True)
class NormalizeImage:
    """Map values linearly from [original_minval, original_maxval] to [target_minval,
    target_maxval]; the image becomes float32 (OD API ``normalize_image``)."""

    original_minval: float
    original_maxval: float
    target_minval: float = 0.0
    target_maxval: float = 1.0

    def __post_init__(self) -> None:
        if self.original_maxval == self.original_minval:
            raise ValueError(
                f"original_maxval must differ from original_minval, both are {self.original_minval}"
            )

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "normalize_image")
        scale = (self.target_maxval - self.target_minval) / (
            self.original_maxval - self.original_minval
        )
        normalized = (image.float() - self.original_minval) * scale + self.target_minval
        return with_new_image(sample, normalized)


@dataclass(frozen=True)
class RandomPixelValueScale:
    """Multiply every value by its own factor uniform in ``[minval, maxval)``, clip to [0, 255]."""

    minval: float = 0.9
    maxval: float = 1.1

    def __post_init__(self) -> None:
        check_range("minval", self.minval, "maxval", self.maxval)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = require_image(sample, "random_pixel_value_scale")
        factors = self.minval + (self.maxval - self.minval) * torch.rand(
            image.shape, generator=generator
        )
        return with_new_image(sample, _from_unit_range(_to_unit_range(image) * factors, image))
