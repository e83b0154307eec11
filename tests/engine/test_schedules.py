from __future__ import annotations

import math

import pytest

from objdet.engine.schedules import (
    ConstantSchedule,
    CosineDecaySchedule,
    ExponentialDecaySchedule,
    ManualStepSchedule,
)


def test_constant() -> None:
    assert ConstantSchedule(0.1)(0) == ConstantSchedule(0.1)(10**6) == 0.1


def test_exponential_decay_staircase_burnin_and_floor() -> None:
    schedule = ExponentialDecaySchedule(
        initial_learning_rate=1.0, decay_steps=10, decay_factor=0.5, staircase=True,
        burnin_learning_rate=0.1, burnin_steps=5, min_learning_rate=0.2,
    )
    assert schedule(0) == schedule(4) == 0.2  # burn-in rate 0.1 floored at 0.2
    assert schedule(5) == 1.0
    assert schedule(14) == 1.0
    assert schedule(15) == 0.5
    assert schedule(35) == 0.2  # 0.125 floored


def test_exponential_decay_smooth_and_default_burnin_rate() -> None:
    schedule = ExponentialDecaySchedule(
        initial_learning_rate=0.004, decay_steps=800720, decay_factor=0.95, staircase=False,
        burnin_steps=3,
    )
    assert schedule(0) == 0.004  # burnin_learning_rate 0 means the base rate
    assert schedule(400363) == pytest.approx(0.004 * 0.95**0.5)


def test_manual_step_with_and_without_warmup() -> None:
    plain = ManualStepSchedule(boundaries=[10, 20], rates=[1.0, 0.1, 0.01])
    assert [plain(s) for s in (0, 9, 10, 19, 20, 999)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    warm = ManualStepSchedule(boundaries=[10, 20], rates=[0.0, 1.0, 0.1], warmup=True)
    assert warm(0) == 0.0 and warm(5) == pytest.approx(0.5) and warm(10) == 1.0 and warm(20) == 0.1
    with pytest.raises(ValueError, match="one more rate"):
        ManualStepSchedule(boundaries=[10], rates=[1.0])


def test_cosine_decay_with_warmup_and_hold() -> None:
    schedule = CosineDecaySchedule(
        learning_rate_base=1.0, total_steps=100, warmup_learning_rate=0.1, warmup_steps=10,
        hold_base_rate_steps=10,
    )
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(5) == pytest.approx(0.55)
    assert schedule(10) == schedule(20) == 1.0
    assert schedule(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 80)))
    assert schedule(100) == pytest.approx(0.0, abs=1e-12)
    assert schedule(101) == 0.0
