"""Image resizers (``fixed_shape_resizer``, ``keep_aspect_ratio_resizer``) and batching.

Images arrive as a list of float ``[3, H, W]`` tensors in [0, 1] of any sizes. Each is
resized, then all are pasted top-left onto one canvas (``[B, 3, H_c, W_c]``) filled with the
pad value. The scale factors map canvas pixels back to input-image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

INTERPOLATIONS = {
    "BILINEAR": "bilinear",
    "NEAREST_NEIGHBOR": "nearest",
    "BICUBIC": "bicubic",
    "AREA": "area",
}


class FixedShapeResizer:
    """Resize every image to ``height x width`` (aspect ratio not kept)."""

    def __init__(self, *, height: int, width: int, interpolation: str = "bilinear") -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"height and width must be > 0, got {height}x{width}")
        self.height, self.width, self.interpolation = height, width, interpolation
        self.pad_value = (0.0, 0.0, 0.0)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Resized (height, width) of an image of ``height x width``."""
        return self.height, self.width

    def canvas_size(self, resized_sizes: list[tuple[int, int]]) -> tuple[int, int]:
        """The batch canvas: always ``height x width``."""
        return self.height, self.width


class KeepAspectRatioResizer:
    """The OD API's ``resize_to_range``: shorter side to ``min_dimension`` unless the longer
    side would exceed ``max_dimension``, then longer side to ``max_dimension``.

    With ``pad_to_max_dimension`` the canvas is ``max_dimension`` square; otherwise it is
    the largest resized image of the batch.
    """

    def __init__(
        self,
        *,
        min_dimension: int,
        max_dimension: int,
        pad_to_max_dimension: bool = False,
        interpolation: str = "bilinear",
        pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        if min_dimension <= 0 or max_dimension < min_dimension:
            raise ValueError(
                f"need 0 < min_dimension <= max_dimension, got {min_dimension}, {max_dimension}"
            )
        self.min_dimension, self.max_dimension = min_dimension, max_dimension
        self.pad_to_max_dimension = pad_to_max_dimension
        self.interpolation = interpolation
        self.pad_value = pad_value

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Resized (height, width) of an image of ``height x width`` (Python rounding, as the
        OD API's static-shape path)."""
        scale = self.min_dimension / min(height, width)
        size = (round(height * scale), round(width * scale))
        if max(size) > self.max_dimension:
            scale = self.max_dimension / max(height, width)
            size = (round(height * scale), round(width * scale))
        return size

    def canvas_size(self, resized_sizes: list[tuple[int, int]]) -> tuple[int, int]:
        """The batch canvas (height, width)."""
        if self.pad_to_max_dimension:
            return self.max_dimension, self.max_dimension
        return max(size[0] for size in resized_sizes), max(size[1] for size in resized_sizes)


ImageResizer = FixedShapeResizer | KeepAspectRatioResizer


def resize_image(image: Tensor, size: tuple[int, int], interpolation: str) -> Tensor:
    """``[C, H, W]`` float -> ``[C, height, width]`` as the OD API resizes (``interpolation``
    one of ``INTERPOLATIONS``' values).

    The OD API resizes with TF1's ``tf.image.resize_images`` (``align_corners=False``,
    no half-pixel centres): output pixel ``i`` samples input position ``i * in / out``
    (float32). Bilinear and nearest follow that rule exactly (:func:`_legacy_resize`);
    bicubic and area use ``F.interpolate`` (half-pixel centres; no TF2 zoo config uses them).
    Both paths give the same values on any number of threads, so loader workers (one thread
    each) compute what the model computes.
    """
    if interpolation in ("bilinear", "nearest"):
        return _legacy_resize(image, size, interpolation)
    corners = {"align_corners": False} if interpolation == "bicubic" else {}
    return F.interpolate(image[:, None], size=size, mode=interpolation, **corners)[:, 0]


def _source_positions(in_size: int, out_size: int, device: torch.device) -> Tensor:
    """TF1's legacy scaler: ``i * (in / out)`` in float32, for output pixels ``i``."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    return torch.arange(out_size, dtype=torch.float32, device=device) * scale.to(device)


def _legacy_resize(image: Tensor, size: tuple[int, int], interpolation: str) -> Tensor:
    """TF1 ``resize_bilinear`` / ``resize_nearest_neighbor`` (align_corners and half-pixel
    centres off), separably: rows, then columns."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    rows = _source_positions(height, size[0], image.device)
    columns = _source_positions(width, size[1], image.device)
    if interpolation == "nearest":
        row_index = rows.floor().long().clamp(max=height - 1)
        column_index = columns.floor().long().clamp(max=width - 1)
        return image.index_select(-2, row_index).index_select(-1, column_index)
    top = rows.floor()
    row_weight = (rows - top).to(image.dtype)[:, None]  # [out_h, 1]
    top_index = top.long().clamp(max=height - 1)
    bottom_index = (top_index + 1).clamp(max=height - 1)
    top_rows, bottom_rows = image.index_select(-2, top_index), image.index_select(-2, bottom_index)
    resized_rows = top_rows + (bottom_rows - top_rows) * row_weight  # [C, out_h, W]
    left = columns.floor()
    column_weight = (columns - left).to(image.dtype)  # [out_w]
    left_index = left.long().clamp(max=width - 1)
    right_index = (left_index + 1).clamp(max=width - 1)
    left_columns = resized_rows.index_select(-1, left_index)
    right_columns = resized_rows.index_select(-1, right_index)
    return left_columns + (right_columns - left_columns) * column_weight


@dataclass
class ImageBatch:
    """Images resized onto one canvas."""

    images: Tensor  # [B, 3, H_c, W_c], in [0, 1] plus pad value
    resized_sizes: list[tuple[int, int]]  # (height, width) of each image on the canvas
    original_sizes: list[tuple[int, int]]  # (height, width) of each input image

    def scales(self) -> Tensor:
        """``[B, 2]`` (y, x) factors: canvas pixel = input pixel * factor."""
        return torch.tensor(
            [
                [resized[0] / original[0], resized[1] / original[1]]
                for resized, original in zip(self.resized_sizes, self.original_sizes)
            ],
            dtype=torch.float32,
            device=self.images.device,
        )


def batch_images(
    images: list[Tensor], resizer: ImageResizer, pad_to_multiple: int = 1,
    pad_value: tuple[float, float, float] | None = None,
) -> ImageBatch:
    """Resize ``[3, H_i, W_i]`` images and paste them onto one canvas, padded bottom/right
    to a multiple of ``pad_to_multiple`` with ``pad_value`` (default: the resizer's)."""
    if not images:
        raise ValueError("images is empty: expected at least one [3, H, W] tensor")
    for index, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{index}] has shape {tuple(image.shape)}, expected [3, H, W]")
    original_sizes = [(int(image.shape[1]), int(image.shape[2])) for image in images]
    resized_sizes = [resizer.output_size(*size) for size in original_sizes]
    canvas_height, canvas_width = resizer.canvas_size(resized_sizes)
    canvas_height = -(-canvas_height // pad_to_multiple) * pad_to_multiple
    canvas_width = -(-canvas_width // pad_to_multiple) * pad_to_multiple
    pad = torch.tensor(resizer.pad_value if pad_value is None else pad_value,
                       dtype=images[0].dtype, device=images[0].device)
    canvas = pad.view(1, 3, 1, 1).repeat(len(images), 1, canvas_height, canvas_width)
    for index, (image, (height, width)) in enumerate(zip(images, resized_sizes)):
        if (height, width) != tuple(image.shape[1:]):
            image = resize_image(image, (height, width), resizer.interpolation)
        canvas[index, :, :height, :width] = image
    return ImageBatch(canvas, resized_sizes, original_sizes)
