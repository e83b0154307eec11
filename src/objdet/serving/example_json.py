"""TF Serving's REST classify / regress body -> ``ClassificationRequest`` / ``RegressionRequest``.

The body (https://www.tensorflow.org/tfx/serving/api_rest#classify_and_regress_api)::

    {"signature_name": "<name>",                              # optional
     "context": {"<feature>": <value or list>, ...},          # optional, shared by all
     "examples": [{"<feature>": <value or list>, ...}, ...]}

A feature value is a string or ``{"b64": "..."}`` (bytes_list), a number with a fraction or
an exponent (float_list), an integer or a boolean (int64_list), or a list of values of one of
these kinds. The checks, their order and their messages are TF Serving's
(util/json_tensor.cc ``FillClassifyRegressRequestFromJson``, ``ParseJson``), and the JSON a
message quotes is printed as its rapidjson ``PrettyWriter`` prints it (4-space indent).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import TypeVar

from objdet.serving.errors import ServingError, invalid_argument
from objdet.serving.protos import (
    classification_pb2,
    example_pb2,
    feature_pb2,
    input_pb2,
    regression_pb2,
)

Request = TypeVar("Request", classification_pb2.ClassificationRequest,
                  regression_pb2.RegressionRequest)
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1
_FLOAT_MAX = 3.4028234663852886e38


def fill_request(body: bytes, request: Request) -> Request:
    """``request`` (its model_spec name/version already set) with the body's signature_name
    and examples; INVALID_ARGUMENT ``ServingError`` with TF Serving's message if malformed."""
    document = _parse(body)
    signature_name = document.get("signature_name")
    if "signature_name" in document:
        if not isinstance(signature_name, str):
            raise _format_error(document, "not formatted correctly. 'signature_name' key must "
                                "be a string value.")
        request.model_spec.signature_name = signature_name
    inputs: input_pb2.Input = request.input
    with_context = "context" in document
    if with_context:
        _fill_example(document["context"], inputs.example_list_with_context.context)
    examples = document.get("examples")
    if "examples" not in document:
        raise _format_error(document, "When method is classify, key 'examples' is expected "
                            "and was not found")
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    for value in examples:
        target = (inputs.example_list_with_context.examples if with_context
                  else inputs.example_list.examples)
        _fill_example(value, target.add())
    return request


def _parse(body: bytes) -> dict[str, JsonValue]:
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    # bytes that are not UTF-8 pass through, as rapidjson (no encoding validation) lets them
    text = body.decode("utf-8", "surrogateescape")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        message, position = _rapidjson_error(text, error)
        offset = len(text[:position].encode("utf-8", "surrogateescape"))  # rapidjson's: bytes
        raise invalid_argument(f"JSON Parse error: {message} at offset: {offset}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: Terminate parsing due to Handler error.") from None
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


def _fill_example(value: JsonValue, example: example_pb2.Example) -> None:
    """TF Serving's ``MakeExampleFromJsonObject``."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {_type_name(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def _add_value(value: JsonValue, name: str, feature: feature_pb2.Feature) -> None:
    """TF Serving's ``AddValueToFeature``: one JSON value appended to ``feature``'s list."""
    if value is None or isinstance(value, list) or (isinstance(value, dict)
                                                    and not _is_base64_object(value)):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: "
                               f"{_type_name(value)}")
    if isinstance(value, bool):
        _check_kind(feature, "int64_list", name)
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict | str):
        _check_kind(feature, "bytes_list", name)
        feature.bytes_list.value.append(_bytes_of(value))
    elif isinstance(value, int) and value <= _UINT64_MAX:  # larger: rapidjson reads a double
        _check_kind(feature, "int64_list", name)
        if not _INT64[0] <= value <= _INT64[1]:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)
    else:
        _check_kind(feature, "float_list", name)
        number = float(value)
        if math.isfinite(number) and abs(number) > _FLOAT_MAX:
            raise invalid_argument(f"Cannot convert JSON value: {_decimal(number)} to float "
                                   "without loss of precision.")
        feature.float_list.value.append(number)


def _check_kind(feature: feature_pb2.Feature, kind: str, name: str) -> None:
    current = feature.WhichOneof("kind")
    if current is not None and current != kind:
        raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: "
                               f"{current.removesuffix('_list')}")


def _is_base64_object(value: dict[str, JsonValue]) -> bool:
    return len(value) == 1 and isinstance(value.get("b64"), str)


def _bytes_of(value: dict[str, JsonValue] | str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    try:
        return base64.b64decode(str(value["b64"]), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_name(value: JsonValue) -> str:
    """rapidjson's type, as TF Serving's ``JsonTypeString`` names it."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "String" if isinstance(value, str) else "Number"


