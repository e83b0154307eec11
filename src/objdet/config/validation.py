"""Cheap semantic checks of a parsed config: what parses but cannot possibly run.

Builders still reject unsupported values later; these checks catch the common slips early
(no model chosen, an input reader without files, an optimizer without a learning rate...)
and report all of them at once.
"""

from __future__ import annotations

import os

from objdet.errors import ConfigError
from objdet.protos.input_reader_pb2 import InputReader
from objdet.protos.optimizer_pb2 import LearningRate
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig


def _input_reader_problems(reader: InputReader, path: str) -> list[str]:
    source = reader.WhichOneof("input_reader")
    if source is None:
        return [f"{path}: no input source (set tf_record_input_reader {{ input_path: ... }})"]
    if source == "tf_record_input_reader" and not reader.tf_record_input_reader.input_path:
        return [
            f"{path}.tf_record_input_reader.input_path: empty; give at least one file or pattern"
        ]
    return []


def _train_problems(config: TrainEvalPipelineConfig) -> list[str]:
    problems = []
    train = config.train_config
    if train.batch_size == 0:
        problems.append("train_config.batch_size: must be > 0")
    optimizer = train.optimizer
    if train.HasField("optimizer"):
        kind = optimizer.WhichOneof("optimizer")
        if kind is None:
            problems.append("train_config.optimizer: no optimizer set (e.g. momentum_optimizer)")
        elif getattr(optimizer, kind).learning_rate.WhichOneof("learning_rate") is None:
            problems.append(f"train_config.optimizer.{kind}.learning_rate: no schedule set")
        else:
            problems += _schedule_problems(
                getattr(optimizer, kind).learning_rate, f"train_config.optimizer.{kind}"
            )
    return problems


def _schedule_problems(learning_rate: LearningRate, path: str) -> list[str]:
    kind = learning_rate.WhichOneof("learning_rate")
    path = f"{path}.learning_rate.{kind}"
    if kind == "manual_step_learning_rate":
        steps = [item.step for item in learning_rate.manual_step_learning_rate.schedule]
        if steps != sorted(set(steps)):
            return [f"{path}.schedule: steps must strictly increase, found {steps}"]
    if kind == "cosine_decay_learning_rate":
        cosine = learning_rate.cosine_decay_learning_rate
        if cosine.warmup_steps + cosine.hold_base_rate_steps > cosine.total_steps:
            total = cosine.warmup_steps + cosine.hold_base_rate_steps
            return [f"{path}: warmup_steps + hold_base_rate_steps = {total} > {cosine.total_steps}"]
    return []


def problems(config: TrainEvalPipelineConfig) -> list[str]:
    """Every semantic problem found, as ``field.path: what is wrong`` lines."""
    found = []
    if config.model.WhichOneof("model") is None:
        found.append("model: no meta-architecture set (e.g. model { ssd { ... } })")
    if config.HasField("train_config"):
        found += _train_problems(config)
    if config.HasField("train_input_reader"):
        found += _input_reader_problems(config.train_input_reader, "train_input_reader")
    for index, reader in enumerate(config.eval_input_reader):
        found += _input_reader_problems(reader, f"eval_input_reader[{index}]")
    evaluation = config.eval_config
    if not 0.0 <= evaluation.recall_lower_bound <= evaluation.recall_upper_bound <= 1.0:
        found.append(
            "eval_config: need 0 <= recall_lower_bound <= recall_upper_bound <= 1, found "
            f"{evaluation.recall_lower_bound} and {evaluation.recall_upper_bound}"
        )
    return found


def validate(config: TrainEvalPipelineConfig, path: str | os.PathLike[str] = "<config>") -> None:
    """Raise one ConfigError listing every problem of ``config`` (read from ``path``)."""
    found = problems(config)
    if found:
        raise ConfigError(f"{os.fspath(path)}: invalid config: " + "; ".join(found))
