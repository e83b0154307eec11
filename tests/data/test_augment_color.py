"""Color steps keep shape/dtype/range, are no-ops at delta 0 and match HSV/TF semantics."""

from __future__ import annotations

import colorsys

import pytest
import torch

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
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)
from objdet.structures.sample import Sample


@pytest.fixture
def sample() -> Sample:
    image = torch.randint(
        0, 256, (3, 16, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    return Sample(
        height=16,
        width=24,
        image=image,
        boxes=torch.tensor([[1.0, 2.0, 10.0, 12.0]]),
        labels=torch.tensor([3]),
        encoded_image=b"\xff\xd8 stale jpeg bytes",
    )


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


RANDOM_STEPS = [
    RandomAdjustBrightness(),
    RandomAdjustContrast(),
    RandomAdjustHue(max_delta=0.3),
    RandomAdjustSaturation(),
    RandomDistortColor(color_ordering=0),
    RandomDistortColor(color_ordering=1),
    RandomRGBToGray(probability=1.0),
    RandomBlackPatches(probability=1.0),
    RandomPixelValueScale(),
]


@pytest.mark.parametrize("step", RANDOM_STEPS, ids=lambda step: type(step).__name__)
def test_color_steps_keep_shape_dtype_and_annotations(sample: Sample, step) -> None:
    before = sample.image.clone()
    changed = step(sample, generator(1))
    assert changed.image.shape == sample.image.shape and changed.image.dtype == torch.uint8
    assert not torch.equal(changed.image, sample.image)
    assert torch.equal(changed.boxes, sample.boxes) and torch.equal(changed.labels, sample.labels)
    assert changed.encoded_image is None  # the stored bytes no longer match the pixels
    assert torch.equal(sample.image, before)  # input not mutated


@pytest.mark.parametrize(
    "step",
    [
        RandomAdjustBrightness(max_delta=0.0),
        RandomAdjustContrast(min_delta=1.0, max_delta=1.0),
        RandomAdjustHue(max_delta=0.0),
        RandomAdjustSaturation(min_delta=1.0, max_delta=1.0),
        RandomRGBToGray(probability=0.0),
        RandomBlackPatches(probability=0.0),
        RandomPixelValueScale(minval=1.0, maxval=1.0),
    ],
    ids=lambda step: type(step).__name__,
)
def test_color_steps_are_identity_at_delta_zero(sample: Sample, step) -> None:
    assert torch.equal(step(sample, generator(2)).image, sample.image)


def test_brightness_adds_a_fraction_of_full_scale_and_clips() -> None:
    image = torch.tensor([0, 100, 250], dtype=torch.uint8).reshape(3, 1, 1)
    assert adjust_brightness(image, 0.1).flatten().tolist() == [26, 126, 255]
    assert adjust_brightness(image, -0.5).flatten().tolist() == [0, 0, 122]


def test_contrast_scales_distance_from_each_channel_mean() -> None:
    image = torch.tensor([[[10, 30]], [[100, 100]], [[0, 255]]], dtype=torch.uint8)  # [3, 1, 2]
    assert adjust_contrast(image, 2.0).tolist() == [[[0, 40]], [[100, 100]], [[0, 255]]]
    flat = adjust_contrast(image, 0.0)
    assert flat.tolist() == [[[20, 20]], [[100, 100]], [[128, 128]]]


def _hsv_reference(image: torch.Tensor, hue_delta: float, saturation_factor: float) -> torch.Tensor:
    """Per-pixel reference with Python's colorsys (the TF definition of hue/saturation)."""
    out = torch.empty_like(image)
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            r, g, b = (image[:, y, x].float() / 255).tolist()
            h, s, v = colorsys.rgb_to_hsv(r, g, b)
            rgb = colorsys.hsv_to_rgb((h + hue_delta) % 1.0, min(s * saturation_factor, 1.0), v)
            out[:, y, x] = torch.tensor([round(c * 255) for c in rgb], dtype=torch.uint8)
    return out


@pytest.mark.parametrize("factor", [0.5, 1.7, 3.0])
def test_saturation_matches_hsv_scaling(sample: Sample, factor: float) -> None:
    image = sample.image[:, :4, :5]
    expected = _hsv_reference(image, 0.0, factor)
    assert (adjust_saturation(image, factor).int() - expected.int()).abs().max() <= 1


def test_saturation_zero_gives_gray_at_the_brightest_channel() -> None:
    image = torch.tensor([200, 50, 100], dtype=torch.uint8).reshape(3, 1, 1)
    assert adjust_saturation(image, 0.0).flatten().tolist() == [200, 200, 200]


@pytest.mark.parametrize("delta", [1 / 3, -0.1, 0.75])
def test_hue_matches_hsv_rotation(sample: Sample, delta: float) -> None:
    image = sample.image[:, :4, :5]
    expected = _hsv_reference(image, delta, 1.0)
    assert (adjust_hue(image, delta).int() - expected.int()).abs().max() <= 1


def test_rgb_to_gray_makes_equal_channels(sample: Sample) -> None:
    gray = RandomRGBToGray(probability=1.0)(sample, generator()).image
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    expected = (sample.image.float() * torch.tensor([0.2989, 0.587, 0.114])[:, None, None]).sum(0)
    assert (gray[0].float() - expected).abs().max() <= 1


def test_black_patches_are_squares_of_the_configured_size() -> None:
    image = torch.full((3, 40, 60), 200, dtype=torch.uint8)
    sample = Sample(height=40, width=60, image=image)
    patched = RandomBlackPatches(max_black_patches=1, probability=1.0, size_to_image_ratio=0.25)(
        sample, generator(3)
    )
    black = (patched.image == 0).all(dim=0)
    rows, cols = black.nonzero(as_tuple=True)
    assert int(black.sum()) == 10 * 10  # side = 0.25 * min(40, 60)
    assert int(rows.max() - rows.min()) == 9 and int(cols.max() - cols.min()) == 9


def test_black_patch_count_follows_probability() -> None:
    sample = Sample(height=100, width=100, image=torch.full((3, 100, 100), 9, dtype=torch.uint8))
    step = RandomBlackPatches(max_black_patches=10, probability=0.5, size_to_image_ratio=0.01)
    counts = [int((step(sample, generator(seed)).image == 0).all(0).sum()) for seed in range(40)]
    assert 3.5 < sum(counts) / len(counts) < 6.5  # ~5 one-pixel patches (overlaps are rare)


def test_normalize_image_maps_ranges_and_returns_float(sample: Sample) -> None:
    normalized = NormalizeImage(
        original_minval=0, original_maxval=255, target_minval=-1, target_maxval=1
    )(sample, generator()).image
    assert normalized.dtype == torch.float32
    assert torch.allclose(normalized, sample.image.float() / 127.5 - 1, atol=1e-6)
    with pytest.raises(ValueError, match="original_maxval must differ"):
        NormalizeImage(original_minval=0, original_maxval=0)


def test_color_steps_accept_float_images_on_the_255_scale(sample: Sample) -> None:
    float_sample = Sample(height=16, width=24, image=sample.image.float())
    changed = RandomDistortColor()(float_sample, generator(4)).image
    assert changed.dtype == torch.float32 and changed.min() >= 0 and changed.max() <= 255


@pytest.mark.parametrize(
    ("ordering", "steps"),
    [
        (
            0,
            [
                RandomAdjustBrightness(max_delta=32.0 / 255.0),
                RandomAdjustSaturation(min_delta=0.5, max_delta=1.5),
                RandomAdjustHue(max_delta=0.2),
                RandomAdjustContrast(min_delta=0.5, max_delta=1.5),
            ],
        ),
        (
            1,
            [
                RandomAdjustBrightness(max_delta=32.0 / 255.0),
                RandomAdjustContrast(min_delta=0.5, max_delta=1.5),
                RandomAdjustSaturation(min_delta=0.5, max_delta=1.5),
                RandomAdjustHue(max_delta=0.2),
            ],
        ),
    ],
)
def test_distort_color_is_the_od_api_sequence(sample: Sample, ordering: int, steps: list) -> None:
    """preprocessor.random_distort_color: the fixed ranges and orders of the OD API."""
    for seed in range(3):
        expected = sample
        rng = generator(seed)
        for step in steps:
            expected = step(expected, rng)
        distorted = RandomDistortColor(color_ordering=ordering)(sample, generator(seed))
        assert torch.equal(distorted.image, expected.image)


def test_pixel_value_scale_multiplies_each_value_within_the_range() -> None:
    image = torch.full((3, 20, 20), 100, dtype=torch.uint8)
    scaled = RandomPixelValueScale(minval=0.9, maxval=1.1)(
        Sample(height=20, width=20, image=image), generator(7)
    ).image.int()
    assert scaled.min() >= 90 and scaled.max() <= 110
    assert scaled.min() < 93 and scaled.max() > 107  # the whole range is used
    assert len(scaled.unique()) > 10  # one factor per value, not one per image


def test_distort_color_is_reproducible_and_rejects_unknown_ordering(sample: Sample) -> None:
    step = RandomDistortColor(color_ordering=1)
    assert torch.equal(step(sample, generator(5)).image, step(sample, generator(5)).image)
    assert not torch.equal(step(sample, generator(5)).image, step(sample, generator(6)).image)
    with pytest.raises(ValueError, match="color_ordering must be 0 or 1"):
        RandomDistortColor(color_ordering=2)
