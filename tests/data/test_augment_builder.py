"""``build_augmentations`` reads PreprocessingStep messages with the OD API's defaults."""

from __future__ import annotations

import pytest
import torch
from google.protobuf import text_format

from objdet.data.augment_builder import build_augmentations, supported_steps
from objdet.data.augment_color import (
    NormalizeImage,
    RandomAdjustBrightness,
    RandomAdjustContrast,
    RandomDistortColor,
)
from objdet.data.augment_crop import RandomCropImage, SSDRandomCrop, default_ssd_crop_operations
from objdet.data.augment_geometric import (
    RandomHorizontalFlip,
    RandomJitterBoxes,
    RandomPadImage,
    RandomRotation90,
)
from objdet.errors import ConfigError
from objdet.protos import preprocessor_pb2, train_pb2
from objdet.structures.sample import Sample


def f32(value: float) -> float:
    """``value`` as stored in a proto ``float`` field (float32), read back as a Python float."""
    return float(torch.tensor(value, dtype=torch.float32))


def parse_steps(text: str) -> list[preprocessor_pb2.PreprocessingStep]:
    """``data_augmentation_options { ... }`` blocks, as written in a pipeline.config's train_config."""
    config = text_format.Parse(text, train_pb2.TrainConfig())
    return list(config.data_augmentation_options)


def test_builder_reads_several_steps_in_order() -> None:
    steps = parse_steps(
        """
        data_augmentation_options { random_horizontal_flip { keypoint_flip_permutation: [1, 0] } }
        data_augmentation_options { ssd_random_crop { } }
        data_augmentation_options {
          random_crop_image { min_object_covered: 0.5 min_aspect_ratio: 0.8 overlap_thresh: 0.4 clip_boxes: false }
        }
        data_augmentation_options { random_adjust_brightness { max_delta: 0.1 } }
        data_augmentation_options { random_adjust_contrast { } }
        data_augmentation_options { random_distort_color { color_ordering: 1 } }
        data_augmentation_options { random_jitter_boxes { ratio: 0.1 jitter_mode: SHRINK_SYMMETRIC_XY } }
        data_augmentation_options { random_pad_image { min_image_height: 10 min_image_width: 12 pad_color: [1, 2, 3] } }
        data_augmentation_options { random_rotation90 { probability: 0.25 } }
        data_augmentation_options { normalize_image { original_minval: 0 original_maxval: 255 target_minval: -1 } }
        """
    )
    pipeline = build_augmentations(steps)
    assert pipeline.steps == (
        RandomHorizontalFlip(probability=0.5, keypoint_flip_permutation=(1, 0)),
        SSDRandomCrop(operations=default_ssd_crop_operations()),
        RandomCropImage(
            min_object_covered=0.5,
            aspect_ratio_range=(f32(0.8), f32(1.33)),
            area_range=(f32(0.1), 1.0),
            overlap_thresh=f32(0.4),
            clip_boxes=False,
            random_coef=0.0,
        ),
        RandomAdjustBrightness(max_delta=f32(0.1)),
        RandomAdjustContrast(min_delta=f32(0.8), max_delta=1.25),
        RandomDistortColor(color_ordering=1),
        RandomJitterBoxes(ratio=f32(0.1), jitter_mode="shrink_symmetric_xy"),
        RandomPadImage(min_image_size=(10, 12), max_image_size=None, pad_color=(1.0, 2.0, 3.0)),
        RandomRotation90(probability=0.25),
        NormalizeImage(
            original_minval=0.0, original_maxval=255.0, target_minval=-1.0, target_maxval=1.0
        ),
    )


