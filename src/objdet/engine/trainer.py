"""The training loop: one explicit loop, small hooks around it (detectron2's shape).

The loop owns the step counter, the optimizer step, gradient clipping, the moving average
and the divergence check; hooks do everything periodic (logging, checkpoints, evaluation).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from objdet.engine.gradients import GradientMultiplier
from objdet.errors import ObjdetError

Batch = tuple[list[Tensor], list[dict[str, Tensor]]]


class TrainingDiverged(ObjdetError):
    """A loss became NaN or infinite; training stopped before updating the weights."""


class Hook:
    """Called around the loop. Override what you need; ``trainer`` gives access to its state."""

    def before_train(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, losses: dict[str, float]) -> None: ...

    def after_train(self, trainer: Trainer) -> None: ...


class Trainer:
    """Runs ``num_steps`` optimizer steps of a model following the objdet model contract.

    ``batches`` yields ``(images, targets)``: a list of float CHW images in [0, 1] and a list
    of target dicts (``boxes`` [N, 4] x1y1x2y2 pixels, ``labels`` [N]). ``step`` counts
    optimizer steps; ``samples_seen`` counts images consumed by this process (the sampler
    resumes from it). ``gradient_multipliers`` scale some gradients before clipping
    (``train_config.bias_grad_multiplier``).
    """

    def __init__(
        self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler, batches: Iterator[Batch], num_steps: int,
        ema: AveragedModel | None = None, gradient_clip_norm: float = 0.0,
        hooks: Sequence[Hook] = (), device: torch.device | str = "cpu",
        gradient_multipliers: Sequence[GradientMultiplier] = (),
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches
        self.num_steps = num_steps
        self.ema = ema
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_multipliers = list(gradient_multipliers)
        self.hooks = list(hooks)
        self.device = torch.device(device)
        self.step = 0
        self.samples_seen = 0

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self) -> None:
        for hook in self.hooks:
            hook.before_train(self)
        while self.step < self.num_steps:
            losses = self.run_step(next(self.batches))
            for hook in self.hooks:
                hook.after_step(self, losses)
        for hook in self.hooks:
            hook.after_train(self)

    def run_step(self, batch: Batch) -> dict[str, float]:
        images, targets = batch
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        self.model.train()
        loss_dict = self.model(images, targets)
        total = torch.stack([loss for loss in loss_dict.values()]).sum()
        values = {name: float(loss.detach()) for name, loss in loss_dict.items()}
        values["Loss/total_loss"] = float(total.detach())
        if not torch.isfinite(total):
            raise TrainingDiverged(
                f"loss is not finite at step {self.step + 1}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                + ". The weights were not updated; the last checkpoint in model_dir is intact. "
                "Lower the learning rate or check the input data."
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for multiplier in self.gradient_multipliers:
            multiplier.apply()
        if self.gradient_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.gradient_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(_unwrap(self.model))
        self.step += 1
        self.samples_seen += len(images)
        return values

    # -- checkpointed state --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: weights, optimizer, schedule,
        moving average, counters and random-number generator states."""
        return {
            "step": self.step,
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "samples_seen": self.samples_seen,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (or a checkpoint holding it)."""
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.samples_seen = int(state["samples_seen"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
