"""CenterNet's losses as the OD API computes them (``core/losses.py``), per element.

- ``penalty_reduced_logistic_focal_loss`` (Objects as Points, eq. 1): on a pixel whose
  target heatmap is exactly 1, ``-(1 - p)^alpha * log(p)``; elsewhere
  ``-(1 - y)^beta * p^alpha * log(1 - p)``; ``p = clip(sigmoid(logit), c, 1 - c)`` with the
  OD API's ``sigmoid_clip_value`` c = 1e-4.
- ``l1_localization_loss``: ``|prediction - target|`` (``tf.losses.absolute_difference``).

Both return the unreduced loss times ``weights`` (broadcast); the meta-architecture sums and
normalizes by the number of instances, as the OD API does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SIGMOID_CLIP_VALUE = 1e-4


class PenaltyReducedLogisticFocalLoss(nn.Module):
    """``forward(logits, targets, weights) -> loss`` of the logits' shape
    (``[B, H * W, C]`` logits and heatmap targets in [0, 1]; weights broadcast)."""

    def __init__(self, *, alpha: float = 2.0, beta: float = 4.0,
                 sigmoid_clip_value: float = SIGMOID_CLIP_VALUE) -> None:
        super().__init__()
        self.alpha, self.beta, self.sigmoid_clip_value = alpha, beta, sigmoid_clip_value

    def forward(self, logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        probabilities = torch.sigmoid(logits).clamp(self.sigmoid_clip_value,
                                                    1.0 - self.sigmoid_clip_value)
        positive = (1.0 - probabilities).pow(self.alpha) * torch.log(probabilities)
        negative = ((1.0 - targets).pow(self.beta) * probabilities.pow(self.alpha)
                    * torch.log(1.0 - probabilities))
        return -torch.where(targets == 1.0, positive, negative) * weights


class L1LocalizationLoss(nn.Module):
    """``forward(predictions, targets, weights) -> |predictions - targets| * weights``."""

    def forward(self, predictions: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        return (predictions - targets).abs() * weights


__all__ = ["SIGMOID_CLIP_VALUE", "L1LocalizationLoss", "PenaltyReducedLogisticFocalLoss"]
