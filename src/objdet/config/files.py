"""Read and write pipeline configs: text proto, JSON or YAML of the same schema.

The format follows the file name: ``.json`` is protobuf JSON (the OD API's field names or
their lowerCamelCase forms), ``.yaml``/``.yml`` is the same tree in YAML, anything else
(``.config``, ``.pbtxt``, ``.txt``) is protobuf text format — the OD API's pipeline.config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from objdet.atomic import atomic_write
from objdet.config.dict_errors import find_problem
from objdet.config.text_errors import config_error_from_parse_error
from objdet.errors import ConfigError
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig

MessageT = TypeVar("MessageT", bound=Message)

JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")


def config_format(path: str | os.PathLike[str]) -> str:
    """``"json"``, ``"yaml"`` or ``"text"``, from the file name's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in YAML_SUFFIXES:
        return "yaml"
    return "text"


def parse_text(text: str, source: str = "<text>") -> TrainEvalPipelineConfig:
    """Parse a text-format pipeline config the way the OD API does (``text_format.Merge``).

    Like the OD API, a scalar field given twice keeps the last value.
    Raises ConfigError naming ``source:line:col``, the field path and the problem.
    """
    return _merge_text(text, source, TrainEvalPipelineConfig())


def read_text_message(path: str | os.PathLike[str], message: MessageT, what: str) -> MessageT:
    """Merge the text-format proto file at ``path`` into ``message`` and return it.

    For the OD API's single-message files (an ``EvalConfig``, an ``InputReader``); ``what``
    names the file in errors (``"eval config"``). Errors name ``path:line:col`` like
    ``read_config``'s.
    """
    path = Path(path)
    return _merge_text(_read_text(path, what), str(path), message)


def _merge_text(text: str, source: str, message: MessageT) -> MessageT:
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as error:
        raise config_error_from_parse_error(error, text, source, message.DESCRIPTOR) from None
    return message


def parse_dict(data: Any, source: str = "<dict>") -> TrainEvalPipelineConfig:
    """Build a config from the JSON/YAML tree (field names as in the .proto files)."""
    config = TrainEvalPipelineConfig()
    if data is None:
        return config
    try:
        json_format.ParseDict(data, config)
    except (json_format.ParseError, TypeError, ValueError) as error:
        problem = find_problem(data, config.DESCRIPTOR)
        if problem is None:
            raise ConfigError(f"{source}: {error}") from None
        path, what = problem
        raise ConfigError(f"{source}: {path}: {what}") from None
    return config


def _read_text(path: Path, what: str = "pipeline config") -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # utf-8-sig also accepts a BOM
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a {what} file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {error.start})") from None
    except OSError as error:  # e.g. PermissionError
        raise ConfigError(f"{path}: cannot read the {what}: {error.strerror or error}") from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
        ) from None


def _parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML: {error}") from None


def read_config(path: str | os.PathLike[str]) -> TrainEvalPipelineConfig:
    """Parse the config file at ``path`` in the format its suffix names."""
    path = Path(path)
    text = _read_text(path)
    kind = config_format(path)
    if kind == "json":
        return parse_dict(_parse_json(text, str(path)), str(path))
    if kind == "yaml":
        return parse_dict(_parse_yaml(text, str(path)), str(path))
    return parse_text(text, str(path))


def to_dict(config: TrainEvalPipelineConfig) -> dict[str, Any]:
    """The JSON/YAML tree of ``config`` with the .proto field names."""
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def format_config(config: TrainEvalPipelineConfig, kind: str = "text") -> str:
    """``config`` as text-format, JSON or YAML text (``kind`` as in ``config_format``)."""
    if kind == "json":
        return json_format.MessageToJson(config, preserving_proto_field_name=True, indent=2) + "\n"
    if kind == "yaml":
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available
        return yaml.dump(to_dict(config), Dumper=dumper, sort_keys=False, allow_unicode=True)
    return text_format.MessageToString(config)


def save(config: TrainEvalPipelineConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` atomically in the format the suffix of ``path`` names; return the path."""
    target = Path(path)
    text = format_config(config, config_format(target))
    with atomic_write(target, "wb") as handle:
        handle.write(text.encode("utf-8"))
    return target
