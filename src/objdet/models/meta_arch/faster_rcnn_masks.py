"""Mask R-CNN's mask tensors as the OD API's ``FasterRCNNMetaArch`` moves them between frames.

- :func:`canvas_masks`: groundtruth instance masks (input-image pixels) -> the canvas, resized
  as the OD API's image resizers resize masks (TF1 nearest neighbour) and zero-padded;
- :func:`mask_targets`: each positive proposal's groundtruth mask cropped to the proposal and
  resized to ``mask_height x mask_width`` (``_loss_box_classifier``'s ``_crop_and_resize_fn``);
- :func:`select_class_masks`: the mask of each detection's class (``_gather_instance_masks``);
- :func:`reframe_box_masks_to_image_masks`: box-relative masks pasted into the image
  (``utils/ops.reframe_box_masks_to_image_masks``: ``tf.image.crop_and_resize`` of each mask
  over the image corners seen from its box, bilinear, 0 outside the box).
"""

from __future__ import annotations

import torch
from torch import Tensor

from objdet.models.image_resizers import resize_image
from objdet.models.layers.crop_and_resize import crop_and_resize


def canvas_masks(masks: Tensor, resized_size: tuple[int, int],
                 canvas_size: tuple[int, int]) -> Tensor:
    """``masks [N, H, W]`` (0/1, input-image pixels) -> float ``[N, H_c, W_c]``: resized to
    ``resized_size`` (height, width) by TF1's nearest neighbour (as ``resize_to_range`` /
    ``resize_image`` resize masks) and pasted top-left on a zero canvas."""
    height, width = resized_size
    masks = masks.float()
    if (height, width) != tuple(masks.shape[1:]) and masks.shape[0] > 0:
        masks = resize_image(masks, (height, width), "nearest")
    canvas = masks.new_zeros(masks.shape[0], *canvas_size)
    canvas[:, :height, :width] = masks[:, :canvas_size[0], :canvas_size[1]]
    return canvas


def mask_targets(gt_masks: Tensor, proposals: Tensor, matches: Tensor,
                 canvas_size: tuple[int, int], mask_size: tuple[int, int]) -> Tensor:
    """``gt_masks [N, H_c, W_c]`` canvas masks, ``proposals [P, 4]`` (x1, y1, x2, y2) canvas
    pixels, ``matches [P]`` (the groundtruth index of each proposal, < 0 unmatched) ->
    ``[P, mask_height, mask_width]``: the matched mask sampled over the proposal as
    ``crop_and_resize`` samples (bilinear, corners on the box edges); 0 for unmatched rows.
    One crop per groundtruth, so memory stays ``O(N * H_c * W_c)``."""
    height, width = canvas_size
    normalized = proposals / proposals.new_tensor([width, height, width, height])
    targets = proposals.new_zeros(proposals.shape[0], *mask_size)
    for index in torch.unique(matches[matches >= 0]).tolist():
        rows = torch.nonzero(matches == index, as_tuple=True)[0]
        crops = crop_and_resize(gt_masks[index][None, None], normalized[rows][None], mask_size)
        targets[rows] = crops[:, 0]  # [rows, mask_height, mask_width]
    return targets


def select_class_masks(mask_logits: Tensor, labels: Tensor) -> Tensor:
    """``mask_logits [D, C, h, w]`` and ``labels [D]`` (1..C) -> ``[D, h, w]``: the mask of each
    detection's class (the only one when ``C == 1``: class-agnostic or one class)."""
    if mask_logits.shape[1] == 1:
        return mask_logits[:, 0]
    rows = torch.arange(mask_logits.shape[0], device=mask_logits.device)
    return mask_logits[rows, labels.long() - 1]


def reframe_box_masks_to_image_masks(box_masks: Tensor, boxes: Tensor,
                                     image_size: tuple[int, int]) -> Tensor:
    """``box_masks [D, h, w]`` float, ``boxes [D, 4]`` (x1, y1, x2, y2) as fractions of the
    image -> ``[D, H, W]`` image masks (``image_size`` = (H, W)).

    The OD API reframes with ``tf.image.crop_and_resize(box_masks, boxes_seen_from_image,
    [H, W], extrapolation_value=0)``: image row ``i`` samples mask row
    ``(i / (H - 1) - y1) / (y2 - y1) * (h - 1)`` (box sides at least 1e-4), bilinearly, and
    a sample outside ``[0, h - 1]`` (in either axis) is 0. Bilinear sampling separates into
    rows, then columns."""
    height, width = image_size
    x1, y1, x2, y2 = boxes.unbind(1)  # [D] each
    box_height = (y2 - y1).clamp(min=1e-4)
    box_width = (x2 - x1).clamp(min=1e-4)
    rows = _interpolate(box_masks, -y1 / box_height, (1 - y1) / box_height, height, dim=1)
    return _interpolate(rows, -x1 / box_width, (1 - x1) / box_width, width, dim=2)


def _interpolate(values: Tensor, start: Tensor, end: Tensor, size: int, dim: int) -> Tensor:
    """``tf.image.crop_and_resize`` along one axis: ``values [D, a, b]`` sampled at ``size``
    positions from ``start`` to ``end [D]`` (fractions of ``dim``'s extent), 0 outside."""
    extent = int(values.shape[dim])
    if size > 1:
        steps = torch.arange(size, dtype=values.dtype, device=values.device)
        positions = (start[:, None] * (extent - 1)
                     + steps * ((end - start) * (extent - 1) / (size - 1))[:, None])
    else:
        positions = (0.5 * (start + end) * (extent - 1))[:, None]  # [D, size]
    inside = (positions >= 0) & (positions <= extent - 1)
    low = positions.floor()
    weight = positions - low
    low_index = low.long().clamp(0, extent - 1)
    high_index = positions.ceil().long().clamp(0, extent - 1)
    if dim == 1:  # [D, size, b]
        shape = (-1, -1, int(values.shape[2]))
        low_values = values.gather(1, low_index[:, :, None].expand(*shape))
        high_values = values.gather(1, high_index[:, :, None].expand(*shape))
        weight, inside = weight[:, :, None], inside[:, :, None]
    else:  # [D, a, size]
        shape = (-1, int(values.shape[1]), -1)
        low_values = values.gather(2, low_index[:, None, :].expand(*shape))
        high_values = values.gather(2, high_index[:, None, :].expand(*shape))
        weight, inside = weight[:, None, :], inside[:, None, :]
    sampled = low_values + (high_values - low_values) * weight
    return torch.where(inside, sampled, torch.zeros_like(sampled))
