"""Config-message checks the model builder uses so that no field is ignored silently.

A field set to a value the builder does not read fails at build time, naming its path, its
value and what is supported (DESIGN.md: "never ignore a field silently").
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from objdet.errors import ConfigError


def _shown(field: FieldDescriptor, value: object) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM and not field.is_repeated:
        return field.enum_type.values_by_number[value].name  # type: ignore[index]
    if isinstance(value, Message):
        return "{" + " ".join(f"{f.name}: ..." for f, _ in value.ListFields()) + "}"
    if field.is_repeated:
        return repr(list(value))  # type: ignore[call-overload]
    return repr(value)


def check_fields(message: Message, path: str, supported: Iterable[str]) -> None:
    """Raise ConfigError for any field of ``message`` set to a non-default value and not in
    ``supported``. Fields explicitly set to their default are harmless and accepted."""
    supported = set(supported)
    for field, value in message.ListFields():
        if field.name in supported:
            continue
        is_scalar = not field.is_repeated and field.type != FieldDescriptor.TYPE_MESSAGE
        if is_scalar and value == field.default_value:
            continue
        raise ConfigError(
            f"{path}.{field.name}: {_shown(field, value)} is not supported by objdet; "
            f"supported fields of {path}: {', '.join(sorted(supported)) or '(none)'}"
        )


def require_equal(message: Message, path: str, name: str, supported_value: object) -> None:
    """Raise ConfigError unless field ``name`` has ``supported_value``."""
    value = getattr(message, name)
    if value != supported_value:
        field = message.DESCRIPTOR.fields_by_name[name]
        shown_supported = supported_value
        if field.type == FieldDescriptor.TYPE_ENUM:
            shown_supported = field.enum_type.values_by_number[supported_value].name  # type: ignore[index]
        raise ConfigError(
            f"{path}.{name}: {_shown(field, value)} is not supported by objdet; "
            f"supported: {shown_supported}"
        )


def which_oneof(message: Message, oneof: str, path: str, supported: Iterable[str]) -> str:
    """The set member of ``oneof``; ConfigError if none is set or it is not supported."""
    supported = sorted(supported)
    which = message.WhichOneof(oneof)
    if which is None:
        raise ConfigError(f"{path}: no {oneof} set; expected one of: {', '.join(supported)}")
    if which not in supported:
        raise ConfigError(
            f"{path}.{which} is not supported by objdet; supported: {', '.join(supported)}"
        )
    return which


def enum_name(message: Message, name: str) -> str:
    """The symbolic name of enum field ``name`` of ``message``."""
    field = message.DESCRIPTOR.fields_by_name[name]
    return field.enum_type.values_by_number[getattr(message, name)].name  # type: ignore[union-attr]
