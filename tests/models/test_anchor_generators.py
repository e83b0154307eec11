import math

import pytest
import torch

from objdet.models.anchor_generators import (
    MultiscaleAnchorGenerator,
    SSDAnchorGenerator,
    create_ssd_box_specs,
)


def _box(cx: float, cy: float, height: float, width: float) -> list[float]:
    return [cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2]


def test_ssd_box_specs_follow_the_od_api_formula() -> None:
    specs = create_ssd_box_specs(
        num_layers=3,
        min_scale=0.2,
        max_scale=0.8,
        aspect_ratios=[1.0, 2.0],
        reduce_boxes_in_lowest_layer=True,
    )
    # scales 0.2, 0.5, 0.8 then 1.0; lowest layer reduced to 3 boxes.
    assert specs[0] == [(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)]
    assert specs[1] == [(0.5, 1.0), (0.5, 2.0), (pytest.approx(math.sqrt(0.5 * 0.8)), 1.0)]
    assert specs[2] == [(0.8, 1.0), (0.8, 2.0), (pytest.approx(math.sqrt(0.8)), 1.0)]


def test_ssd_anchors_equal_hand_computed_values() -> None:
    specs = create_ssd_box_specs(
        num_layers=2,
        min_scale=0.2,
        max_scale=0.9,
        aspect_ratios=[1.0, 2.0],
        reduce_boxes_in_lowest_layer=False,
    )
    anchors = SSDAnchorGenerator(box_specs=specs)([(2, 2), (1, 1)], 100, 100)
    assert anchors.shape == (2 * 2 * 3 + 1 * 1 * 3, 4)
    root2 = math.sqrt(2.0)
    interpolated = math.sqrt(0.2 * 0.9) * 100
    expected_first_cell = [
        _box(25, 25, 20, 20),  # scale 0.2, ratio 1
        _box(25, 25, 20 / root2, 20 * root2),  # ratio 2 = width / height
        _box(25, 25, interpolated, interpolated),
    ]
    assert torch.allclose(anchors[:3], torch.tensor(expected_first_cell), atol=1e-4)
    # Second cell of the first row: x centre moves by one stride (50 px).
    assert torch.allclose(anchors[3], torch.tensor(_box(75, 25, 20, 20)), atol=1e-4)
    # Row-major: the third cell is the second row.
    assert torch.allclose(anchors[6], torch.tensor(_box(25, 75, 20, 20)), atol=1e-4)
    last = math.sqrt(0.9 * 1.0) * 100
    assert torch.allclose(anchors[-1], torch.tensor(_box(50, 50, last, last)), atol=1e-4)


def test_ssd_anchors_stay_square_on_non_square_images() -> None:
    generator = SSDAnchorGenerator(box_specs=[[(0.5, 1.0)]])
    anchors = generator([(1, 2)], 100, 200)  # shorter side 100 -> 50 px boxes
    assert torch.allclose(anchors, torch.tensor([_box(50, 50, 50, 50), _box(150, 50, 50, 50)]))


def test_ssd_anchor_strides_and_offsets_follow_each_axis() -> None:
    generator = SSDAnchorGenerator(box_specs=[[(0.5, 1.0)]])
    anchors = generator([(2, 4)], 60, 200)  # strides (y 30, x 50), offsets half a stride
    assert anchors.shape == (8, 4)
    assert torch.allclose(anchors[0], torch.tensor(_box(25, 15, 30, 30)))
    assert torch.allclose(anchors[1], torch.tensor(_box(75, 15, 30, 30)))
    assert torch.allclose(anchors[4], torch.tensor(_box(25, 45, 30, 30)))  # second row


def test_interpolated_scale_aspect_ratio_zero_adds_no_box() -> None:
    specs = create_ssd_box_specs(
        num_layers=2,
        min_scale=0.2,
        max_scale=0.9,
        aspect_ratios=[1.0, 2.0],
        interpolated_scale_aspect_ratio=0.0,
        reduce_boxes_in_lowest_layer=False,
    )
    assert specs == [
        [(0.2, 1.0), (0.2, 2.0)],
        [(pytest.approx(0.9), 1.0), (pytest.approx(0.9), 2.0)],
    ]


def test_ssd_anchors_with_explicit_strides_and_offsets() -> None:
    generator = SSDAnchorGenerator(
        box_specs=[[(0.1, 1.0)]],
        base_anchor_size=(2.0, 1.0),
        strides=[(16.0, 8.0)],
        offsets=[(0.0, 4.0)],
    )
    anchors = generator([(2, 1)], 64, 64)
    # height 0.1 * 2 * 64 = 12.8, width 0.1 * 64 = 6.4; centres (y, x) = (0, 4), (16, 4)
    assert torch.allclose(anchors, torch.tensor([_box(4, 0, 12.8, 6.4), _box(4, 16, 12.8, 6.4)]))


def test_multiscale_anchors_match_retinanet_layout() -> None:
    generator = MultiscaleAnchorGenerator(
        min_level=3, max_level=4, anchor_scale=4.0, aspect_ratios=[1.0, 2.0], scales_per_octave=2
    )
    assert generator.num_anchors_per_location() == [4, 4]
    anchors = generator([(8, 8), (4, 4)], 64, 64)
    assert anchors.shape == ((64 + 16) * 4, 4)
    # level 3: stride 8, base 32; ratio 1 scales 1 and sqrt(2), then ratio 2.
    size = 32 * math.sqrt(2)
    expected = [
        _box(4, 4, 32, 32),
        _box(4, 4, size, size),
        _box(4, 4, 32 / math.sqrt(2), 32 * math.sqrt(2)),
    ]
    assert torch.allclose(anchors[:3], torch.tensor(expected), atol=1e-4)
    # first anchor of level 4: stride 16, offset 8, base 64
    assert torch.allclose(anchors[64 * 4], torch.tensor(_box(8, 8, 64, 64)))


def test_multiscale_offset_is_zero_on_an_axis_not_divisible_by_the_stride() -> None:
    generator = MultiscaleAnchorGenerator(
        min_level=3, max_level=3, anchor_scale=4.0, aspect_ratios=[1.0], scales_per_octave=1
    )
    anchors = generator([(8, 8)], 60, 64)  # 60 % 8 != 0: the OD API puts y centres at 0, 8, ..
    assert torch.allclose(anchors[0], torch.tensor(_box(4, 0, 32, 32)))
    assert torch.allclose(anchors[8], torch.tensor(_box(4, 8, 32, 32)))  # second row


def test_anchor_generator_rejects_wrong_number_of_maps() -> None:
    generator = SSDAnchorGenerator(box_specs=[[(0.5, 1.0)], [(0.9, 1.0)]])
    with pytest.raises(ValueError, match="2 anchor layers"):
        generator([(2, 2)], 64, 64)
