"""Geometric augmentation steps keep boxes, masks and keypoints consistent with the image."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from objdet.data.augment import AugmentationPipeline
from objdet.data.augment_geometric import (
    RandomHorizontalFlip,
    RandomImageScale,
    RandomJitterBoxes,
    RandomPadImage,
    RandomRotation90,
    RandomVerticalFlip,
)
from objdet.errors import DataError
from objdet.structures.sample import Sample

# Distinct colors, one per object: the rectangle of object i is painted COLORS[i].
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def rectangle_sample(height: int, width: int, boxes: list[list[int]]) -> Sample:
    """A black image with object i painted as a filled COLORS[i] rectangle at boxes[i], plus
    masks of the same rectangles and one keypoint per object at the box's top-left corner."""
    image = torch.zeros((3, height, width), dtype=torch.uint8)
    masks = torch.zeros((len(boxes), height, width), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        image[:, y1:y2, x1:x2] = torch.tensor(COLORS[i], dtype=torch.uint8)[:, None, None]
        masks[i, y1:y2, x1:x2] = 1
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return Sample(
        height=height,
        width=width,
        image=image,
        boxes=box_tensor,
        labels=torch.arange(1, len(boxes) + 1, dtype=torch.int64),
        masks=masks,
        keypoints=box_tensor[:, None, :2].clone(),  # [N, 1, 2]
        keypoint_visibilities=torch.ones((len(boxes), 1), dtype=torch.bool),
        weights=torch.linspace(0.5, 1.0, len(boxes)),
    )


def pixel_bounds(image: torch.Tensor, color: tuple[int, int, int]) -> list[float]:
    """(x1, y1, x2, y2) bounding the pixels that have exactly ``color``."""
    hits = (image == torch.tensor(color, dtype=image.dtype)[:, None, None]).all(dim=0)
    rows, cols = hits.nonzero(as_tuple=True)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def assert_boxes_match_pixels(sample: Sample) -> None:
    assert sample.image is not None
    assert (sample.height, sample.width) == tuple(sample.image.shape[1:])
    for box, label in zip(sample.boxes.tolist(), sample.labels.tolist(), strict=True):
        assert box == pixel_bounds(sample.image, COLORS[label - 1])
    if sample.masks is not None:
        assert sample.masks.shape[1:] == sample.image.shape[1:]
        for box, mask in zip(sample.boxes.tolist(), sample.masks, strict=True):
            rows, cols = mask.nonzero(as_tuple=True)
            assert box == [
                float(cols.min()),
                float(rows.min()),
                float(cols.max() + 1),
                float(rows.max() + 1),
            ]


def assert_samples_equal(first: Sample, second: Sample) -> None:
    for field in dataclasses.fields(Sample):
        a, b = getattr(first, field.name), getattr(second, field.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), field.name
        else:
            assert a == b, field.name


@pytest.fixture
def sample() -> Sample:
    return rectangle_sample(12, 20, [[2, 3, 7, 6], [10, 6, 19, 12], [0, 0, 20, 2]])


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "step",
    [
        RandomHorizontalFlip(probability=1.0),
        RandomVerticalFlip(probability=1.0),
        RandomRotation90(probability=1.0),
    ],
)
def test_geometric_step_keeps_boxes_on_their_pixels(sample: Sample, step) -> None:
    original = dataclasses.replace(sample, image=sample.image.clone(), boxes=sample.boxes.clone())
    transformed = step(sample, generator())
    assert not torch.equal(transformed.image, sample.image)
    assert_boxes_match_pixels(transformed)
    assert_samples_equal(sample, original)  # the input was not mutated


def test_rotation90_moves_points_counter_clockwise(sample: Sample) -> None:
    rotated = RandomRotation90(probability=1.0)(sample, generator())
    assert (rotated.height, rotated.width) == (20, 12)
    # The top-right pixel (x=19, y=0) of a counter-clockwise rotated image lands top-left.
    assert torch.equal(rotated.image[:, 0, 0], sample.image[:, 0, 19])
    # keypoint (x, y) -> (y, W - x)
    assert rotated.keypoints[1, 0].tolist() == [6.0, 20.0 - 10.0]


