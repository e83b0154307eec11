import math

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


def test_softmax_loss_divides_by_logit_scale() -> None:
    logits = torch.tensor([[[2.0, 0.0]]])
    targets = torch.tensor([[[0.0, 1.0]]])
    loss = losses.WeightedSoftmaxLoss(logit_scale=2.0)(logits, targets, torch.ones(1, 1))
    assert math.isclose(
        loss.item(), -math.log(math.exp(0) / (math.exp(1) + math.exp(0))), rel_tol=1e-5
    )


def test_localization_losses() -> None:
    predictions = torch.tensor([[[0.5, 2.0, 0.0, 0.0]]])
    targets = torch.zeros(1, 1, 4)
    smooth = losses.WeightedSmoothL1Loss(delta=1.0)(predictions, targets, torch.tensor([[2.0]]))
    assert math.isclose(smooth.item(), 2 * (0.5 * 0.25 + (2.0 - 0.5)), rel_tol=1e-6)
    l2 = losses.WeightedL2Loss()(predictions, targets, torch.tensor([[2.0]]))
    assert math.isclose(l2.item(), 0.5 * ((2 * 0.5) ** 2 + (2 * 2.0) ** 2), rel_tol=1e-6)
