"""Learning-rate schedules with the OD API's formulas (object_detection/utils/learning_schedules).

Each schedule is a plain callable ``step -> learning rate``; ``build_optimizer`` wraps it in a
``torch.optim.lr_scheduler.LambdaLR`` as a multiplier of the base rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConstantSchedule:
    learning_rate: float

    def __call__(self, step: int) -> float:
        return self.learning_rate


@dataclass(frozen=True)
class ExponentialDecaySchedule:
    """``base * factor ** ((step - burnin_steps) / decay_steps)``, floored if staircase.

    During burn-in (step < burnin_steps) the rate is ``burnin_learning_rate`` (the base rate
    when that is 0, as in the OD API); the result never goes below ``min_learning_rate``.
    """

    initial_learning_rate: float
    decay_steps: int
    decay_factor: float
    staircase: bool = True
    burnin_learning_rate: float = 0.0
    burnin_steps: int = 0
    min_learning_rate: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.burnin_steps:
            rate = self.burnin_learning_rate or self.initial_learning_rate
        else:
            exponent = (step - self.burnin_steps) / self.decay_steps
            if self.staircase:
                exponent = math.floor(exponent)
            rate = self.initial_learning_rate * self.decay_factor**exponent
        return max(rate, self.min_learning_rate)


@dataclass(frozen=True)
class ManualStepSchedule:
    """Piecewise constant: ``rates[i]`` from ``boundaries[i-1]`` on (``rates[0]`` before).

    With ``warmup``, the rate rises linearly from ``rates[0]`` to ``rates[1]`` over the first
    ``boundaries[0]`` steps instead of holding ``rates[0]``.
    """

    boundaries: Sequence[int]
    rates: Sequence[float]
    warmup: bool = False

    def __post_init__(self) -> None:
        if len(self.rates) != len(self.boundaries) + 1:
            raise ValueError("manual_step needs one more rate than boundaries")
        if list(self.boundaries) != sorted(set(self.boundaries)) or (self.boundaries and self.boundaries[0] < 0):
            raise ValueError(f"manual_step boundaries must be strictly increasing and >= 0: {list(self.boundaries)}")
        if self.warmup and (not self.boundaries or self.boundaries[0] == 0):
            raise ValueError("manual_step warmup needs a first boundary > 0")

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.boundaries[0]:
            slope = (self.rates[1] - self.rates[0]) / self.boundaries[0]
            return self.rates[0] + slope * step
        return self.rates[bisect.bisect_right(self.boundaries, step)]


@dataclass(frozen=True)
class CosineDecaySchedule:
    """Cosine decay to 0 at ``total_steps`` after a linear warm-up and an optional hold."""

    learning_rate_base: float
    total_steps: int
    warmup_learning_rate: float = 0.0
    warmup_steps: int = 0
    hold_base_rate_steps: int = 0

    def __post_init__(self) -> None:
        if self.total_steps < self.warmup_steps:
            raise ValueError("cosine_decay total_steps must be >= warmup_steps")
        if self.warmup_steps and self.learning_rate_base < self.warmup_learning_rate:
            raise ValueError("cosine_decay learning_rate_base must be >= warmup_learning_rate")

    def __call__(self, step: int) -> float:
        if step > self.total_steps:
            return 0.0
        if self.warmup_steps and step < self.warmup_steps:
            slope = (self.learning_rate_base - self.warmup_learning_rate) / self.warmup_steps
            return self.warmup_learning_rate + slope * step
        if self.hold_base_rate_steps and step <= self.warmup_steps + self.hold_base_rate_steps:
            return self.learning_rate_base
        decay_steps = self.total_steps - self.warmup_steps - self.hold_base_rate_steps
        if decay_steps <= 0:
            return self.learning_rate_base
        progress = (step - self.warmup_steps - self.hold_base_rate_steps) / decay_steps
        return 0.5 * self.learning_rate_base * (1.0 + math.cos(math.pi * progress))
