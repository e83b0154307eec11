"""Turn protobuf's text-format ``ParseError`` into one ``ConfigError`` a person can act on.

protobuf reports ``line:column`` and a terse reason. We re-read the text up to that position,
tracking which message each ``{`` opens, to name the field path
(``train_config.data_augmentation_options[1].random_crop_image.min_area``), the value found,
the type expected and, for a misspelt field or enum value, the closest valid name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor

from objdet.config.suggestions import field_type_name, unknown_enum_text, unknown_field_text
from objdet.errors import ConfigError

_TOKEN = re.compile(
    r"""(?P<skip>\s+|\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<word>[A-Za-z0-9_.+\-]+)
      | (?P<punct>[{}<>:\[\],;])
      | (?P<other>.)""",
    re.VERBOSE,
)
_UNKNOWN_FIELD = re.compile(r'has no field named "(?P<name>[^"]+)"')
_BAD_VALUE = re.compile(
    r"Couldn't parse|Value out of range|Expected string|Expected \"true\"|Expected \"\{\"|Invalid"
)
_UNKNOWN_ENUM = re.compile(
    r'Enum type "[^"]+" has no value (?:named|with number) (?P<value>\S+?)\.?$'
)


@dataclass
class _Token:
    text: str
    kind: str
    line: int  # 1-based, like ParseError
    column: int  # 1-based


@dataclass
class _Level:
    """One open message while walking the text."""

    label: str
    descriptor: Descriptor | None
    last_field: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class ErrorLocation:
    """Where a parse error sits in the schema: the enclosing message and the field."""

    path: str
    message: Descriptor | None
    field_name: str | None
    found: str | None


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    line, line_start = 1, 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind != "skip":
            tokens.append(_Token(match.group(), kind, line, match.start() - line_start + 1))
        newlines = match.group().count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + match.group().rindex("\n") + 1
    return tokens


def _child(level: _Level, name: str) -> _Level:
    """The level a ``name {`` opens; repeated fields get an index, e.g. ``eval_input_reader[1]``."""
    field_descriptor = level.descriptor.fields_by_name.get(name) if level.descriptor else None
    label = name
    if field_descriptor is not None and field_descriptor.is_repeated:
        index = level.counts.get(name, 0)
        level.counts[name] = index + 1
        label = f"{name}[{index}]"
    level.last_field = label
    child_descriptor = field_descriptor.message_type if field_descriptor is not None else None
    return _Level(label, child_descriptor)


def locate(text: str, line: int, column: int, root: Descriptor) -> ErrorLocation:
    """Walk ``text`` up to (line, column) and report the field being parsed there."""
    tokens = _tokens(text)
    stack = [_Level("", root)]
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if (token.line, token.column) >= (line, column):
            break
        following = tokens[position + 1].text if position + 1 < len(tokens) else ""
        if token.kind == "word" and following == ":":
            stack[-1].last_field = token.text
            after_colon = tokens[position + 2].text if position + 2 < len(tokens) else ""
            if after_colon in ("{", "<"):
                stack.append(_child(stack[-1], token.text))
                position += 2
        elif token.kind == "word" and following in ("{", "<"):
            stack.append(_child(stack[-1], token.text))
            position += 1
        elif token.text in ("}", ">") and len(stack) > 1:
            stack.pop()
        position += 1
    found = tokens[position] if position < len(tokens) else None
    following = tokens[position + 1].text if position + 1 < len(tokens) else ""
    field_name = stack[-1].last_field
    if found is not None and found.kind == "word" and following in (":", "{", "<"):
        field_name = found.text  # the error is about this field name itself
    labels = [level.label for level in stack[1:]] + ([field_name] if field_name else [])
    return ErrorLocation(
        ".".join(labels), stack[-1].descriptor, field_name, found.text if found else None
    )


def _reason(error: text_format.ParseError) -> str:
    """protobuf's reason without its ``line:col :`` prefix and the echo of the line."""
    reason = str(error)
    reason = re.sub(r"^\d+:\d+ : ", "", reason)
    return re.sub(r"^'.*?': (?=[A-Z])", "", reason, count=1, flags=re.DOTALL)


def _describe(reason: str, where: ErrorLocation) -> str:
    unknown_field = _UNKNOWN_FIELD.search(reason)
    if unknown_field and where.message is not None:
        return unknown_field_text(unknown_field.group("name"), where.message)
    field_descriptor = None
    if where.message is not None and where.field_name:
        field_descriptor = where.message.fields_by_name.get(where.field_name.split("[")[0])
    unknown_enum = _UNKNOWN_ENUM.search(reason)
    if unknown_enum and field_descriptor is not None and field_descriptor.enum_type is not None:
        return unknown_enum_text(unknown_enum.group("value"), field_descriptor.enum_type)
    if field_descriptor is not None and where.found is not None and _BAD_VALUE.match(reason):
        expected = field_type_name(field_descriptor)
        return f"expected {expected}, found {where.found!r} ({reason})"
    return reason


def config_error_from_parse_error(
    error: text_format.ParseError, text: str, source: str, root: Descriptor, path_prefix: str = ""
) -> ConfigError:
    """One ``ConfigError``: ``source:line:col: field.path: what is wrong``.

    ``path_prefix`` names where ``root`` sits when ``text`` is a snippet of a larger config.
    """
    line, column = error.GetLine(), error.GetColumn()
    reason = _reason(error)
    if line is None or column is None:
        return ConfigError(f"{source}: {reason}")
    where = locate(text, line, column, root)
    prefix = f"{source}:{line}:{column}: "
    path = ".".join(part for part in (path_prefix, where.path) if part)
    if path:
        prefix += f"{path}: "
    return ConfigError(prefix + _describe(reason, where))
