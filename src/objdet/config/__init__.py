"""Pipeline configs: load, save, override and validate the OD API's pipeline.config.

    from objdet import config as cfg
    pipeline = cfg.load("pipeline.config", overrides=["train_config.batch_size=8"])
    cfg.validate(pipeline, "pipeline.config")
    cfg.save(pipeline, "out/pipeline.config")

Text proto, JSON and YAML files of the same schema (``objdet.protos.pipeline_pb2``) load and
save alike. Errors are one ``ConfigError`` naming ``file:line:col``, the field path, what was
found and the closest valid name. Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from objdet.config.accessors import get_architecture, get_num_classes
from objdet.config.files import (
    config_format,
    format_config,
    parse_dict,
    parse_text,
    read_config,
    save,
)
from objdet.config.overrides import apply_override, apply_overrides, merge_config_override
from objdet.config.shortcuts import SHORTCUT_KEYS
from objdet.config.validation import problems, validate
from objdet.errors import ConfigError
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig

__all__ = [
    "SHORTCUT_KEYS",
    "ConfigError",
    "TrainEvalPipelineConfig",
    "apply_override",
    "apply_overrides",
    "config_format",
    "format_config",
    "get_architecture",
    "get_num_classes",
    "load",
    "merge_config_override",
    "parse_dict",
    "parse_text",
    "problems",
    "read_config",
    "save",
    "validate",
]


def load(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    config_override_text: str | None = None,
) -> TrainEvalPipelineConfig:
    """Read the config at ``path``, merge ``config_override_text``, then apply ``overrides``.

    The order matches the OD API: the ``--config_override`` snippet first, then ``KEY=VALUE``
    pairs. Semantic checks are separate: call ``validate``.
    """
    config = read_config(path)
    if config_override_text:
        merge_config_override(config, config_override_text)
    if overrides:
        apply_overrides(config, overrides)
    return config
