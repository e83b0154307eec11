"""``build_augmentations``: the one place that reads ``PreprocessingStep`` config messages.

Each supported ``preprocessing_step`` oneof case maps to a step class of ``augment_geometric``,
``augment_crop`` or ``augment_color``; fields left unset take the proto2 defaults, which are
the OD API's defaults. A step that parses but is not implemented fails at build time with a
``ConfigError`` naming it and listing the supported steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from objdet.data.augment import Augmentation, AugmentationPipeline
from objdet.data.augment_color import (
    NormalizeImage,
    RandomAdjustBrightness,
    RandomAdjustContrast,
    RandomAdjustHue,
    RandomAdjustSaturation,
    RandomBlackPatches,
    RandomDistortColor,
    RandomPixelValueScale,
    RandomRGBToGray,
)
from objdet.data.augment_crop import RandomCropImage, SSDRandomCrop, default_ssd_crop_operations
from objdet.data.augment_geometric import (
    RandomAbsolutePadImage,
    RandomHorizontalFlip,
    RandomImageScale,
    RandomJitterBoxes,
    RandomPadImage,
    RandomRotation90,
    RandomVerticalFlip,
)
from objdet.data.augment_scale_crop import RandomScaleCropAndPadToSquare, RandomSquareCropByScale
from objdet.errors import ConfigError

# The config messages are protobuf messages; typed as Any to keep protobuf out of mypy's way.
StepConfig = Any


def _paired_size(config: StepConfig, height_field: str, width_field: str) -> tuple[int, int] | None:
    has_height, has_width = config.HasField(height_field), config.HasField(width_field)
    if has_height != has_width:
        raise ValueError(f"{height_field} and {width_field} must be both set or both unset")
    return (getattr(config, height_field), getattr(config, width_field)) if has_height else None


def _random_pad_image(config: StepConfig) -> RandomPadImage:
    pad_color = tuple(config.pad_color) or None
    return RandomPadImage(
        min_image_size=_paired_size(config, "min_image_height", "min_image_width"),
        max_image_size=_paired_size(config, "max_image_height", "max_image_width"),
        pad_color=pad_color,  # type: ignore[arg-type]  # length checked by RandomPadImage
    )


def _crop_operation(config: StepConfig) -> RandomCropImage:
    """A RandomCropImage or SSDRandomCropOperation message -> ``RandomCropImage``."""
    return RandomCropImage(
        min_object_covered=config.min_object_covered,
        aspect_ratio_range=(config.min_aspect_ratio, config.max_aspect_ratio),
        area_range=(config.min_area, config.max_area),
        overlap_thresh=config.overlap_thresh,
        clip_boxes=config.clip_boxes,
        random_coef=config.random_coef,
    )


def _ssd_random_crop(config: StepConfig) -> SSDRandomCrop:
    if not config.operations:
        return SSDRandomCrop()  # the SSD paper's 7 operations, as in the OD API
    return SSDRandomCrop(operations=tuple(_crop_operation(op) for op in config.operations))


def _ssd_random_crop_fixed_aspect_ratio(config: StepConfig) -> SSDRandomCrop:
    """``ssd_random_crop_fixed_aspect_ratio``: ``ssd_random_crop`` with every window of width /
    height ``aspect_ratio``. As the OD API's builder, no operations means the SSD paper's
    seven at aspect ratio 1.0, the message's ``aspect_ratio`` being read only with operations
    (a non-default one without them is refused rather than ignored)."""
    if not config.operations:
        if config.aspect_ratio != 1.0:
            raise ValueError(f"aspect_ratio: {config.aspect_ratio} is read only with operations "
                             "(the OD API crops at 1.0 without them); add operations or remove it")
        return SSDRandomCrop(operations=tuple(
            dataclasses.replace(op, aspect_ratio_range=(1.0, 1.0))
            for op in default_ssd_crop_operations()))
    ratio = (config.aspect_ratio, config.aspect_ratio)
    return SSDRandomCrop(operations=tuple(
        RandomCropImage(min_object_covered=op.min_object_covered, aspect_ratio_range=ratio,
                        area_range=(op.min_area, op.max_area), overlap_thresh=op.overlap_thresh,
                        clip_boxes=op.clip_boxes, random_coef=op.random_coef)
        for op in config.operations))


def _random_jitter_boxes(config: StepConfig) -> RandomJitterBoxes:
    mode = type(config).JitterMode.Name(config.jitter_mode).lower()
    return RandomJitterBoxes(ratio=config.ratio, jitter_mode=mode)


STEP_BUILDERS: dict[str, Callable[[StepConfig], Augmentation]] = {
    "normalize_image": lambda c: NormalizeImage(
        original_minval=c.original_minval,
        original_maxval=c.original_maxval,
        target_minval=c.target_minval,
        target_maxval=c.target_maxval,
    ),
    "random_horizontal_flip": lambda c: RandomHorizontalFlip(
        probability=c.probability, keypoint_flip_permutation=tuple(c.keypoint_flip_permutation)
    ),
    "random_vertical_flip": lambda c: RandomVerticalFlip(
        probability=c.probability, keypoint_flip_permutation=tuple(c.keypoint_flip_permutation)
    ),
    "random_rotation90": lambda c: RandomRotation90(
        probability=c.probability, keypoint_rot_permutation=tuple(c.keypoint_rot_permutation)
    ),
    "random_pixel_value_scale": lambda c: RandomPixelValueScale(minval=c.minval, maxval=c.maxval),
    "random_image_scale": lambda c: RandomImageScale(
        min_scale_ratio=c.min_scale_ratio, max_scale_ratio=c.max_scale_ratio
    ),
    "random_rgb_to_gray": lambda c: RandomRGBToGray(probability=c.probability),
    "random_adjust_brightness": lambda c: RandomAdjustBrightness(max_delta=c.max_delta),
    "random_adjust_contrast": lambda c: RandomAdjustContrast(
        min_delta=c.min_delta, max_delta=c.max_delta
    ),
    "random_adjust_hue": lambda c: RandomAdjustHue(max_delta=c.max_delta),
    "random_adjust_saturation": lambda c: RandomAdjustSaturation(
        min_delta=c.min_delta, max_delta=c.max_delta
    ),
    "random_distort_color": lambda c: RandomDistortColor(color_ordering=c.color_ordering),
    "random_jitter_boxes": _random_jitter_boxes,
    "random_crop_image": _crop_operation,
    "random_pad_image": _random_pad_image,
    "random_absolute_pad_image": lambda c: RandomAbsolutePadImage(
        max_height_padding=c.max_height_padding or 1,  # the OD API's builder: 0 -> 1
        max_width_padding=c.max_width_padding or 1,
        pad_color=tuple(c.pad_color) or None,  # type: ignore[arg-type]
    ),
    "random_black_patches": lambda c: RandomBlackPatches(
        max_black_patches=c.max_black_patches,
        probability=c.probability,
        size_to_image_ratio=c.size_to_image_ratio,
    ),
    "ssd_random_crop": _ssd_random_crop,
    "ssd_random_crop_fixed_aspect_ratio": _ssd_random_crop_fixed_aspect_ratio,
    "random_scale_crop_and_pad_to_square": lambda c: RandomScaleCropAndPadToSquare(
        output_size=c.output_size, scale_min=c.scale_min, scale_max=c.scale_max
    ),
    "random_square_crop_by_scale": lambda c: RandomSquareCropByScale(
        max_border=c.max_border, scale_min=c.scale_min, scale_max=c.scale_max,
        num_scales=c.num_scales,
    ),
}


def build_augmentation(step: StepConfig, position: int = 0) -> Augmentation:
    """One ``PreprocessingStep`` message -> one augmentation step.

    Args:
        step: an ``objdet.protos.preprocessor_pb2.PreprocessingStep``.
        position: its index in ``data_augmentation_options``, for error messages.
    """
    where = f"data_augmentation_options[{position}]"
    name = step.WhichOneof("preprocessing_step")
    if name is None:
        raise ConfigError(
            f"{where}: no preprocessing step is set (expected one of {supported_steps()})"
        )
    builder = STEP_BUILDERS.get(name)
    if builder is None:
        raise ConfigError(
            f"{where}: preprocessing step {name!r} is not supported yet; "
            f"supported steps: {', '.join(supported_steps())}"
        )
    try:
        return builder(getattr(step, name))
    except ValueError as error:
        raise ConfigError(f"{where}: {name}: {error}") from error


def build_augmentations(steps: Sequence[StepConfig]) -> AugmentationPipeline:
    """``train_config.data_augmentation_options`` -> an ``AugmentationPipeline`` (in order)."""
    return AugmentationPipeline(
        [build_augmentation(step, position) for position, step in enumerate(steps)]
    )


def supported_steps() -> list[str]:
    """Names of the ``preprocessing_step`` cases ``build_augmentations`` accepts, sorted."""
    return sorted(STEP_BUILDERS)
