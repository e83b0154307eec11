"""Find the first schema problem in a JSON/YAML config (a dict tree), with its field path.

``json_format.ParseDict`` reports errors as flat strings; when it fails we walk the same
data against the message descriptors to name the path (``train_config.batch_sise``), what
was found and the closest valid field or enum name.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from objdet.config.suggestions import field_type_name, unknown_enum_text, unknown_field_text

_INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOAT_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_SPECIAL_FLOATS = {"NaN", "Infinity", "-Infinity"}

Problem = tuple[str, str]  # (field path, what is wrong)


def find_problem(data: Any, message: Descriptor, path: str = "") -> Problem | None:
    """The first unknown field, bad enum value or wrongly typed value under ``data``."""
    if not isinstance(data, dict):
        return path, f"expected a mapping for message {message.name}, found {_kind(data)}"
    by_name = {field.name: field for field in message.fields}
    by_name.update({field.json_name: field for field in message.fields})
    for key, value in data.items():
        child_path = f"{path}.{key}" if path else str(key)
        field = by_name.get(key)
        if field is None:
            return child_path, unknown_field_text(str(key), message)
        problem = _field_problem(field, value, child_path)
        if problem is not None:
            return problem
    return None


def _field_problem(field: FieldDescriptor, value: Any, path: str) -> Problem | None:
    if value is None:
        return None
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            return path, f"expected a mapping (map field), found {_kind(value)}"
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            problem = _value_problem(value_field, item, f"{path}[{key}]")
            if problem is not None:
                return problem
        return None
    if field.is_repeated:
        if not isinstance(value, list):
            return (
                path,
                f"expected a list (repeated {field_type_name(field)}), found {_kind(value)}",
            )
        for index, item in enumerate(value):
            problem = _value_problem(field, item, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None
    return _value_problem(field, value, path)


def _value_problem(field: FieldDescriptor, value: Any, path: str) -> Problem | None:
    """Check one (non-repeated) value against the field's type."""
    if field.message_type is not None:
        return find_problem(value, field.message_type, path)
    if field.type == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str) and value not in field.enum_type.values_by_name:
            return path, unknown_enum_text(value, field.enum_type)
        acceptable = isinstance(value, str) or _is_integer(value)
    elif field.type == FieldDescriptor.TYPE_BOOL:
        acceptable = isinstance(value, bool)
    elif field.type in _INTEGER_TYPES:
        acceptable = _is_integer(value)
    elif field.type in _FLOAT_TYPES:
        acceptable = _is_number(value)
    else:  # string, bytes (base64 text)
        acceptable = isinstance(value, str)
    if acceptable:
        return None
    return path, f"expected {field_type_name(field)}, found {value!r}"


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    if isinstance(value, str):
        return value.strip().lstrip("+-").isdigit()
    return False


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        if value in _SPECIAL_FLOATS:
            return True
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
