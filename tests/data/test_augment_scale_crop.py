"""random_scale_crop_and_pad_to_square: the output square, where objects go, what is dropped."""

from __future__ import annotations

import pytest
import torch
from test_augment_crop import COLORS, rectangle_sample

from objdet.data.augment_scale_crop import RandomScaleCropAndPadToSquare
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
