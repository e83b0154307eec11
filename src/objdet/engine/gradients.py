"""Gradient adjustments between ``backward()`` and the optimizer step.

``train_config.bias_grad_multiplier`` (the OD API's TF1 trainer, legacy/trainer.py):
when non-zero, the gradients of the variables matching ``.*/biases`` are multiplied by it
before freezing and clipping. In slim, ``biases`` are the additive terms of conv and
fully-connected layers; a batch norm's shift is ``beta`` and is not scaled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from torch import nn


@dataclass(frozen=True)
class GradientMultiplier:
    """Multiplies the gradients of ``parameters`` by ``factor``."""

    parameters: tuple[nn.Parameter, ...]
    factor: float

    def apply(self) -> None:
        for parameter in self.parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(self.factor)


def bias_parameters(model: nn.Module) -> tuple[nn.Parameter, ...]:
    """The trainable biases of the conv and linear layers of ``model`` (what slim calls
    ``biases``); normalization layers' shifts are not among them."""
    return tuple(
        cast(nn.Parameter, module.bias)
        for module in model.modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
        and module.bias is not None and module.bias.requires_grad
    )


def bias_grad_multiplier(model: nn.Module, factor: float) -> list[GradientMultiplier]:
    """``[]`` when ``factor`` is 0 (the OD API's "off"), else one multiplier over the biases."""
    if factor == 0:
        return []
    return [GradientMultiplier(bias_parameters(model), factor)]
