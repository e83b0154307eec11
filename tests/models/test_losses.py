import math

import pytest
import torch

from objdet.models import losses


def test_focal_loss_matches_the_formula() -> None:
    logits = torch.tensor([[[2.0, -1.0]]])
    targets = torch.tensor([[[1.0, 0.0]]])
    loss = losses.WeightedSigmoidFocalLoss(gamma=2.0, alpha=0.75)(
        logits, targets, torch.tensor([[2.0]])
    )
    p_positive, p_negative = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    positive = 0.75 * (1 - p_positive) ** 2 * -math.log(p_positive)
    negative = 0.25 * p_negative**2 * -math.log(1 - p_negative)
    assert math.isclose(loss.item(), 2 * (positive + negative), rel_tol=1e-5)


def test_sigmoid_loss_sums_weighted_cross_entropy_over_classes() -> None:
    logits = torch.tensor([[[2.0, -1.0], [0.5, 0.0]]])  # [1, 2 anchors, 2 classes]
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    loss = losses.WeightedSigmoidLoss()(logits, targets, torch.tensor([[3.0, 0.5]]))

    def log_sigmoid(x: float) -> float:
        return -math.log(1 + math.exp(-x))

    first = -log_sigmoid(2.0) - log_sigmoid(1.0)  # -log s(2) - log(1 - s(-1))
    second = -log_sigmoid(-0.5) - log_sigmoid(0.0)
    assert loss.shape == (1, 2)
    assert loss[0].tolist() == pytest.approx([3.0 * first, 0.5 * second], rel=1e-5)


def test_softmax_loss_divides_by_logit_scale() -> None:
    logits = torch.tensor([[[2.0, 0.0]]])
    targets = torch.tensor([[[0.0, 1.0]]])
    loss = losses.WeightedSoftmaxLoss(logit_scale=2.0)(logits, targets, torch.full((1, 1), 0.5))
    assert math.isclose(
        loss.item(), -0.5 * math.log(math.exp(0) / (math.exp(1) + math.exp(0))), rel_tol=1e-5
    )


def test_localization_losses() -> None:
    predictions = torch.tensor([[[0.5, 2.0, 0.0, 0.0]]])
    targets = torch.zeros(1, 1, 4)
    smooth = losses.WeightedSmoothL1Loss(delta=1.0)(predictions, targets, torch.tensor([[2.0]]))
    assert math.isclose(smooth.item(), 2 * (0.5 * 0.25 + (2.0 - 0.5)), rel_tol=1e-6)
    # delta 0.5: |d| < 0.5 -> 0.5 d^2, else delta * (|d| - delta / 2)
    smooth_half = losses.WeightedSmoothL1Loss(delta=0.5)(predictions, targets, torch.ones(1, 1))
    assert math.isclose(smooth_half.item(), 0.5 * (0.5 - 0.25) + 0.5 * (2.0 - 0.25), rel_tol=1e-6)
    l2 = losses.WeightedL2Loss()(predictions, targets, torch.tensor([[2.0]]))
    assert math.isclose(l2.item(), 0.5 * ((2 * 0.5) ** 2 + (2 * 2.0) ** 2), rel_tol=1e-6)
