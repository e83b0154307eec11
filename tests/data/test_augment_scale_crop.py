"""random_scale_crop_and_pad_to_square and random_square_crop_by_scale: the output square,
where pixels and objects go, what is dropped."""

from __future__ import annotations

import pytest
import torch
from test_augment_crop import COLORS, rectangle_sample

from objdet.data.augment_scale_crop import (
    RandomScaleCropAndPadToSquare,
    RandomSquareCropByScale,
    _crop_border,
)
from objdet.errors import ConfigError


def _painted_box(image: torch.Tensor, color: tuple[int, int, int]) -> list[float]:
    """(x1, y1, x2, y2) of the pixels of ``color`` in ``image`` [3, H, W]."""
    hits = (image == torch.tensor(color, dtype=image.dtype)[:, None, None]).all(dim=0)
    ys, xs = torch.nonzero(hits, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_upscale_crops_to_the_square_and_boxes_follow_the_pixels() -> None:
    sample = rectangle_sample(60, 100, [[10, 10, 40, 30], [80, 40, 100, 60]])
    step = RandomScaleCropAndPadToSquare(output_size=64, scale_min=1.5, scale_max=1.5)
    out = step(sample, torch.Generator().manual_seed(3))
    assert out.image.shape == (3, 64, 64) and (out.height, out.width) == (64, 64)
    for index, box in enumerate(out.boxes.tolist()):
        color = COLORS[int(out.labels[index]) - 1]
        painted = _painted_box(out.image, color)
        assert box == pytest.approx(painted, abs=1.5), (box, painted)
    assert (out.boxes >= 0).all() and (out.boxes <= 64).all()
    assert out.masks is not None and out.masks.shape[1:] == (64, 64)


def test_downscale_pads_bottom_right_with_zeros() -> None:
    sample = rectangle_sample(50, 100, [[0, 0, 100, 50]])
    sample.image[:] = 200  # no zero pixel inside the image
    step = RandomScaleCropAndPadToSquare(output_size=64, scale_min=0.5, scale_max=0.5)
    out = step(sample, torch.Generator().manual_seed(0))
    # longer side 100 -> 32: the image fills [0, 32) x [0, 16) of the 64 x 64 square
    assert out.boxes.tolist() == [[0.0, 0.0, 32.0, 16.0]]
    assert (out.image[:, :16, :32] == 200).all()
    assert (out.image[:, 16:, :] == 0).all() and (out.image[:, :, 32:] == 0).all()


def test_objects_outside_the_window_are_dropped_with_their_fields() -> None:
    sample = rectangle_sample(100, 100, [[0, 0, 10, 10], [90, 90, 100, 100]])
    step = RandomScaleCropAndPadToSquare(output_size=50, scale_min=2.0, scale_max=2.0)
    counts = set()
    for seed in range(20):
        out = step(sample, torch.Generator().manual_seed(seed))
        counts.add(len(out.boxes))
        assert len(out.labels) == len(out.boxes) == len(out.label_texts or [])
        assert out.masks is not None and len(out.masks) == len(out.boxes)
    assert 0 in counts  # a 50 px window of the 200 px image often misses both corners


def test_bad_ranges_are_config_errors() -> None:
    from google.protobuf import text_format

    from objdet.data.augment_builder import build_augmentation
    from objdet.protos import preprocessor_pb2

    step = text_format.Parse(
        "random_scale_crop_and_pad_to_square { output_size: 64 scale_min: 2.0 scale_max: 1.0 }",
        preprocessor_pb2.PreprocessingStep(),
    )
    with pytest.raises(ConfigError, match=r"data_augmentation_options\[0\]: "
                                          r"random_scale_crop_and_pad_to_square: scale_min"):
        build_augmentation(step)


# -- random_square_crop_by_scale (CenterNet) ----------------------------------------------
def test_crop_border_is_the_od_apis() -> None:
    # border // clip(2**ceil(log2(2 * border / size)), 1, border)
    assert [_crop_border(128, size) for size in (512, 256, 100, 10, 1)] == [128, 128, 32, 4, 1]


@pytest.mark.parametrize("seed", range(8))
def test_square_crop_copies_the_pixels_of_its_window_and_moves_the_boxes(seed: int) -> None:
    """The square of side int(s * 100) (s one of the 8 scales), centred >= the border from
    the edges: its pixels are the image's (bar the last row and column, as the OD API
    slices) or zeros, and boxes move with them, clipped; boxes outside are dropped."""
    sample = rectangle_sample(60, 100, [[10, 10, 40, 30], [80, 40, 100, 60]])
    values = torch.arange(60 * 100, dtype=torch.int32).reshape(60, 100)
    sample.image[:] = torch.stack([values % 251 + 1, values // 251 + 1, values % 7 + 1]).to(sample.image.dtype)
    step = RandomSquareCropByScale(max_border=16, scale_min=0.3, scale_max=1.2, num_scales=4)
    out = step(sample, torch.Generator().manual_seed(seed))
    size = out.image.shape[1]
    assert out.image.shape == (3, size, size)
    assert size in {int(float(s) * 100) for s in torch.linspace(0.3, 1.2, 4)}
    # locate the window from a pixel copied from the image (every pixel value is unique)
    inside = (out.image != 0).all(dim=0)
    y, x = (int(v[0]) for v in torch.nonzero(inside, as_tuple=True))
    pixel = out.image[:, y, x].long()
    source = int(pixel[1] - 1) * 251 + int(pixel[0] - 1)
    top, left = source // 100 - y, source % 100 - x
    for yy in range(size):
        for xx in range(0, size, 7):
            iy, ix = yy + top, xx + left
            expected = sample.image[:, iy, ix] if 0 <= iy < 59 and 0 <= ix < 99 else torch.zeros(3)
            assert torch.equal(out.image[:, yy, xx], expected.to(out.image.dtype)), (yy, xx)
    moved = sample.boxes - torch.tensor([left, top, left, top], dtype=torch.float32)
    keep = (moved[:, 0] < size) & (moved[:, 1] < size) & (moved[:, 2] > 0) & (moved[:, 3] > 0)
    torch.testing.assert_close(out.boxes, moved[keep].clamp(0, size))
    assert out.labels.tolist() == sample.labels[keep].tolist()
    assert out.masks is not None and out.masks.shape == (int(keep.sum()), size, size)


def test_square_crop_centres_keep_the_border_and_built_from_the_proto() -> None:
    from google.protobuf import text_format

    from objdet.data.augment_builder import build_augmentation
    from objdet.protos import preprocessor_pb2

    step = build_augmentation(text_format.Parse(
        "random_square_crop_by_scale { scale_min: 0.6 scale_max: 1.3 max_border: 64 }",
        preprocessor_pb2.PreprocessingStep()))
    assert isinstance(step, RandomSquareCropByScale)
    assert (step.max_border, step.num_scales) == (64, 8)  # num_scales: the proto's default
    assert (step.scale_min, step.scale_max) == pytest.approx((0.6, 1.3))
    sample = rectangle_sample(200, 300, [[0, 0, 300, 200]])  # one box: the whole image
    for seed in range(20):
        out = step(sample, torch.Generator().manual_seed(seed))
        box = out.boxes[0]
        # the centre (64 px from the edges at least) is inside the square: its box is not empty
        assert box[2] > box[0] and box[3] > box[1]
