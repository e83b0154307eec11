"""Weight decay per parameter: the OD API's L2 regularizers, handed to the optimizer.

A component built from a ``conv_hyperparams`` message carries ``weight_decay`` (the L2
weight) and ``regularize_depthwise``. Its conv and linear weights get that decay; batch
norm parameters and biases get none (slim regularizes only ``weights``); depthwise conv
weights get it only with ``regularize_depthwise``. The nearest such component up the module
tree decides; parameters outside every component get no decay.
"""

from __future__ import annotations

from typing import Any, cast

from torch import nn


def _decay_of(module: nn.Module, owner: nn.Module | None) -> float:
    if owner is None or not isinstance(module, (nn.Conv2d, nn.Linear)):
        return 0.0
    is_depthwise = (
        isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
    )
    if is_depthwise and not getattr(owner, "regularize_depthwise", False):
        return 0.0
    return float(cast(float, owner.weight_decay))  # set by the modules that own conv layers


def parameter_groups(model: nn.Module, *, regularize: bool = True) -> list[dict[str, Any]]:
    """``[{"params": [...], "weight_decay": float}, ...]`` for ``torch.optim`` optimizers,
    one group per distinct decay, covering every trainable parameter exactly once.

    ``regularize=False`` (``train_config.add_regularization_loss: false``) gives every
    parameter a decay of 0, as the OD API then leaves the regularization losses out.
    """
    groups: dict[float, list[nn.Parameter]] = {}

    def visit(module: nn.Module, owner: nn.Module | None) -> None:
        if hasattr(module, "weight_decay"):
            owner = module
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            decay = _decay_of(module, owner) if name == "weight" and regularize else 0.0
            groups.setdefault(decay, []).append(parameter)
        for child in module.children():
            visit(child, owner)

    visit(model, None)
    return [{"params": params, "weight_decay": decay} for decay, params in sorted(groups.items())]
