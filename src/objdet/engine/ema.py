"""Exponential moving average of model weights (the OD API's use_moving_average).

As the OD API (TF1's ``MovingAverageOptimizer``, TF2's ``tfa.optimizers.MovingAverage``), only
the trained variables are averaged: batch-norm moving statistics are not trainable, so the
averaged model uses the live model's. Averaging them too (``AveragedModel(use_buffers=True)``)
was measured worse on the raccoon main job: one checkpoint scored AP@0.5 0.63 with averaged
statistics, 0.73 with the live ones (benchmarks/RESULTS.md, "main job recipe search, part 3").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class ExponentialMovingAverage(AveragedModel):
    """An averaged copy of a model: ``avg = decay * avg + (1 - decay) * weights`` per update
    for parameters; buffers (batch-norm statistics) are copied from the live model."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"moving_average_decay must be in (0, 1), got {decay}")
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        super().update_parameters(model)
        for own, live in zip(self.module.buffers(), model.buffers(), strict=True):
            own.copy_(live)


def build_ema(model: nn.Module, decay: float) -> ExponentialMovingAverage:
    """The moving average of ``model``'s weights, updated after every optimizer step."""
    return ExponentialMovingAverage(model, decay)
