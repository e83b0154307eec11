"""Optimizer, learning-rate schedule and moving-average settings from a train_config.

The one place that reads ``optimizer.proto`` messages (STYLE.md principle 2). Semantics follow
the OD API on TF2 (Keras optimizers): momentum_optimizer -> SGD with momentum,
rms_prop_optimizer -> RMSprop(rho=decay, eps=epsilon, momentum), adam_optimizer -> Adam(eps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from objdet.engine.schedules import (
    ConstantSchedule,
    CosineDecaySchedule,
    ExponentialDecaySchedule,
    ManualStepSchedule,
)
from objdet.errors import ConfigError

Schedule = Callable[[int], float]


@dataclass
class OptimizerSetup:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: Schedule
    moving_average_decay: float | None  # None: no EMA


def build_schedule(learning_rate_config: Any, where: str = "optimizer.learning_rate") -> Schedule:
    """``LearningRate`` message -> ``step -> rate`` callable."""
    kind = learning_rate_config.WhichOneof("learning_rate")
    if kind is not None:
        _check_rates_not_negative(getattr(learning_rate_config, kind), f"{where}.{kind}")
    if kind == "constant_learning_rate":
        return ConstantSchedule(learning_rate_config.constant_learning_rate.learning_rate)
    if kind == "exponential_decay_learning_rate":
        c = learning_rate_config.exponential_decay_learning_rate
        if c.decay_steps == 0:
            raise ConfigError(f"{where}.{kind}.decay_steps: 0; expected a number of steps > 0")
        return ExponentialDecaySchedule(
            initial_learning_rate=c.initial_learning_rate,
            decay_steps=c.decay_steps,
            decay_factor=c.decay_factor,
            staircase=c.staircase,
            burnin_learning_rate=c.burnin_learning_rate,
            burnin_steps=c.burnin_steps,
            min_learning_rate=c.min_learning_rate,
        )
    if kind == "manual_step_learning_rate":
        c = learning_rate_config.manual_step_learning_rate
        try:
            return ManualStepSchedule(
                boundaries=[s.step for s in c.schedule],
                rates=[c.initial_learning_rate] + [s.learning_rate for s in c.schedule],
                warmup=c.warmup,
            )
        except ValueError as error:
            raise ConfigError(f"{where}.manual_step_learning_rate: {error}") from None
    if kind == "cosine_decay_learning_rate":
        c = learning_rate_config.cosine_decay_learning_rate
        try:
            return CosineDecaySchedule(
                learning_rate_base=c.learning_rate_base,
                total_steps=c.total_steps,
                warmup_learning_rate=c.warmup_learning_rate,
                warmup_steps=c.warmup_steps,
                hold_base_rate_steps=c.hold_base_rate_steps,
            )
        except ValueError as error:
            raise ConfigError(f"{where}.cosine_decay_learning_rate: {error}") from None
    raise ConfigError(
        f"{where}: no learning rate set; supported: constant_learning_rate, "
        "exponential_decay_learning_rate, manual_step_learning_rate, cosine_decay_learning_rate"
    )


def _check_rates_not_negative(schedule_config: Any, where: str) -> None:
    """``ConfigError`` naming the first negative ``*learning_rate*`` field of a schedule
    message (also inside ``manual_step_learning_rate.schedule`` entries)."""
    for field, value in schedule_config.ListFields():
        if field.message_type is not None:
            items = value if field.is_repeated else [value]
            for index, item in enumerate(items):
                _check_rates_not_negative(item, f"{where}.{field.name}[{index}]")
        elif "learning_rate" in field.name and value < 0:
            raise ConfigError(
                f"{where}.{field.name}: {value:g} is negative; a learning rate must be >= 0"
            )


def build_optimizer(optimizer_config: Any, param_groups: Iterable[dict[str, Any]]) -> OptimizerSetup:
    """``Optimizer`` message + parameter groups -> optimizer, LR scheduler and EMA decay.

    Each parameter group may carry its own ``weight_decay`` (the l2 regularizer weights of the
    model's hyperparams). The scheduler multiplies the base rate so that after ``k`` calls of
    ``scheduler.step()`` the learning rate is ``schedule(k)``.
    """
    kind = optimizer_config.WhichOneof("optimizer")
    supported = "rms_prop_optimizer, momentum_optimizer, adam_optimizer"
    if kind is None:
        raise ConfigError(f"train_config.optimizer: no optimizer set; supported: {supported}")
    settings = getattr(optimizer_config, kind)
    schedule = build_schedule(settings.learning_rate, f"train_config.optimizer.{kind}.learning_rate")
    base_rate = schedule(0) or 1.0
    groups = list(param_groups)
    if kind == "momentum_optimizer":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=base_rate, momentum=settings.momentum_optimizer_value
        )
    elif kind == "rms_prop_optimizer":
        optimizer = torch.optim.RMSprop(
            groups,
            lr=base_rate,
            alpha=settings.decay,
            eps=settings.epsilon,
            momentum=settings.momentum_optimizer_value,
        )
    elif kind == "adam_optimizer":
        optimizer = torch.optim.Adam(groups, lr=base_rate, eps=settings.epsilon)
    else:
        raise ConfigError(f"train_config.optimizer: {kind} is not supported; supported: {supported}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step) / base_rate)
    decay = optimizer_config.moving_average_decay if optimizer_config.use_moving_average else None
    return OptimizerSetup(optimizer, scheduler, schedule, decay)
