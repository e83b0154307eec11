"""Set one field of a config by a dotted path: ``train_config.batch_size`` = ``"8"``.

Path segments are field names; a repeated field takes an index (``eval_input_reader[0]``,
``[*]`` for every element, ``[len]`` appends) and a map field takes a key
(``eval_config.super_categories[VOC]``). Values are text parsed per the field's type:
bools (true/false/1/0/yes/no), enums by name or number, integers, floats, strings with or
without quotes, lists for repeated scalars (``[a, b]`` or ``a,b``) and, for a message field,
a text-format body (``{ constant_learning_rate { learning_rate: 0.01 } }``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import message_factory, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from objdet.config.suggestions import field_type_name, unknown_enum_text, unknown_field_text
from objdet.config.text_errors import config_error_from_parse_error
from objdet.errors import ConfigError

_SEGMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>[^\]]*)\])?")
_LIST_ITEM = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^,]*?)\s*(?:,|$)""")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Segment:
    name: str
    index: str | None  # None (no brackets), "*", a number or a map key


def parse_path(key: str, context: str) -> list[Segment]:
    """``a.b[0].c`` -> segments; ``context`` names the override in errors."""
    segments = []
    for part in key.split("."):
        match = _SEGMENT.fullmatch(part.strip())
        if match is None:
            raise ConfigError(
                f"{context}: cannot read path segment {part!r}; expected name or name[index]"
            )
        segments.append(Segment(match.group("name"), match.group("index")))
    return segments


def _field(message: Message, name: str, path: str, context: str) -> FieldDescriptor:
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        where = f"{path}.{name}" if path else name
        raise ConfigError(f"{context}: {where}: {unknown_field_text(name, message.DESCRIPTOR)}")
    return field


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _indices(container: object, index: str | None, label: str, context: str) -> list[int]:
    """Positions an index selects in a repeated field; ``len`` appends."""
    size = len(container)  # type: ignore[arg-type]
    if index is None:
        raise ConfigError(
            f"{context}: {label} is repeated; give an index, e.g. {label}[0] or {label}[*]"
        )
    if index == "*":
        if size == 0:
            raise ConfigError(f"{context}: {label} is empty; [*] selects nothing")
        return list(range(size))
    try:
        position = int(index)
    except ValueError:
        raise ConfigError(f"{context}: {label}[{index}]: index must be an integer or *") from None
    if position < 0:
        position += size
    if not 0 <= position <= size:
        raise ConfigError(
            f"{context}: {label}[{index}]: index out of range (it has {size} elements)"
        )
    return [position]


def descend(
    message: Message, path: str, segment: Segment, context: str
) -> list[tuple[Message, str]]:
    """The sub-messages ``segment`` selects under ``message`` (created when absent)."""
    field = _field(message, segment.name, path, context)
    label = f"{path}.{segment.name}" if path else segment.name
    if field.message_type is None:
        raise ConfigError(f"{context}: {label} is a {field_type_name(field)}, not a message")
    container = getattr(message, segment.name)
    if _is_map(field):
        if segment.index is None:
            raise ConfigError(f"{context}: {label} is a map; give a key, e.g. {label}[KEY]")
        return [(container[segment.index], f"{label}[{segment.index}]")]
    if not field.is_repeated:
        if segment.index is not None:
            raise ConfigError(f"{context}: {label} is not repeated; drop [{segment.index}]")
        return [(container, label)]
    selected = []
    for position in _indices(container, segment.index, label, context):
        element = container.add() if position == len(container) else container[position]
        selected.append((element, f"{label}[{position}]"))
    return selected


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_scalar(field: FieldDescriptor, text: str, label: str, context: str) -> object:
    """``text`` as a Python value of the field's type; ConfigError naming the path if not."""
    text = text.strip()
    kind = field.cpp_type
    try:
        if field.type == FieldDescriptor.TYPE_ENUM:
            return _parse_enum(field, _unquote(text), label, context)
        if kind == FieldDescriptor.CPPTYPE_BOOL:
            lowered = _unquote(text).lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError("expected true or false")
        if kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
            return float(text)
        if kind == FieldDescriptor.CPPTYPE_STRING:
            value = _unquote(text)
            return value.encode("utf-8") if field.type == FieldDescriptor.TYPE_BYTES else value
        number = float(text) if re.search(r"[.eE]", text) else int(text)
        if isinstance(number, float) and not number.is_integer():
            raise ValueError("not an integer")
        return int(number)
    except ValueError as error:
        raise ConfigError(
            f"{context}: {label}: expected {field_type_name(field)}, found {text!r} ({error})"
        ) from None


