"""Target assignment: anchors + groundtruth -> per-anchor class and box targets and weights.

Mirrors the OD API's ``TargetAssigner`` with IoU similarity: a matched anchor gets its
groundtruth's one-hot class (background column 0 included) and encoded box; an unmatched or
ignored anchor gets ``unmatched_class_label`` and a zero box. Box weights are the
groundtruth weight for matched anchors, else 0; class weights are the groundtruth weight
for matched anchors, ``negative_class_weight`` for negatives and 0 for ignored anchors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torchvision.ops import box_iou

from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.matchers import UNMATCHED


class Matcher(Protocol):
    def __call__(self, similarity: Tensor) -> Tensor: ...


@dataclass
class AssignedTargets:
    """Targets of one batch. ``A`` anchors, ``K`` class columns (background included)."""

    class_targets: Tensor  # [B, A, K] float
    class_weights: Tensor  # [B, A] float
    box_targets: Tensor  # [B, A, code_size] float
    box_weights: Tensor  # [B, A] float
    matches: Tensor  # [B, A] int64: gt index, -1 unmatched, -2 ignored


class TargetAssigner:
    """Assigns targets to anchors image by image (see the module docstring)."""

    def __init__(
        self,
        *,
        matcher: Matcher,
        box_coder: FasterRcnnBoxCoder,
        unmatched_class_label: Tensor,
        negative_class_weight: float = 1.0,
    ) -> None:
        self.matcher = matcher
        self.box_coder = box_coder
        self.unmatched_class_label = unmatched_class_label  # [K]
        self.negative_class_weight = negative_class_weight

    def assign_image(
        self, anchors: Tensor, gt_boxes: Tensor, gt_classes: Tensor, gt_weights: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One image: anchors ``[A, 4]``, gt boxes ``[N, 4]`` (x1, y1, x2, y2, same units),
        one-hot classes ``[N, K]``, weights ``[N]`` -> class targets ``[A, K]``, class weights
        ``[A]``, box targets ``[A, 4]``, box weights ``[A]``, matches ``[A]``."""
        matches = self.matcher(box_iou(gt_boxes, anchors))  # [A]
        matched = matches >= 0
        gt_index = matches.clamp(min=0)
        if gt_boxes.shape[0] == 0:
            # Nothing to gather from; a one-row dummy keeps the code free of branches below.
            gt_boxes = anchors.new_zeros((1, 4))
            gt_classes = anchors.new_zeros((1, self.unmatched_class_label.numel()))
            gt_weights = anchors.new_zeros((1,))
        box_targets = self.box_coder.encode(gt_boxes[gt_index], anchors)  # [A, 4]
        box_targets = torch.where(matched[:, None], box_targets, torch.zeros_like(box_targets))
        unmatched_label = self.unmatched_class_label.to(anchors)
        class_targets = torch.where(
            matched[:, None],
            gt_classes[gt_index].to(anchors),
            unmatched_label[None, :].expand(anchors.shape[0], -1),
        )
        matched_weights = gt_weights[gt_index].to(anchors)
        box_weights = torch.where(matched, matched_weights, torch.zeros_like(matched_weights))
        class_weights = torch.where(
            matched,
            matched_weights,
            torch.where(
                matches == UNMATCHED,
                torch.full_like(matched_weights, self.negative_class_weight),
                torch.zeros_like(matched_weights),
            ),
        )
        return class_targets, class_weights, box_targets, box_weights, matches

    def assign(
        self,
        anchors: Tensor,
        gt_boxes: list[Tensor],
        gt_classes: list[Tensor],
        gt_weights: list[Tensor],
    ) -> AssignedTargets:
        """A batch: per-image lists as in :meth:`assign_image` -> stacked :class:`AssignedTargets`."""
        per_image = [
            self.assign_image(anchors, boxes, classes, weights)
            for boxes, classes, weights in zip(gt_boxes, gt_classes, gt_weights)
        ]
        class_targets, class_weights, box_targets, box_weights, matches = (
            torch.stack(parts) for parts in zip(*per_image)
        )
        return AssignedTargets(class_targets, class_weights, box_targets, box_weights, matches)