def _format_error(document: JsonValue, message: str) -> ServingError:
    return invalid_argument(f"JSON Value: {pretty_json(document)} {message}")


# -- rapidjson's printing and parse errors ----------------------------------------------------
def pretty_json(value: JsonValue, depth: int = 0) -> str:
    """``value`` as rapidjson's ``PrettyWriter`` writes it (how TF Serving quotes a request)."""
    indent, inner = "    " * depth, "    " * (depth + 1)
    if isinstance(value, dict):
        members = [f"{inner}{_string(key)}: {pretty_json(item, depth + 1)}"
                   for key, item in value.items()]
        return "{\n" + ",\n".join(members) + f"\n{indent}}}" if members else "{}"
    if isinstance(value, list):
        items = [f"{inner}{pretty_json(item, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]" if items else "[]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int) and -(2**63) <= value <= _UINT64_MAX:
        return str(value)
    return _shortest_double(float(value))


def _string(text: str) -> str:
    # rapidjson escapes as json does, with upper-case hex digits, and keeps non-ASCII as is
    escaped = json.dumps(text, ensure_ascii=False)
    return re.sub(r"\\u00([0-9a-f]{2})", lambda match: "\\u00" + match[1].upper(), escaped)


def _shortest_double(number: float) -> str:
    """rapidjson's ``Writer::Double`` (Grisu2 shortest digits, then ``Prettify``)."""
    if math.isnan(number) or math.isinf(number):
        return "NaN" if math.isnan(number) else ("-Infinity" if number < 0 else "Infinity")
    if number == 0:
        return "-0.0" if math.copysign(1, number) < 0 else "0.0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    power = int(exponent or 0) - len(fraction) + len(digits) - len(digits.rstrip("0"))
    digits = digits.rstrip("0")  # number = digits * 10**power
    point = len(digits) + power  # where the decimal point goes
    if 0 <= power and point <= 21:
        text = digits + "0" * power + ".0"
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    elif len(digits) == 1:
        text = f"{digits}e{point - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{point - 1}"
    return sign + text


def _decimal(number: float) -> str:
    """TF Serving's ``WriteDecimal`` of a double (``absl::StrCat``: six significant digits,
    or 17 when those do not round-trip; ``.0`` on whole numbers)."""
    text = f"{number:g}"
    if float(text) != number:
        text = f"{number:.17g}"
    return text if "." in text or "e" in text else text + ".0"


def _rapidjson_error(text: str, error: json.JSONDecodeError) -> tuple[str, int]:
    """rapidjson's English message and offset (in characters) for the error Python's
    parser found at ``error.pos``."""
    message = error.msg
    if message == "Expecting value":
        return ("The document is empty." if not text.strip() else "Invalid value."), error.pos
    if message == "Expecting ',' delimiter":
        return ("Missing a comma or '}' after an object member." if _innermost(text, error.pos)
                == "{" else "Missing a comma or ']' after an array element."), error.pos
    if message == "Unterminated string starting at":  # rapidjson stops at the end
        return "Missing a closing quotation mark in string.", len(text)
    known = {"Expecting property name enclosed in double quotes":
             "Missing a name for object member.",
             "Expecting ':' delimiter": "Missing a colon after a name of object member.",
             "Extra data": "The document root must not be followed by other values.",
             "Invalid \\escape": "Invalid escape character in string.",
             "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
             "Invalid control character at": "Invalid encoding in string."}
    return known.get(message, message), error.pos


def _innermost(text: str, end: int) -> str:
    """The bracket (``{`` or ``[``) open at ``end`` in the JSON ``text``."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:end]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""
