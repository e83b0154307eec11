"""`FIELD=VALUE` overrides on a TrainEvalPipelineConfig proto (reference env only).

FIELD is a dotted path of proto field names from the pipeline root, e.g.
`model.ssd.num_classes=3`, `model.ssd.image_resizer.fixed_shape_resizer.height=64`,
`model.ssd.feature_extractor.bifpn.num_filters=16`. Setting a field inside a oneof member
(`fixed_shape_resizer`) selects that member. VALUE is parsed by the field's type: numbers,
`true`/`false`, enum names, strings; a repeated scalar takes comma-separated values; a message
field takes text format (`model.ssd.image_resizer={fixed_shape_resizer {height: 64 width: 64}}`).
"""

from __future__ import annotations

from google.protobuf import descriptor, message, text_format

FD = descriptor.FieldDescriptor
_INT_TYPES = {
    FD.TYPE_INT32,
    FD.TYPE_INT64,
    FD.TYPE_UINT32,
    FD.TYPE_UINT64,
    FD.TYPE_SINT32,
    FD.TYPE_SINT64,
    FD.TYPE_FIXED32,
    FD.TYPE_FIXED64,
    FD.TYPE_SFIXED32,
    FD.TYPE_SFIXED64,
}
_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(FD).items()
    if name.startswith("TYPE_")
}


class OverrideError(ValueError):
    """A bad `FIELD=VALUE` override; the message names the override and the field."""


def _scalar(field: descriptor.FieldDescriptor, text: str, override: str) -> object:
    try:
        if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            return float(text)
        if field.type in _INT_TYPES:
            return int(text)
        if field.type == FD.TYPE_BOOL:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if field.type == FD.TYPE_ENUM:
            values = field.enum_type.values_by_name
            if text in values:
                return values[text].number
            number = int(text)
            if number not in field.enum_type.values_by_number:
                raise ValueError(text)
            return number
        if field.type == FD.TYPE_STRING:
            return text
    except ValueError:
        raise OverrideError(
            f"override {override!r}: {text!r} is not a valid value for "
            f"{field.full_name} ({_TYPE_NAMES.get(field.type, field.type)})"
        ) from None
    raise OverrideError(
        f"override {override!r}: field {field.full_name} has unsupported type {field.type}"
    )


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 5.28; `label` is gone in newer releases
        return bool(field.is_repeated)
    return bool(field.label == FD.LABEL_REPEATED)


def apply_override(pipeline: message.Message, override: str) -> None:
    """Applies one `FIELD=VALUE` override to the pipeline proto in place."""
    if "=" not in override:
        raise OverrideError(f"override {override!r}: expected FIELD=VALUE")
    path, text = override.split("=", 1)
    names = path.strip().split(".")
    target = pipeline
    for depth, name in enumerate(names):
        field = target.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            known = ", ".join(sorted(target.DESCRIPTOR.fields_by_name))
            raise OverrideError(
                f"override {override!r}: {target.DESCRIPTOR.full_name} has no field "
                f"{name!r} (fields: {known})"
            )
        last = depth == len(names) - 1
        repeated = _is_repeated(field)
        if not last:
            if field.type != FD.TYPE_MESSAGE or repeated:
                raise OverrideError(
                    f"override {override!r}: {field.full_name} is not a singular message"
                )
            target = getattr(target, name)
            continue
        if field.type == FD.TYPE_MESSAGE:
            if repeated:
                raise OverrideError(
                    f"override {override!r}: repeated message {field.full_name} unsupported"
                )
            submessage = getattr(target, name)
            submessage.Clear()
            try:
                text_format.Parse(text.strip().removeprefix("{").removesuffix("}"), submessage)
            except text_format.ParseError as error:
                raise OverrideError(f"override {override!r}: {error}") from None
            submessage.SetInParent()
        elif repeated:
            container = getattr(target, name)
            del container[:]
            container.extend(
                _scalar(field, item.strip(), override) for item in text.split(",") if item.strip()
            )
        else:
            setattr(target, name, _scalar(field, text.strip(), override))


def apply_overrides(pipeline: message.Message, overrides: list[str]) -> None:
    for override in overrides:
        apply_override(pipeline, override)
