"""Exponential moving average of model weights (the OD API's use_moving_average).

Built on ``torch.optim.swa_utils.AveragedModel``; buffers (batch-norm statistics) are averaged
too, as TF's ExponentialMovingAverage over all model variables does.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def build_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An averaged copy of ``model``: ``avg = decay * avg + (1 - decay) * weights`` per update."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"moving_average_decay must be in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