def test_built_pipeline_runs_on_a_sample() -> None:
    steps = parse_steps(
        """
        data_augmentation_options { random_horizontal_flip { } }
        data_augmentation_options { ssd_random_crop { } }
        data_augmentation_options { random_black_patches { } }
        data_augmentation_options { random_image_scale { } }
        """
    )
    image = torch.randint(
        0, 256, (3, 30, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    sample = Sample(
        height=30,
        width=40,
        image=image,
        boxes=torch.tensor([[5.0, 5.0, 25.0, 20.0]]),
        labels=torch.tensor([1]),
    )
    pipeline = build_augmentations(steps)
    first = pipeline(sample, torch.Generator().manual_seed(7))
    second = pipeline(sample, torch.Generator().manual_seed(7))
    assert torch.equal(first.image, second.image) and torch.equal(first.boxes, second.boxes)
    assert first.image.shape == (3, first.height, first.width)


def test_ssd_random_crop_operations_are_read() -> None:
    steps = parse_steps(
        """
        data_augmentation_options {
          ssd_random_crop {
            operations { min_object_covered: 0.0 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0
                         min_area: 0.1 max_area: 1.0 overlap_thresh: 0.0 random_coef: 0.15 }
            operations { min_object_covered: 0.5 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0
                         min_area: 0.3 max_area: 1.0 overlap_thresh: 0.5 clip_boxes: false random_coef: 0.15 }
          }
        }
        """
    )
    (step,) = build_augmentations(steps).steps
    assert isinstance(step, SSDRandomCrop)
    assert [op.min_object_covered for op in step.operations] == [0.0, 0.5]
    assert [op.clip_boxes for op in step.operations] == [True, False]
    assert step.operations[1].area_range == (f32(0.3), 1.0)


def test_ssd_random_crop_fixed_aspect_ratio_crops_windows_of_that_ratio() -> None:
    (default,) = build_augmentations(parse_steps(
        "data_augmentation_options { ssd_random_crop_fixed_aspect_ratio { } }")).steps
    assert isinstance(default, SSDRandomCrop)
    assert [op.min_object_covered for op in default.operations] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert {(op.aspect_ratio_range, op.area_range, op.random_coef) for op in default.operations} == {
        ((1.0, 1.0), (0.1, 1.0), 0.15)}
    (step,) = build_augmentations(parse_steps(
        """
        data_augmentation_options {
          ssd_random_crop_fixed_aspect_ratio {
            operations { min_object_covered: 0.0 min_area: 0.2 max_area: 0.9 overlap_thresh: 0.3
                         random_coef: 0.0 }
            aspect_ratio: 2.0
          }
        }
        """)).steps
    assert isinstance(step, SSDRandomCrop) and len(step.operations) == 1
    assert step.operations[0].aspect_ratio_range == (2.0, 2.0)
    assert step.operations[0].area_range == (f32(0.2), f32(0.9))
    image = torch.zeros((3, 90, 120), dtype=torch.uint8)
    sample = Sample(height=90, width=120, image=image, boxes=torch.tensor([[10.0, 10.0, 60.0, 50.0]]),
                    labels=torch.tensor([1]))
    for seed in range(10):
        cropped = step(sample, torch.Generator().manual_seed(seed))
        assert abs(cropped.width / cropped.height - 2.0) < 0.1, (cropped.width, cropped.height)
    with pytest.raises(ConfigError, match=r"ssd_random_crop_fixed_aspect_ratio: aspect_ratio: 2\.0 "
                                          r"is read only with operations"):
        build_augmentations(parse_steps(
            "data_augmentation_options { ssd_random_crop_fixed_aspect_ratio { aspect_ratio: 2.0 } }"))


def test_unsupported_step_fails_at_build_time_naming_it_and_the_supported_ones() -> None:
    steps = parse_steps(
        """
        data_augmentation_options { random_horizontal_flip { } }
        data_augmentation_options { random_self_concat_image { } }
        """
    )
    with pytest.raises(ConfigError) as raised:
        build_augmentations(steps)
    message = str(raised.value)
    assert "data_augmentation_options[1]" in message
    assert "'random_self_concat_image' is not supported" in message
    assert "ssd_random_crop" in message and "random_horizontal_flip" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "random_pad_image { min_image_height: 10 }",
            "min_image_height and min_image_width must be both set",
        ),
        (
            "random_horizontal_flip { probability: 2.0 }",
            "random_horizontal_flip: probability must be in",
        ),
        ("random_crop_image { min_area: 0.9 max_area: 0.2 }", "random_crop_image: min_area"),
        ("random_distort_color { color_ordering: 3 }", "color_ordering must be 0 or 1"),
        ("normalize_image { }", "normalize_image: original_maxval must differ"),
    ],
)
def test_invalid_step_values_become_config_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_augmentations(parse_steps(f"data_augmentation_options {{ {text} }}"))


def test_empty_step_is_rejected() -> None:
    with pytest.raises(
        ConfigError, match=r"data_augmentation_options\[0\]: no preprocessing step is set"
    ):
        build_augmentations([preprocessor_pb2.PreprocessingStep()])


def test_supported_steps_cover_the_issue_list() -> None:
    required = {
        "random_horizontal_flip",
        "random_vertical_flip",
        "random_rotation90",
        "ssd_random_crop",
        "random_crop_image",
        "random_pad_image",
        "random_image_scale",
        "random_jitter_boxes",
        "random_adjust_brightness",
        "random_adjust_contrast",
        "random_adjust_hue",
        "random_adjust_saturation",
        "random_distort_color",
        "random_rgb_to_gray",
        "random_black_patches",
        "normalize_image",
    }
    assert required <= set(supported_steps())
    oneof_cases = {
        field.name
        for field in preprocessor_pb2.PreprocessingStep.DESCRIPTOR.oneofs_by_name[
            "preprocessing_step"
        ].fields
    }
    assert set(supported_steps()) <= oneof_cases