@pytest.mark.parametrize(
    ("step", "times"),
    [
        (RandomHorizontalFlip(probability=1.0), 2),
        (RandomVerticalFlip(probability=1.0), 2),
        (RandomRotation90(probability=1.0), 4),
    ],
)
def test_repeating_a_flip_or_rotation_is_the_identity(sample: Sample, step, times: int) -> None:
    transformed = AugmentationPipeline([step] * times)(sample, generator())
    for name in ("image", "boxes", "masks", "keypoints", "labels", "weights"):
        assert torch.equal(getattr(transformed, name), getattr(sample, name)), name
    assert (transformed.height, transformed.width) == (sample.height, sample.width)


@pytest.mark.parametrize(
    "step", [RandomHorizontalFlip(probability=0.0), RandomRotation90(probability=0.0)]
)
def test_probability_zero_returns_the_sample_unchanged(sample: Sample, step) -> None:
    assert step(sample, generator()) is sample


def test_flip_probability_is_respected() -> None:
    flip = RandomHorizontalFlip(probability=0.3)
    tiny = rectangle_sample(2, 4, [[0, 0, 1, 1]])
    rng = generator(1)
    flipped = sum(flip(tiny, rng) is not tiny for _ in range(2000))
    assert 0.25 < flipped / 2000 < 0.35


def test_keypoint_flip_permutation_swaps_left_and_right() -> None:
    sample = rectangle_sample(10, 10, [[2, 2, 6, 6]])
    keypoints = torch.tensor([[[3.0, 4.0], [5.0, 4.0]]])  # [1, 2, 2]: left eye, right eye
    sample = dataclasses.replace(
        sample, keypoints=keypoints, keypoint_visibilities=torch.tensor([[True, False]])
    )
    flipped = RandomHorizontalFlip(probability=1.0, keypoint_flip_permutation=(1, 0))(
        sample, generator()
    )
    assert flipped.keypoints.tolist() == [[[5.0, 4.0], [7.0, 4.0]]]
    assert flipped.keypoint_visibilities.tolist() == [[False, True]]
    with pytest.raises(DataError, match="3 entries but sample .* has 2 keypoints"):
        RandomHorizontalFlip(probability=1.0, keypoint_flip_permutation=(1, 0, 2))(
            sample, generator()
        )


