"""Detection models built from ``DetectionModel`` configs.

    from objdet.models import build_model, parameter_groups
    model = build_model(pipeline.model)        # SSD today; see builder.META_ARCHITECTURES
    optimizer = torch.optim.SGD(parameter_groups(model), lr=0.01)

Importing this package does not import torch; the names above load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model", "parameter_groups"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from objdet.models.builder import build_model

        return build_model
    if name == "parameter_groups":
        from objdet.models.regularization import parameter_groups

        return parameter_groups
    raise AttributeError(f"module 'objdet.models' has no attribute {name!r}")
