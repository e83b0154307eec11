"""The OD API's hard example miner for SSD (Liu et al. 2016, "hard negative mining").

Per image, anchors are ranked by loss, NMS over their decoded boxes removes near duplicates
(``iou_threshold``), the top ``num_hard_examples`` survive, and then negatives are capped at
``max(min_negatives_per_image, max_negatives_per_positive * num_positives)`` in loss order.
Ignored anchors (match -2) are dropped from the selection. The OD API keeps those ranked
before the negative quota runs out, but an ignored anchor has class and box weight 0, so
its losses are zero and the mined sums are the same.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

from objdet.models.matchers import UNMATCHED

LOSS_TYPES = ("CLASSIFICATION", "LOCALIZATION", "BOTH")


class HardExampleMiner:
    """Selects hard anchors and returns the summed mined losses (see module docstring)."""

    def __init__(
        self,
        *,
        num_hard_examples: int | None = 64,
        iou_threshold: float = 0.7,
        loss_type: str = "BOTH",
        classification_weight: float = 1.0,
        localization_weight: float = 1.0,
        max_negatives_per_positive: float | None = None,
        min_negatives_per_image: int = 0,
    ) -> None:
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        self.num_hard_examples = num_hard_examples
        self.iou_threshold = iou_threshold
        self.loss_type = loss_type
        self.classification_weight = classification_weight
        self.localization_weight = localization_weight
        self.max_negatives_per_positive = max_negatives_per_positive
        self.min_negatives_per_image = min_negatives_per_image

    def select(
        self,
        localization_losses: Tensor,
        classification_losses: Tensor,
        boxes: Tensor,
        matches: Tensor,
    ) -> Tensor:
        """One image: losses ``[A]``, decoded boxes ``[A, 4]`` (x1, y1, x2, y2), matches ``[A]``
        -> selected anchor indices ``[S]`` int64, in descending mining-loss order."""
        if self.loss_type == "CLASSIFICATION":
            ranking_losses = classification_losses
        elif self.loss_type == "LOCALIZATION":
            ranking_losses = localization_losses
        else:
            ranking_losses = (
                classification_losses * self.classification_weight
                + localization_losses * self.localization_weight
            )
        selected = nms(boxes.detach().float(), ranking_losses.detach().float(), self.iou_threshold)
        if self.num_hard_examples is not None:
            selected = selected[: self.num_hard_examples]
        if self.max_negatives_per_positive is None:
            return selected
        return self._cap_negatives(selected, matches)

    def _cap_negatives(self, selected: Tensor, matches: Tensor) -> Tensor:
        is_positive = matches[selected] >= 0
        is_negative = matches[selected] == UNMATCHED
        num_positives = int(is_positive.sum())
        assert self.max_negatives_per_positive is not None
        max_negatives = max(
            self.min_negatives_per_image, int(self.max_negatives_per_positive * num_positives)
        )
        within_quota = torch.cumsum(is_negative.long(), dim=0) <= max_negatives
        return selected[is_positive | (is_negative & within_quota)]

    def __call__(
        self,
        localization_losses: Tensor,
        classification_losses: Tensor,
        boxes: Tensor,
        matches: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Batch: losses ``[B, A]``, boxes ``[B, A, 4]``, matches ``[B, A]`` -> summed mined
        (localization, classification) losses, scalars."""
        localization_total = localization_losses.new_zeros(())
        classification_total = classification_losses.new_zeros(())
        for image in range(localization_losses.shape[0]):
            selected = self.select(
                localization_losses[image],
                classification_losses[image],
                boxes[image],
                matches[image],
            )
            localization_total = localization_total + localization_losses[image][selected].sum()
            classification_total = (
                classification_total + classification_losses[image][selected].sum()
            )
        return localization_total, classification_total
