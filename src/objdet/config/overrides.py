"""Change a loaded config: ``KEY=VALUE`` overrides and the OD API's ``config_override`` text.

``apply_overrides(config, ["train_config.batch_size=8", "learning_rate=0.01"])`` sets fields
by dotted path (see ``objdet.config.field_paths``) or by a shortcut key (see
``objdet.config.shortcuts``). ``merge_config_override(config, text)`` merges a text-format
TrainEvalPipelineConfig snippet with protobuf ``MergeFrom`` semantics: scalars and oneofs are
replaced, repeated fields are appended to — exactly what the OD API's ``--config_override``
does.
"""

from __future__ import annotations

from collections.abc import Iterable

from objdet.config.field_paths import set_field
from objdet.config.files import parse_text
from objdet.config.shortcuts import SHORTCUT_KEYS, apply_shortcut
from objdet.config.suggestions import closest
from objdet.errors import ConfigError
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig


def apply_override(config: TrainEvalPipelineConfig, override: str) -> None:
    """Apply one ``KEY=VALUE`` to ``config`` in place."""
    context = f"override {override!r}"
    key, separator, value = override.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError(f"{context}: expected KEY=VALUE, e.g. train_config.batch_size=8")
    if key in SHORTCUT_KEYS:
        apply_shortcut(config, key, value, context)
    elif "." not in key and "[" not in key and key not in config.DESCRIPTOR.fields_by_name:
        raise ConfigError(f"{context}: {_unknown_top_level_key(key, config)}")
    else:
        set_field(config, key, value, context)


def _unknown_top_level_key(key: str, config: TrainEvalPipelineConfig) -> str:
    """A bare key is a top-level field or a shortcut; suggest from both."""
    fields = [field.name for field in config.DESCRIPTOR.fields]
    suggestion = closest(key, [*fields, *sorted(SHORTCUT_KEYS)])
    if suggestion is not None:
        return f'unknown key "{key}"; did you mean "{suggestion}"?'
    return (
        f'unknown key "{key}"; give a field path such as train_config.batch_size, a top-level '
        f"field ({', '.join(fields)}) or a shortcut ({', '.join(sorted(SHORTCUT_KEYS))})"
    )


def apply_overrides(
    config: TrainEvalPipelineConfig, overrides: Iterable[str]
) -> TrainEvalPipelineConfig:
    """Apply every ``KEY=VALUE`` in order; all or nothing (``config`` is unchanged on error).

    Returns ``config`` (changed in place) for chaining.
    """
    working = TrainEvalPipelineConfig()
    working.CopyFrom(config)
    for override in overrides:
        apply_override(working, override)
    config.CopyFrom(working)
    return config


def merge_config_override(
    config: TrainEvalPipelineConfig, text: str, source: str = "<config_override>"
) -> TrainEvalPipelineConfig:
    """Merge the text-format snippet ``text`` into ``config`` in place; return ``config``."""
    override = parse_text(text, source)
    config.MergeFrom(override)
    return config
