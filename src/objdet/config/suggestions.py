"""Words for error messages about the schema: field type names and "did you mean" hints."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

_TYPE_NAMES = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def field_type_name(field: FieldDescriptor) -> str:
    """``uint32``, ``bool``, ``enum InstanceMaskType``, ``message TrainConfig``..."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        return f"enum {field.enum_type.name}"
    if field.message_type is not None:
        return f"message {field.message_type.name}"
    return _TYPE_NAMES.get(field.type, "value")


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate most similar to ``name`` (difflib ratio >= 0.6), if any."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not matches:  # case slips ("png_masks") are close to nothing by ratio alone
        lowered = {candidate.lower(): candidate for candidate in candidates}
        return lowered.get(name.lower())
    return matches[0]


def unknown_field_text(name: str, message: Descriptor) -> str:
    """'unknown field "batch_sise" in TrainConfig; did you mean "batch_size"?' (or the list)."""
    valid = [field.name for field in message.fields]
    text = f'unknown field "{name}" in {message.name}'
    return text + _hint(name, valid)


def unknown_enum_text(value: str, enum: EnumDescriptor) -> str:
    """'unknown value "PNG_MASK" for enum InstanceMaskType; did you mean "PNG_MASKS"?'."""
    valid = [enum_value.name for enum_value in enum.values]
    text = f'unknown value "{value}" for enum {enum.name}'
    return text + _hint(value, valid)


def _hint(name: str, valid: Sequence[str]) -> str:
    suggestion = closest(name, valid)
    if suggestion is not None:
        return f'; did you mean "{suggestion}"?'
    if not valid:
        return " (it has no fields)"
    return f"; valid names: {', '.join(valid)}"