def _parse_enum(field: FieldDescriptor, text: str, label: str, context: str) -> int:
    enum = field.enum_type
    if text in enum.values_by_name:
        return enum.values_by_name[text].number
    if text.lstrip("-").isdigit() and int(text) in enum.values_by_number:
        return int(text)
    raise ConfigError(f"{context}: {label}: {unknown_enum_text(text, enum)}")


def split_list(text: str) -> list[str]:
    """``[a, "b,c"]`` or ``a,b`` -> items; ``[]`` -> no items."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text.strip():
        return []
    items = [match.group(1) for match in _LIST_ITEM.finditer(text)]
    return items[:-1] if items and items[-1] == "" else items


def _parse_body(field: FieldDescriptor, text: str, label: str, context: str) -> Message:
    """A text-format body (with or without outer braces) as a new message of the field's type."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    message = message_factory.GetMessageClass(field.message_type)()
    try:
        text_format.Merge(body, message)
    except text_format.ParseError as error:
        raise config_error_from_parse_error(
            error, body, context, field.message_type, label
        ) from None
    return message


def set_field(config: Message, key: str, value: str, context: str) -> None:
    """Set the field(s) ``key`` selects in ``config`` to ``value`` (see the module docstring)."""
    segments = parse_path(key, context)
    targets: list[tuple[Message, str]] = [(config, "")]
    for segment in segments[:-1]:
        targets = [
            child for message, path in targets for child in descend(message, path, segment, context)
        ]
    for message, path in targets:
        _assign(message, path, segments[-1], value, context)


def _assign(message: Message, path: str, segment: Segment, value: str, context: str) -> None:
    field = _field(message, segment.name, path, context)
    label = f"{path}.{segment.name}" if path else segment.name
    if _is_map(field):
        _assign_map_entry(message, field, segment, value, label, context)
    elif field.is_repeated:
        _assign_repeated(message, field, segment, value, label, context)
    elif segment.index is not None:
        raise ConfigError(f"{context}: {label} is not repeated; drop [{segment.index}]")
    elif field.message_type is not None:
        getattr(message, segment.name).CopyFrom(_parse_body(field, value, label, context))
    else:
        _setattr(message, field, parse_scalar(field, value, label, context), label, context)


def _setattr(
    message: Message, field: FieldDescriptor, value: object, label: str, context: str
) -> None:
    try:
        setattr(message, field.name, value)
    except (ValueError, TypeError) as error:  # e.g. -1 for a uint32
        raise ConfigError(
            f"{context}: {label}: {value!r} does not fit {field_type_name(field)} ({error})"
        ) from None


def _assign_map_entry(
    message: Message, field: FieldDescriptor, segment: Segment, value: str, label: str, context: str
) -> None:
    if segment.index is None or segment.index == "*":
        raise ConfigError(f"{context}: {label} is a map; give a key, e.g. {label}[KEY]=VALUE")
    container = getattr(message, field.name)
    value_field = field.message_type.fields_by_name["value"]
    entry_label = f"{label}[{segment.index}]"
    if value_field.message_type is not None:
        container[segment.index].CopyFrom(_parse_body(value_field, value, entry_label, context))
        return
    try:
        container[segment.index] = parse_scalar(value_field, value, entry_label, context)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{context}: {entry_label}: {error}") from None


def _assign_repeated(
    message: Message, field: FieldDescriptor, segment: Segment, value: str, label: str, context: str
) -> None:
    container = getattr(message, field.name)
    if segment.index is None and field.message_type is None:
        items = [parse_scalar(field, item, label, context) for item in split_list(value)]
        try:
            container[:] = items
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{context}: {label}: {error}") from None
        return
    for position in _indices(container, segment.index, label, context):
        element_label = f"{label}[{position}]"
        if field.message_type is not None:
            parsed = _parse_body(field, value, element_label, context)
            target = container.add() if position == len(container) else container[position]
            target.CopyFrom(parsed)
            continue
        item = parse_scalar(field, value, element_label, context)
        try:
            if position == len(container):
                container.append(item)
            else:
                container[position] = item
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{context}: {element_label}: {error}") from None
