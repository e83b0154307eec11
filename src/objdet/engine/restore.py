"""Models restored from training checkpoints: the raw weights or their moving average (EMA).

The trainer's checkpoints (``objdet.engine.checkpoint``) hold ``"model"`` (a state_dict) and
``"ema"`` (the state_dict of a ``torch.optim.swa_utils.AveragedModel``: every key prefixed
``module.``, plus the ``n_averaged`` counter) or None. Evaluation and export use the EMA
weights when ``train_config.optimizer.<kind>.use_moving_average`` is on and the checkpoint
has them, as the OD API restores its ExponentialMovingAverage shadow variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from objdet.errors import ConfigError, ObjdetError
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig

_AVERAGED_PREFIX = "module."
_AVERAGED_COUNTER = "n_averaged"


def model_weights_from_checkpoint(state: dict[str, Any], use_moving_average: bool) -> dict[str, Tensor]:
    """The model state_dict to evaluate or export from a loaded checkpoint ``state``.

    With ``use_moving_average`` and an ``"ema"`` entry: the averaged weights with the
    ``module.`` prefix stripped and ``n_averaged`` dropped. Otherwise ``state["model"]``.
    """
    if use_moving_average and state.get("ema") is not None:
        return {
            key[len(_AVERAGED_PREFIX):]: value
            for key, value in state["ema"].items()
            if key.startswith(_AVERAGED_PREFIX)
        }
    if "model" not in state:
        raise ObjdetError(f"checkpoint has no 'model' weights; its entries: {sorted(state)}")
    return dict(state["model"])


def uses_moving_average(config: TrainEvalPipelineConfig) -> bool:
    """``train_config.optimizer.use_moving_average`` (the proto's default is true, as the
    trainer reads it; a checkpoint without EMA weights then falls back to the raw ones)."""
    return bool(config.train_config.optimizer.use_moving_average)


@dataclass
class RestoredModel:
    """A model in eval mode with a checkpoint's weights, and where they came from."""

    model: nn.Module
    checkpoint_path: Path
    step: int
    weights: str  # "ema" or "model"


def resolve_checkpoint(checkpoint: str | os.PathLike[str]) -> Path:
    """A checkpoint file: ``checkpoint`` itself, or the latest one of a model directory."""
    from objdet.engine.checkpoint import CheckpointManager

    path = Path(checkpoint)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ObjdetError(f"{path}: checkpoint directory does not exist")
    latest = CheckpointManager(path).latest_path()
    if latest is None:
        raise ObjdetError(f"{path}: no checkpoint found (expected ckpt-<step>.pt files)")
    return latest


def restore_model(
    config: TrainEvalPipelineConfig, checkpoint: str | os.PathLike[str],
    config_source: str = "the pipeline config",
) -> RestoredModel:
    """Build ``config.model`` and load the latest checkpoint of ``checkpoint`` (a model
    directory or a ``ckpt-<step>.pt`` file) into it; the model is returned in eval mode."""
    from objdet.engine.checkpoint import CheckpointManager
    from objdet.models import build_model

    path = resolve_checkpoint(checkpoint)
    state = CheckpointManager.load(path)
    if not isinstance(state, dict):
        raise ObjdetError(f"{path}: not an objdet checkpoint (found a {type(state).__name__})")
    use_ema = uses_moving_average(config) and state.get("ema") is not None
    model = build_model(config.model)
    try:
        model.load_state_dict(model_weights_from_checkpoint(state, use_ema))
    except RuntimeError as error:  # missing/unexpected keys or shape mismatches
        detail = " ".join(str(error).split())
        raise ConfigError(
            f"{path}: the checkpoint's weights do not fit the model {config_source} describes: "
            f"{detail[:600]}"
        ) from None
    return RestoredModel(model.eval(), path, int(state.get("step", 0)), "ema" if use_ema else "model")
