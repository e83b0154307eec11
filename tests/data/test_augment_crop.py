"""Random crops: window sampling constraints and the OD API's drop/clip rules for objects."""

from __future__ import annotations

import math

import pytest
import torch

from objdet.data.augment_crop import (
    CropWindow,
    RandomCropImage,
    SSDRandomCrop,
    crop_to_window,
    default_ssd_crop_operations,
    sample_crop_window,
)
from objdet.structures.sample import Sample

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def rectangle_sample(height: int, width: int, boxes: list[list[int]]) -> Sample:
    """Object i painted as a filled COLORS[i] rectangle, with masks, keypoints and all flags."""
    count = len(boxes)
    image = torch.zeros((3, height, width), dtype=torch.uint8)
    masks = torch.zeros((count, height, width), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        image[:, y1:y2, x1:x2] = torch.tensor(COLORS[i], dtype=torch.uint8)[:, None, None]
        masks[i, y1:y2, x1:x2] = 1
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    centers = (box_tensor[:, :2] + box_tensor[:, 2:]) / 2
    return Sample(
        height=height,
        width=width,
        image=image,
        boxes=box_tensor,
        labels=torch.arange(1, count + 1, dtype=torch.int64),
        label_texts=[f"object{i + 1}" for i in range(count)],
        difficult=torch.arange(count) % 2 == 0,
        is_crowd=torch.arange(count) % 2 == 1,
        group_of=torch.zeros(count, dtype=torch.bool),
        weights=torch.arange(1, count + 1, dtype=torch.float32) / 10,
        areas=(box_tensor[:, 2] - box_tensor[:, 0]) * (box_tensor[:, 3] - box_tensor[:, 1]),
        masks=masks,
        keypoints=centers[:, None, :],  # [N, 1, 2]: each object's center
        keypoint_visibilities=torch.ones((count, 1), dtype=torch.bool),
    )


def assert_objects_aligned(sample: Sample) -> None:
    """Every per-object field still describes the object its label names."""
    for row, label in enumerate(sample.labels.tolist()):
        i = label - 1
        assert sample.label_texts[row] == f"object{label}"
        assert bool(sample.difficult[row]) == (i % 2 == 0)
        assert bool(sample.is_crowd[row]) == (i % 2 == 1)
        assert math.isclose(float(sample.weights[row]), label / 10, rel_tol=1e-6)
        color = torch.tensor(COLORS[i], dtype=torch.uint8)[:, None, None]
        painted = (sample.image == color).all(dim=0)
        assert torch.equal(sample.masks[row].bool(), painted)
        rows, cols = painted.nonzero(as_tuple=True)
        bounds = [
            float(cols.min()),
            float(rows.min()),
            float(cols.max() + 1),
            float(rows.max() + 1),
        ]
        assert sample.boxes[row].tolist() == bounds


def test_hand_made_crop_drops_clips_and_keeps_fields_aligned() -> None:
    sample = rectangle_sample(
        100,
        100,
        [
            [40, 10, 90, 20],  # 10 of 50 columns inside a 50-wide window: IoA 0.2 -> dropped
            [30, 30, 70, 40],  # half inside: IoA 0.5 >= 0.3 -> kept, clipped to x2 = 50
            [60, 60, 90, 90],  # completely outside -> pruned
            [5, 5, 15, 45],  # fully inside -> kept unchanged
        ],
    )
    cropped = crop_to_window(
        sample, CropWindow(top=0, left=0, height=50, width=50), overlap_thresh=0.3, clip_boxes=True
    )
    assert (cropped.height, cropped.width) == (50, 50)
    assert cropped.labels.tolist() == [2, 4]
    assert cropped.boxes.tolist() == [[30.0, 30.0, 50.0, 40.0], [5.0, 5.0, 15.0, 45.0]]
    assert cropped.label_texts == ["object2", "object4"]
    assert cropped.keypoints[:, 0].tolist() == [[50.0, 35.0], [10.0, 25.0]]
    assert cropped.areas.tolist() == [400.0, 400.0]  # areas select with their objects
    assert_objects_aligned(cropped)


def test_crop_window_offset_moves_boxes_into_the_window_frame() -> None:
    sample = rectangle_sample(60, 80, [[10, 10, 30, 30], [50, 20, 74, 50]])
    cropped = crop_to_window(
        sample,
        CropWindow(top=15, left=20, height=40, width=40),
        overlap_thresh=0.3,
        clip_boxes=True,
    )
    # object 1 keeps 10x15 of its 20x20 (IoA 0.375): kept, clipped; object 2 keeps 10x30 of 24x30.
    assert cropped.boxes.tolist() == [[0.0, 0.0, 10.0, 15.0], [30.0, 5.0, 40.0, 35.0]]
    # object 1's center (20, 20) sits on the window's left edge: kept; object 2's (62, 35) is outside.
    assert cropped.keypoints[0, 0].tolist() == [0.0, 5.0]
    assert torch.isnan(cropped.keypoints[1, 0]).all()
    assert cropped.keypoint_visibilities.tolist() == [[True], [False]]
    assert_objects_aligned(cropped)


def test_overlap_threshold_zero_keeps_partial_boxes_but_prunes_outside_and_touching_ones() -> None:
    sample = rectangle_sample(40, 40, [[15, 0, 25, 10], [20, 20, 30, 30], [10, 0, 20, 5]])
    window = CropWindow(top=0, left=0, height=20, width=20)
    cropped = crop_to_window(sample, window, overlap_thresh=0.0, clip_boxes=True)
    # box 2 touches the window only at its corner (x1 == 20): completely outside.
    assert cropped.labels.tolist() == [1, 3]
    assert cropped.boxes.tolist() == [[15.0, 0.0, 20.0, 10.0], [10.0, 0.0, 20.0, 5.0]]


def test_overlap_threshold_one_keeps_boxes_fully_inside() -> None:
    # ssd_random_crop's last operation uses overlap_thresh 1.0: IoA >= 1 keeps whole boxes.
    sample = rectangle_sample(40, 40, [[2, 2, 10, 10], [15, 15, 25, 25]])
    window = CropWindow(top=0, left=0, height=20, width=20)
    cropped = crop_to_window(sample, window, overlap_thresh=1.0, clip_boxes=True)
    assert cropped.labels.tolist() == [1]
    assert cropped.boxes.tolist() == [[2.0, 2.0, 10.0, 10.0]]


@pytest.mark.parametrize(
    "box",
    [
        [12, 0, 20, 10],  # ends at the window's top (y2 == top)
        [0, 12, 10, 20],  # ends at its left edge (x2 == left)
        [30, 12, 38, 20],  # starts at its right edge (x1 == right)
        [12, 30, 20, 38],  # starts at its bottom edge (y1 == bottom)
    ],
)
def test_boxes_touching_the_window_from_outside_are_pruned(box: list[int]) -> None:
    sample = rectangle_sample(40, 40, [box, [12, 12, 20, 20]])
    window = CropWindow(top=10, left=10, height=20, width=20)
    cropped = crop_to_window(sample, window, overlap_thresh=0.0, clip_boxes=True)
    # with overlap_thresh 0 a touching box would be kept (IoA 0 >= 0) were it not pruned first
    assert cropped.labels.tolist() == [2]
    assert cropped.boxes.tolist() == [[2.0, 2.0, 10.0, 10.0]]


def test_without_clip_boxes_kept_boxes_extend_past_the_window() -> None:
    sample = rectangle_sample(40, 40, [[10, 10, 30, 30]])
    window = CropWindow(top=5, left=15, height=30, width=20)
    cropped = crop_to_window(sample, window, overlap_thresh=0.5, clip_boxes=False)
    assert cropped.boxes.tolist() == [[-5.0, 5.0, 15.0, 25.0]]
    assert cropped.keypoints[0, 0].tolist() == [
        5.0,
        15.0,
    ]  # not NaN: only clipping prunes keypoints


@pytest.mark.parametrize("seed", range(20))
def test_sampled_windows_respect_area_aspect_and_coverage(seed: int) -> None:
    boxes = torch.tensor([[40.0, 30.0, 60.0, 50.0]])
    window = sample_crop_window(
        80,
        120,
        boxes,
        min_object_covered=0.7,
        aspect_ratio_range=(0.5, 2.0),
        area_range=(0.1, 0.6),
        generator=torch.Generator().manual_seed(seed),
    )
    assert 0 <= window.top and window.top + window.height <= 80
    assert 0 <= window.left and window.left + window.width <= 120
    if (window.height, window.width) == (80, 120):
        return  # no attempt satisfied the constraints: the whole image, as in TensorFlow
    assert 0.1 * 9600 <= window.height * window.width <= 0.6 * 9600
    assert 0.5 - 0.05 <= window.width / window.height <= 2.0 + 0.05  # rounding to whole pixels
    overlap_w = min(60, window.left + window.width) - max(40, window.left)
    overlap_h = min(50, window.top + window.height) - max(30, window.top)
    assert max(overlap_w, 0) * max(overlap_h, 0) >= 0.7 * 400


def test_min_object_covered_one_finds_windows_containing_a_whole_box() -> None:
    boxes = torch.tensor([[40.0, 30.0, 50.0, 40.0]])
    windows = [
        sample_crop_window(
            80,
            120,
            boxes,
            min_object_covered=1.0,
            aspect_ratio_range=(0.5, 2.0),
            area_range=(0.1, 0.5),
            generator=torch.Generator().manual_seed(seed),
        )
        for seed in range(10)
    ]
    cropped = [window for window in windows if (window.height, window.width) != (80, 120)]
    assert len(cropped) >= 5  # coverage exactly 1.0 satisfies the constraint
    for window in cropped:
        assert window.left <= 40 and window.left + window.width >= 50
        assert window.top <= 30 and window.top + window.height >= 40


def test_window_offsets_are_drawn_below_the_free_space_as_tensorflow() -> None:
    # A 9 x 9 window in a 10 x 10 image: TF draws the offset uniformly in [0, 10 - 9) = {0}.
    for seed in range(20):
        window = sample_crop_window(
            10,
            10,
            torch.zeros(0, 4),
            min_object_covered=0.0,
            aspect_ratio_range=(1.0, 1.0),
            area_range=(0.8, 0.82),
            generator=torch.Generator().manual_seed(seed),
        )
        assert window == CropWindow(0, 0, 9, 9)


def test_impossible_constraints_fall_back_to_the_whole_image() -> None:
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    window = sample_crop_window(
        100,
        100,
        boxes,
        min_object_covered=1.0,
        aspect_ratio_range=(0.5, 2.0),
        area_range=(0.1, 0.5),
        generator=torch.Generator().manual_seed(0),
    )
    assert window == CropWindow(0, 0, 100, 100)


def test_random_coef_one_never_crops() -> None:
    sample = rectangle_sample(30, 30, [[5, 5, 10, 10]])
    step = RandomCropImage(min_object_covered=0.0, area_range=(0.1, 0.3), random_coef=1.0)
    assert step(sample, torch.Generator().manual_seed(0)) is sample


def test_random_crop_image_keeps_objects_consistent_over_many_seeds() -> None:
    sample = rectangle_sample(48, 64, [[4, 4, 20, 30], [30, 10, 60, 20], [10, 34, 50, 46]])
    step = RandomCropImage(
        min_object_covered=0.3,
        aspect_ratio_range=(0.5, 2.0),
        area_range=(0.2, 0.8),
        overlap_thresh=0.5,
    )
    sizes = set()
    for seed in range(30):
        cropped = step(sample, torch.Generator().manual_seed(seed))
        sizes.add((cropped.height, cropped.width))
        assert cropped.height * cropped.width <= 0.8 * 48 * 64 or (
            cropped.height,
            cropped.width,
        ) == (48, 64)
        assert_objects_aligned(cropped)
    assert len(sizes) > 5


def test_ssd_random_crop_defaults_are_the_seven_ssd_operations() -> None:
    operations = default_ssd_crop_operations()
    assert [op.min_object_covered for op in operations] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert [op.overlap_thresh for op in operations] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert {
        (op.aspect_ratio_range, op.area_range, op.clip_boxes, op.random_coef) for op in operations
    } == {((0.5, 2.0), (0.1, 1.0), True, 0.15)}
    assert SSDRandomCrop().operations == operations


def test_ssd_random_crop_is_reproducible_and_consistent() -> None:
    sample = rectangle_sample(48, 64, [[4, 4, 20, 30], [30, 10, 60, 20], [10, 34, 50, 46]])
    step = SSDRandomCrop()
    for seed in range(15):
        first = step(sample, torch.Generator().manual_seed(seed))
        second = step(sample, torch.Generator().manual_seed(seed))
        assert torch.equal(first.image, second.image) and torch.equal(first.boxes, second.boxes)
        assert_objects_aligned(first)


def test_crop_of_sample_without_objects_keeps_area_limits() -> None:
    empty = Sample(height=40, width=40, image=torch.zeros((3, 40, 40), dtype=torch.uint8))
    cropped = RandomCropImage(
        min_object_covered=0.0, area_range=(0.25, 0.25), aspect_ratio_range=(1.0, 1.0)
    )(empty, torch.Generator().manual_seed(0))
    assert (cropped.height, cropped.width) == (20, 20)
    assert cropped.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"random_coef": 2.0}, "random_coef must be in"),
        ({"area_range": (0.5, 0.1)}, "min_area"),
        ({"aspect_ratio_range": (0.0, 1.0)}, "min_aspect_ratio must be > 0"),
        ({"area_range": (0.0, 0.0)}, "max_area must be in"),
    ],
)
def test_invalid_crop_parameters_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RandomCropImage(**kwargs)
