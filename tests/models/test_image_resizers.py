"""Image resizers and batching against hand-computed sizes, scales and pixels."""

import pytest
import torch

from objdet.models.image_resizers import (
    FixedShapeResizer,
    KeepAspectRatioResizer,
    batch_images,
    resize_image,
)


def test_fixed_shape_resizer_gives_height_then_width() -> None:
    resizer = FixedShapeResizer(height=30, width=50)
    assert resizer.output_size(100, 100) == (30, 50)
    assert resizer.canvas_size([(30, 50)]) == (30, 50)
    batch = batch_images([torch.rand(3, 100, 100)], resizer)
    assert batch.images.shape == (1, 3, 30, 50)
    assert batch.scales().tolist() == [[pytest.approx(0.3), pytest.approx(0.5)]]  # (y, x)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((30, 90), (27, 80)),  # shorter side to 48 gives 144 > 80: longer side to 80
        ((48, 60), (48, 60)),  # already in range
        ((100, 50), (80, 40)),  # portrait: 96 > 80
        ((33, 70), (38, 80)),  # 33 * 80 / 70 = 37.7 rounds to 38, as the OD API's round()
        ((60, 40), (72, 48)),  # shorter side 40 -> 48
        ((70, 45), (75, 48)),  # 70 * 48 / 45 = 74.7 rounds to 75
    ],
)
def test_keep_aspect_ratio_resizer_follows_resize_to_range(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert KeepAspectRatioResizer(min_dimension=48, max_dimension=80).output_size(*size) == expected


def test_pad_to_max_dimension_gives_a_square_canvas() -> None:
    resizer = KeepAspectRatioResizer(min_dimension=48, max_dimension=80, pad_to_max_dimension=True)
    batch = batch_images([torch.rand(3, 30, 90), torch.rand(3, 60, 40)], resizer)
    assert batch.images.shape == (2, 3, 80, 80)
    assert batch.resized_sizes == [(27, 80), (72, 48)]
    plain = KeepAspectRatioResizer(min_dimension=48, max_dimension=80)
    assert batch_images([torch.rand(3, 30, 90), torch.rand(3, 60, 40)], plain).images.shape == (
        2,
        3,
        72,
        80,
    )


def test_canvas_is_padded_up_to_a_multiple_with_the_pad_value() -> None:
    resizer = KeepAspectRatioResizer(
        min_dimension=48, max_dimension=80, pad_value=(0.25, 0.5, 0.75)
    )
    image = torch.rand(3, 30, 90)
    batch = batch_images([image], resizer, pad_to_multiple=16)
    assert batch.images.shape == (1, 3, 32, 80)  # 27 x 80 rounded up to multiples of 16
    assert torch.equal(
        batch.images[0, :, 27:, :], torch.tensor([0.25, 0.5, 0.75])[:, None, None].expand(3, 5, 80)
    )
    assert batch.scales().tolist() == [[pytest.approx(27 / 30), pytest.approx(80 / 90)]]


def test_bilinear_resize_is_tf1_resize_images() -> None:
    image = torch.tensor([0.0, 1.0]).reshape(1, 1, 2).expand(3, 1, 2)
    # TF1 resize_bilinear (the OD API's): output pixel i samples source x = i * 2 / 4 =
    # 0, 0.5, 1, 1.5 (clamped); half-pixel centres would give 0, 0.25, 0.75, 1.
    resized = resize_image(image, (1, 4), "bilinear")
    assert resized[0, 0].tolist() == [0.0, 0.5, 1.0, 1.0]
    shrunk = resize_image(torch.arange(6.0).reshape(1, 1, 6), (1, 4), "bilinear")
    assert shrunk[0, 0].tolist() == [0.0, 1.5, 3.0, 4.5]  # x = i * 1.5


def test_nearest_resize_is_tf1_resize_nearest_neighbor() -> None:
    image = torch.arange(5.0).reshape(1, 1, 5)
    # source x = floor(i * 5 / 3) = 0, 1, 3 (half-pixel centres would give 0, 2, 4)
    assert resize_image(image, (1, 3), "nearest")[0, 0].tolist() == [0.0, 1.0, 3.0]
