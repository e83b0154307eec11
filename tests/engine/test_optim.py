from __future__ import annotations

import re

import pytest
import torch
from google.protobuf import text_format

from objdet.engine.optim import build_optimizer
from objdet.errors import ConfigError
from objdet.protos import optimizer_pb2


def optimizer_config(text: str) -> optimizer_pb2.Optimizer:
    return text_format.Parse(text, optimizer_pb2.Optimizer())


def params() -> list[dict]:
    return [{"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 4e-5}]


def rates(setup, steps: int) -> list[float]:
    seen = []
    for _ in range(steps):
        seen.append(setup.optimizer.param_groups[0]["lr"])
        setup.optimizer.step()
        setup.scheduler.step()
    return seen


def test_rms_prop_with_exponential_decay_like_the_raccoon_config() -> None:
    setup = build_optimizer(
        optimizer_config(
            """rms_prop_optimizer { learning_rate { exponential_decay_learning_rate {
                 initial_learning_rate: 0.004 decay_steps: 2 decay_factor: 0.5 } }
               momentum_optimizer_value: 0.9 decay: 0.9 epsilon: 1.0 }"""
        ),
        params(),
    )
    assert isinstance(setup.optimizer, torch.optim.RMSprop)
    group = setup.optimizer.param_groups[0]
    assert group["alpha"] == pytest.approx(0.9) and group["eps"] == 1.0 and group["momentum"] == pytest.approx(0.9)
    assert group["weight_decay"] == 4e-5
    assert rates(setup, 5) == pytest.approx([0.004, 0.004, 0.002, 0.002, 0.001])
    assert setup.moving_average_decay == pytest.approx(0.9999)  # the OD API's default: EMA on


def test_momentum_with_cosine_and_no_moving_average() -> None:
    setup = build_optimizer(
        optimizer_config(
            """momentum_optimizer { learning_rate { cosine_decay_learning_rate {
                 learning_rate_base: 0.04 total_steps: 10 warmup_learning_rate: 0.01 warmup_steps: 2 } }
               momentum_optimizer_value: 0.9 }
               use_moving_average: false"""
        ),
        params(),
    )
    assert isinstance(setup.optimizer, torch.optim.SGD)
    seen = rates(setup, 11)
    assert seen[0] == pytest.approx(0.01) and seen[1] == pytest.approx(0.025) and seen[2] == pytest.approx(0.04)
    assert seen[10] == pytest.approx(0.0, abs=1e-12)
    assert setup.moving_average_decay is None


def test_adam_with_manual_steps() -> None:
    setup = build_optimizer(
        optimizer_config(
            """adam_optimizer { epsilon: 1e-7 learning_rate { manual_step_learning_rate {
                 initial_learning_rate: 0.1 schedule { step: 2 learning_rate: 0.01 }
                 schedule { step: 3 learning_rate: 0.001 } } } }"""
        ),
        params(),
    )
    assert isinstance(setup.optimizer, torch.optim.Adam)
    assert rates(setup, 4) == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_missing_optimizer_or_rate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no optimizer set"):
        build_optimizer(optimizer_pb2.Optimizer(), params())
    with pytest.raises(ConfigError, match="no learning rate set"):
        build_optimizer(optimizer_config("adam_optimizer { }"), params())
    with pytest.raises(ConfigError, match="manual_step_learning_rate"):
        build_optimizer(
            optimizer_config(
                """momentum_optimizer { learning_rate { manual_step_learning_rate {
                 warmup: true schedule { step: 0 learning_rate: 0.1 } } } }"""
            ),
            params(),
        )


@pytest.mark.parametrize(("schedule", "field"), [
    ("constant_learning_rate { learning_rate: -0.1 }", "constant_learning_rate.learning_rate: -0.1"),
    ("exponential_decay_learning_rate { initial_learning_rate: -0.004 decay_steps: 10 }",
     "exponential_decay_learning_rate.initial_learning_rate: -0.004"),
    ("exponential_decay_learning_rate { initial_learning_rate: 0.004 min_learning_rate: -1 }",
     "exponential_decay_learning_rate.min_learning_rate: -1"),
    ("manual_step_learning_rate { initial_learning_rate: 0.1 schedule { step: 5 learning_rate: 0.01 } "
     + "schedule { step: 9 learning_rate: -0.001 } }",
     "manual_step_learning_rate.schedule[1].learning_rate: -0.001"),
    ("cosine_decay_learning_rate { learning_rate_base: 0.1 total_steps: 10 warmup_learning_rate: -0.01 }",
     "cosine_decay_learning_rate.warmup_learning_rate: -0.01"),
])
def test_a_negative_learning_rate_is_a_config_error_naming_the_field(schedule: str, field: str) -> None:
    config = optimizer_config(f"momentum_optimizer {{ learning_rate {{ {schedule} }} }}")
    path = f"train_config.optimizer.momentum_optimizer.learning_rate.{field}"
    with pytest.raises(ConfigError, match="^" + re.escape(f"{path} is negative; a learning rate must be >= 0")):
        build_optimizer(config, params())


def test_exponential_decay_needs_decay_steps() -> None:
    config = optimizer_config(
        "adam_optimizer { learning_rate { exponential_decay_learning_rate { decay_steps: 0 } } }"
    )
    with pytest.raises(ConfigError, match=r"exponential_decay_learning_rate\.decay_steps: 0; expected"):
        build_optimizer(config, params())


def test_momentum_and_epsilon_reach_the_torch_optimizers() -> None:
    sgd = build_optimizer(
        optimizer_config(
            """momentum_optimizer { momentum_optimizer_value: 0.8
               learning_rate { constant_learning_rate { learning_rate: 0.1 } } }"""
        ),
        params(),
    )
    assert sgd.optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)
    adam = build_optimizer(
        optimizer_config(
            """adam_optimizer { epsilon: 0.001
               learning_rate { constant_learning_rate { learning_rate: 0.1 } } }"""
        ),
        params(),
    )
    assert adam.optimizer.param_groups[0]["eps"] == pytest.approx(0.001)


def test_a_schedule_starting_at_zero_warms_up_from_zero() -> None:
    setup = build_optimizer(
        optimizer_config(
            """momentum_optimizer { learning_rate { cosine_decay_learning_rate {
                 learning_rate_base: 0.04 total_steps: 10 warmup_learning_rate: 0.0
                 warmup_steps: 2 } } }"""
        ),
        params(),
    )
    assert rates(setup, 3) == pytest.approx([0.0, 0.02, 0.04])