def test_image_scale_resizes_boxes_with_the_image(sample: Sample) -> None:
    step = RandomImageScale(min_scale_ratio=2.0, max_scale_ratio=2.0)
    scaled = step(sample, generator())
    assert (scaled.height, scaled.width) == (24, 40)
    assert scaled.boxes.tolist() == (sample.boxes * 2).tolist()
    assert torch.equal(scaled.masks, sample.masks.repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert_boxes_match_pixels(dataclasses.replace(scaled, image=_binarize(scaled.image)))


def test_image_scale_floors_the_size_and_scales_each_axis_by_its_own_factor() -> None:
    sample = rectangle_sample(12, 20, [[2, 3, 7, 6], [10, 6, 19, 12]])
    sample = dataclasses.replace(sample, areas=torch.tensor([15.0, 54.0]))
    scaled = RandomImageScale(min_scale_ratio=1.375, max_scale_ratio=1.375)(sample, generator())
    # The OD API casts to int: 12 * 1.375 = 16.5 -> 16, 20 * 1.375 = 27.5 -> 27.
    assert (scaled.height, scaled.width) == (16, 27)
    factors = torch.tensor([27 / 20, 16 / 12, 27 / 20, 16 / 12])
    assert torch.allclose(scaled.boxes, sample.boxes * factors)
    assert torch.allclose(scaled.keypoints, sample.keypoints * factors[:2])
    assert torch.allclose(scaled.areas, sample.areas * (27 / 20) * (16 / 12))


def test_flips_move_keypoints_to_the_mirrored_coordinate() -> None:
    sample = rectangle_sample(10, 16, [[2, 3, 6, 7]])  # keypoint at the top-left (2, 3)
    flipped = RandomHorizontalFlip(probability=1.0)(sample, generator())
    assert flipped.keypoints.tolist() == [[[16.0 - 2.0, 3.0]]]
    flipped = RandomVerticalFlip(probability=1.0)(sample, generator())
    assert flipped.keypoints.tolist() == [[[2.0, 10.0 - 3.0]]]


def test_geometric_steps_drop_stored_detections() -> None:
    sample = rectangle_sample(10, 16, [[2, 3, 6, 7]])
    sample = dataclasses.replace(
        sample,
        detection_boxes=torch.tensor([[2.0, 3.0, 6.0, 7.0]]),
        detection_scores=torch.tensor([0.9]),
        detection_labels=torch.tensor([1]),
    )
    for step in (RandomHorizontalFlip(1.0), RandomRotation90(1.0), RandomPadImage()):
        moved = step(sample, generator())
        assert moved.detection_boxes is None and moved.detection_scores is None, step
        assert moved.detection_labels is None, step


def _binarize(image: torch.Tensor) -> torch.Tensor:
    """Undo interpolation blur of a 0/255 image: each value becomes 0 or 255."""
    return torch.where(image >= 128, 255, 0).to(torch.uint8)


def test_image_scale_draws_ratio_in_range(sample: Sample) -> None:
    step = RandomImageScale(min_scale_ratio=0.5, max_scale_ratio=1.5)
    rng = generator(3)
    heights = {step(sample, rng).height for _ in range(50)}
    assert min(heights) >= 6 and max(heights) <= 17 and len(heights) > 3


def test_pad_places_image_on_a_larger_canvas(sample: Sample) -> None:
    step = RandomPadImage(
        min_image_size=(20, 30), max_image_size=(25, 40), pad_color=(7.0, 8.0, 9.0)
    )
    for seed in range(5):
        padded = step(sample, generator(seed))
        assert 20 <= padded.height < 25 and 30 <= padded.width < 40
        assert_boxes_match_pixels(padded)
        assert padded.image[:, 0, 0].tolist() in ([7, 8, 9], COLORS[2])
        assert int(
            (padded.image == torch.tensor([7, 8, 9], dtype=torch.uint8)[:, None, None]).all(0).sum()
        ) == (padded.height * padded.width - sample.height * sample.width)


def test_pad_defaults_to_mean_color_and_up_to_twice_the_size(sample: Sample) -> None:
    padded = RandomPadImage()(sample, generator(4))
    assert sample.height <= padded.height < 2 * sample.height
    mean = sample.image.float().mean(dim=(1, 2)).round().to(torch.uint8)
    corner_colors = {tuple(padded.image[:, y, x].tolist()) for y in (0, -1) for x in (0, -1)}
    assert tuple(mean.tolist()) in corner_colors or padded.height == sample.height


@pytest.mark.parametrize("mode", ["default", "expand", "shrink"])
def test_jitter_moves_each_edge_by_at_most_ratio_of_the_box(mode: str) -> None:
    sample = rectangle_sample(100, 100, [[20, 30, 60, 50]])
    jittered = RandomJitterBoxes(ratio=0.1, jitter_mode=mode)(sample, generator(5)).boxes[0]
    delta = jittered - sample.boxes[0]  # box is 40 wide, 20 high: edges move <= 2 / 1 pixels
    assert delta.abs().max() <= 2.0 + 1e-5
    assert delta[[1, 3]].abs().max() <= 1.0 + 1e-5
    grows = torch.tensor([-1.0, -1.0, 1.0, 1.0]) * delta
    if mode == "expand":
        assert (grows >= 0).all()
    if mode == "shrink":
        assert (grows <= 0).all()


@pytest.mark.parametrize("mode", ["expand_symmetric", "shrink_symmetric_xy", "expand_symmetric_xy"])
def test_symmetric_jitter_keeps_the_center_and_stays_inside(mode: str) -> None:
    sample = rectangle_sample(50, 50, [[0, 10, 20, 30], [10, 10, 40, 20]])
    jittered = RandomJitterBoxes(ratio=0.5, jitter_mode=mode)(sample, generator(6)).boxes
    centers = (jittered[:, :2] + jittered[:, 2:]) / 2
    assert torch.allclose(centers, (sample.boxes[:, :2] + sample.boxes[:, 2:]) / 2)
    assert jittered.min() >= 0 and jittered.max() <= 50
    if mode.endswith("_xy"):
        scale = (jittered[:, 2:] - jittered[:, :2]) / (sample.boxes[:, 2:] - sample.boxes[:, :2])
        assert torch.allclose(scale[1, 0], scale[1, 1])


@pytest.mark.parametrize("mode", ["default", "expand"])
def test_jittered_boxes_are_clipped_to_the_image(mode: str) -> None:
    sample = rectangle_sample(30, 40, [[0, 0, 40, 30], [30, 20, 40, 30]])  # touch the borders
    for seed in range(5):
        jittered = RandomJitterBoxes(ratio=0.5, jitter_mode=mode)(sample, generator(seed)).boxes
        assert jittered[:, [0, 1]].min() >= 0
        assert jittered[:, 2].max() <= 40 and jittered[:, 3].max() <= 30
    expanded = RandomJitterBoxes(ratio=0.5, jitter_mode="expand")(sample, generator()).boxes
    assert expanded[0].tolist() == [0.0, 0.0, 40.0, 30.0]  # grown past every edge, clipped


def test_jitter_with_ratio_zero_keeps_boxes(sample: Sample) -> None:
    assert torch.equal(RandomJitterBoxes(ratio=0.0)(sample, generator()).boxes, sample.boxes)


def test_same_seed_same_result(sample: Sample) -> None:
    pipeline = AugmentationPipeline(
        [RandomHorizontalFlip(), RandomImageScale(), RandomPadImage(), RandomJitterBoxes()]
    )
    first, second = pipeline(sample, generator(42)), pipeline(sample, generator(42))
    assert_samples_equal(first, second)
    others = [pipeline(sample, generator(seed)) for seed in range(5)]
    assert any(
        other.boxes.shape != first.boxes.shape or not torch.equal(other.boxes, first.boxes)
        for other in others
    )


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: RandomHorizontalFlip(probability=1.5), "probability must be in"),
        (lambda: RandomImageScale(min_scale_ratio=2.0, max_scale_ratio=1.0), "min_scale_ratio"),
        (lambda: RandomJitterBoxes(jitter_mode="sideways"), "jitter_mode must be one of"),
        (lambda: RandomPadImage(pad_color=(1.0, 2.0)), "pad_color must have 3 values"),
    ],
)
def test_invalid_parameters_are_rejected(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_empty_sample_passes_through_every_geometric_step() -> None:
    empty = Sample(height=8, width=6, image=torch.zeros((3, 8, 6), dtype=torch.uint8))
    pipeline = AugmentationPipeline(
        [
            RandomHorizontalFlip(1.0),
            RandomVerticalFlip(1.0),
            RandomRotation90(1.0),
            RandomImageScale(),
            RandomPadImage(),
            RandomJitterBoxes(),
        ]
    )
    result = pipeline(empty, generator())
    assert result.boxes.shape == (0, 4) and result.labels.shape == (0,)
    assert result.image.shape == (3, result.height, result.width)


def test_random_absolute_pad_image_pads_by_less_than_the_maximum() -> None:
    """OD API random_absolute_pad_image: the canvas grows by [0, max_padding) per axis, the
    image lands at a random offset and its boxes move with it; the builder turns an unset
    (0) maximum into 1, no padding."""
    from google.protobuf import text_format

    from objdet.data.augment_builder import build_augmentation
    from objdet.data.augment_geometric import RandomAbsolutePadImage
    from objdet.protos import preprocessor_pb2

    sample = rectangle_sample(20, 30, [[5, 4, 15, 12]])
    step = build_augmentation(text_format.Parse(
        "random_absolute_pad_image { max_height_padding: 6 max_width_padding: 9 }",
        preprocessor_pb2.PreprocessingStep()))
    assert step == RandomAbsolutePadImage(max_height_padding=6, max_width_padding=9)
    paddings = set()
    for seed in range(40):
        out = step(sample, torch.Generator().manual_seed(seed))
        pad_y, pad_x = out.height - 20, out.width - 30
        assert 0 <= pad_y < 6 and 0 <= pad_x < 9
        paddings.add((pad_y, pad_x))
        shift = out.boxes[0] - sample.boxes[0]
        left, top = int(shift[0]), int(shift[1])
        assert shift.tolist() == [left, top, left, top] and 0 <= top <= pad_y and 0 <= left <= pad_x
        assert torch.equal(out.image[:, top:top + 20, left:left + 30], sample.image)
    assert len(paddings) > 10
    unset = build_augmentation(text_format.Parse("random_absolute_pad_image {}", preprocessor_pb2.PreprocessingStep()))
    assert unset(sample, torch.Generator().manual_seed(0)).image.shape == (3, 20, 30)
