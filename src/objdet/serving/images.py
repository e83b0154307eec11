"""Request values -> decoded images, per the export's ``input_type``; ``ServingError`` if bad.

A value is one image: ``uint8 [H, W, 3]`` pixels for ``image_tensor``; the bytes of a
JPEG/PNG file for ``encoded_image_string_tensor``; a serialized tf.Example (its
``image/encoded``) for ``tf_example``. Every decoding error is INVALID_ARGUMENT naming the
input and what was expected, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import torch

from objdet.errors import DataError
from objdet.inference.inputs import decode_image_bytes, pixels_from_example
from objdet.serving.errors import invalid_argument


def image_from_bytes(data: bytes, input_type: str, source: str) -> torch.Tensor:
    """Encoded image or serialized tf.Example bytes -> ``uint8 [3, H, W]``."""
    try:
        if input_type == "tf_example":
            return pixels_from_example(data, source)
        return decode_image_bytes(data, source)
    except DataError as error:
        raise invalid_argument(str(error)) from None


def image_from_pixels(pixels: np.ndarray, source: str) -> torch.Tensor:
    """``uint8 [H, W, 3]`` (any integer dtype in 0..255) -> ``uint8 [3, H, W]``."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise invalid_argument(f"{source}: expected an image of shape [H, W, 3], got "
                               f"{list(pixels.shape)}")
    if pixels.dtype != np.uint8:
        if pixels.dtype.kind not in "iu":
            raise invalid_argument(f"{source}: expected uint8 pixel values, got {pixels.dtype} "
                                   "(input_tensor is DT_UINT8)")
        if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise invalid_argument(f"{source}: uint8 pixel values must be in 0..255, got "
                                   f"{pixels.min()}..{pixels.max()}")
        pixels = pixels.astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()


def image_from_json(value: Any, input_type: str, source: str) -> torch.Tensor:
    """One JSON value -> ``uint8 [3, H, W]``: ``{"b64": "..."}`` (or a plain string) for the
    string input types, nested lists of integers for image_tensor."""
    if input_type == "image_tensor":
        if isinstance(value, dict):
            raise invalid_argument(f"{source}: input_tensor is DT_UINT8 pixels [H, W, 3]; "
                                   "{\"b64\": ...} is for string inputs")
        return image_from_pixels(_array(value, source), source)
    return image_from_bytes(_string_bytes(value, source), input_type, source)


def pixels_batch_from_json(value: Any, source: str) -> list[np.ndarray]:
    """A columnar image_tensor value ``[B, H, W, 3]`` (or one ``[H, W, 3]``) -> B arrays."""
    array = _array(value, source)
    if array.ndim == 3:
        return [array]
    if array.ndim != 4:
        raise invalid_argument(f"{source}: expected uint8 [B, H, W, 3], got shape {list(array.shape)}")
    return list(array)


def _array(value: Any, source: str) -> np.ndarray:
    if not isinstance(value, list):
        raise invalid_argument(f"{source}: expected nested lists of uint8 pixels, got "
                               f"{type(value).__name__}")
    try:
        array = np.asarray(value)
    except ValueError:
        raise invalid_argument(f"{source}: nested lists of different lengths (a tensor must "
                               "be rectangular)") from None
    if array.dtype == object or array.dtype.kind not in "iufb":
        raise invalid_argument(f"{source}: expected uint8 pixel values, got {array.dtype.name} "
                               "values or uneven nesting")
    return array


def _string_bytes(value: Any, source: str) -> bytes:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid_argument(f"{source}: expected {{\"b64\": \"<base64>\"}}, got keys "
                                   f"{sorted(value)}")
        return decode_base64(value["b64"], source)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise invalid_argument(f"{source}: input_tensor is DT_STRING: expected {{\"b64\": ...}}, got "
                           f"{type(value).__name__}")


def decode_base64(text: str, source: str) -> bytes:
    """Standard or URL-safe base64 (padding optional) -> bytes."""
    padded = text + "=" * (-len(text) % 4)
    alphabet = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(f"{source}: Unable to base64 decode") from None
