"""The OD API's classification and localization losses, per anchor.

Every loss here returns ``Tensor[B, A]``: one value per anchor, already weighted and summed
over classes (classification) or code dimensions (localization), which is all SSD uses.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class WeightedSigmoidLoss(nn.Module):
    """Sigmoid cross entropy per class column, summed: ``weighted_sigmoid``."""

    def forward(self, logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        """``logits``/``targets`` ``[B, A, K]``, ``weights`` ``[B, A]`` -> ``[B, A]``."""
        per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return (per_entry * weights[..., None]).sum(dim=-1)


class WeightedSoftmaxLoss(nn.Module):
    """Softmax cross entropy over the class columns: ``weighted_softmax`` (with ``logit_scale``)."""

    def __init__(self, *, logit_scale: float = 1.0) -> None:
        super().__init__()
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
        self.logit_scale = logit_scale

    def forward(self, logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        """``logits``/``targets`` ``[B, A, K]``, ``weights`` ``[B, A]`` -> ``[B, A]``."""
        log_probabilities = F.log_softmax(logits / self.logit_scale, dim=-1)
        return -(targets * log_probabilities).sum(dim=-1) * weights


class WeightedSigmoidFocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``weighted_sigmoid_focal`` with ``gamma`` and ``alpha``.

    ``alpha=None`` (the OD API's unset field) applies no class balancing factor.
    """

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        """``logits``/``targets`` ``[B, A, K]``, ``weights`` ``[B, A]`` -> ``[B, A]``."""
        per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        probabilities = torch.sigmoid(logits)
        p_t = targets * probabilities + (1 - targets) * (1 - probabilities)
        loss = per_entry
        if self.gamma:
            loss = loss * torch.pow(1.0 - p_t, self.gamma)
        if self.alpha is not None:
            loss = loss * (targets * self.alpha + (1 - targets) * (1 - self.alpha))
        return (loss * weights[..., None]).sum(dim=-1)


class WeightedSmoothL1Loss(nn.Module):
    """Huber loss with ``delta`` per code dimension, summed: ``weighted_smooth_l1``."""

    def __init__(self, *, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, predictions: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        """``predictions``/``targets`` ``[B, A, 4]``, ``weights`` ``[B, A]`` -> ``[B, A]``."""
        per_entry = F.huber_loss(predictions, targets, reduction="none", delta=self.delta)
        return (per_entry * weights[..., None]).sum(dim=-1)


class WeightedL2Loss(nn.Module):
    """``0.5 * ((prediction - target) * weight)**2`` summed: ``weighted_l2``.

    As in the OD API, the weight multiplies the difference before squaring.
    """

    def forward(self, predictions: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
        """``predictions``/``targets`` ``[B, A, 4]``, ``weights`` ``[B, A]`` -> ``[B, A]``."""
        weighted_difference = (predictions - targets) * weights[..., None]
        return 0.5 * weighted_difference.square().sum(dim=-1)
