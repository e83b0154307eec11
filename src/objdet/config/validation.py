"""Cheap semantic checks of a parsed config: what parses but cannot possibly run.

Builders still reject unsupported values later; these checks catch the common slips early
(no model chosen, num_classes 0, an input reader without files, an optimizer without a
learning rate...) and report all of them at once. With ``check_label_maps`` the label maps
the config names are read and checked against it too (``objdet.config.label_maps``); what
runs but deserves a look (num_classes above the largest label-map id) comes back as warnings.
"""

from __future__ import annotations

import os

from objdet.config.label_maps import label_map_findings
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
    architecture = config.model.WhichOneof("model")
    if architecture is None:
        found.append("model: no meta-architecture set (e.g. model { ssd { ... } })")
    elif "num_classes" in getattr(config.model, architecture).DESCRIPTOR.fields_by_name:
        num_classes = getattr(config.model, architecture).num_classes
        if num_classes <= 0:
            found.append(f"model.{architecture}.num_classes: must be > 0, found {num_classes}")
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


def validate(
    config: TrainEvalPipelineConfig,
    path: str | os.PathLike[str] = "<config>",
    *,
    check_label_maps: bool = False,
) -> list[str]:
    """Raise one ConfigError listing every problem of ``config`` (read from ``path``);
    return the warnings, each a ``path: what`` line (empty when there is nothing to say).

    ``check_label_maps`` also reads every label_map_path the input readers name and checks
    it against ``num_classes`` (``objdet.config.label_maps``): ``objdet config validate``
    and ``objdet train`` do. A num_classes above the label map's largest id is a warning
    (the OD API accepts it); below it, a problem.
    """
    source = os.fspath(path)
    found = problems(config)
    warnings: list[str] = []
    if check_label_maps:
        findings = label_map_findings(config)
        found += findings.problems
        warnings = [f"{source}: {warning}" for warning in findings.warnings]
    if found:
        raise ConfigError(f"{source}: invalid config: " + "; ".join(found))
    return warnings
