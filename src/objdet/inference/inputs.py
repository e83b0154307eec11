"""Turn a Predictor's input, per ``input_type``, into ``uint8 [3, H, W]`` RGB pixels.

* ``image_tensor``: ``uint8 [H, W, 3]`` or ``[1, H, W, 3]`` (numpy array or torch tensor),
  or a ``PIL.Image`` (converted to RGB);
* ``float_image_tensor``: ``float32 [H, W, 3]`` or ``[1, H, W, 3]`` pixel values in 0..255
  (kept as floats: ``float32 [3, H, W]``);
* ``encoded_image_string_tensor``: the bytes of a JPEG/PNG/GIF/BMP file (or a one-element
  list of them, the OD API's ``string [1]``);
* ``tf_example``: a serialized tf.Example (or an ``example_pb2.Example``) whose
  ``image/encoded`` holds the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf.message import DecodeError
from torch import Tensor

from objdet.data import image_decode
from objdet.errors import DataError
from objdet.export.signature import check_input_type
from objdet.protos import example_pb2


def decode_input(value: Any, input_type: str, source: str = "input") -> Tensor:
    """``value`` of the given ``input_type`` -> ``uint8 [3, H, W]`` RGB (``float32`` 0..255 for
    float_image_tensor); ``DataError`` when it is not that kind of input (``source`` names it
    in the message)."""
    check_input_type(input_type)
    if input_type == "image_tensor":
        return pixels_from_array(value, source)
    if input_type == "float_image_tensor":
        return pixels_from_float_array(value, source)
    if input_type == "encoded_image_string_tensor":
        return decode_image_bytes(_single_string(value, source), source)
    if isinstance(value, example_pb2.Example):
        return pixels_from_example(value, source)
    return pixels_from_example(_single_string(value, source), source)


def pixels_from_array(value: Any, source: str = "input") -> Tensor:
    """A PIL image or a ``uint8 [H, W, 3]`` / ``[1, H, W, 3]`` array -> ``uint8 [3, H, W]``."""
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL.Image
        value = np.asarray(value.convert("RGB"))
    if isinstance(value, (bytes, bytearray, str, os.PathLike)):
        raise DataError(
            f"{source}: image_tensor input must be uint8 pixels [H, W, 3], got "
            f"{type(value).__name__} (use input_type encoded_image_string_tensor for file bytes)"
        )
    pixels = value if isinstance(value, Tensor) else torch.tensor(np.asarray(value))  # a copy
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DataError(
            f"{source}: image_tensor input must be uint8 [1, H, W, 3] or [H, W, 3], got "
            f"{str(pixels.dtype).removeprefix('torch.')} {list(pixels.shape)}"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise DataError(f"{source}: image is empty ({list(pixels.shape)})")
    return pixels.permute(2, 0, 1).contiguous()


def pixels_from_float_array(value: Any, source: str = "input") -> Tensor:
    """A ``float [H, W, 3]`` / ``[1, H, W, 3]`` array of 0..255 values -> ``float32 [3, H, W]``."""
    if isinstance(value, (bytes, bytearray, str, os.PathLike)) or hasattr(value, "convert"):
        raise DataError(f"{source}: float_image_tensor input must be float pixels [1, H, W, 3], "
                        f"got {type(value).__name__}")
    pixels = value if isinstance(value, Tensor) else torch.tensor(np.asarray(value))
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if not pixels.is_floating_point() or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DataError(
            f"{source}: float_image_tensor input must be float [1, H, W, 3] or [H, W, 3], got "
            f"{str(pixels.dtype).removeprefix('torch.')} {list(pixels.shape)}"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise DataError(f"{source}: image is empty ({list(pixels.shape)})")
    if not torch.isfinite(pixels).all():
        raise DataError(f"{source}: float_image_tensor input has NaN or infinite values")
    return pixels.to(torch.float32).permute(2, 0, 1).contiguous()


def decode_image_bytes(data: bytes, source: str = "input") -> Tensor:
    """JPEG/PNG/... bytes -> ``uint8 [3, H, W]`` RGB; ``DataError`` naming ``source`` for bytes
    that are not an image, truncated or corrupt data, or a size above the pixel limit
    (``objdet.data.image_decode``: the header is checked before decoding)."""
    return image_decode.decode_image_bytes(data, source)


def pixels_from_example(value: bytes | example_pb2.Example, source: str = "input") -> Tensor:
    """A (serialized) tf.Example -> its ``image/encoded`` decoded to ``uint8 [3, H, W]``."""
    example = value if isinstance(value, example_pb2.Example) else parse_example(value, source)
    feature = example.features.feature.get("image/encoded")
    if feature is None or len(feature.bytes_list.value) != 1:
        raise DataError(f"{source}: tf.Example has no single image/encoded bytes value")
    return decode_image_bytes(feature.bytes_list.value[0], f"{source}: image/encoded")


def parse_example(data: bytes, source: str = "input") -> example_pb2.Example:
    example = example_pb2.Example()
    try:
        example.ParseFromString(bytes(data))
    except (DecodeError, TypeError) as error:
        raise DataError(f"{source}: not a serialized tf.Example ({error})") from None
    return example


def read_image_file(path: str | os.PathLike[str]) -> Tensor:
    """An image file -> ``uint8 [3, H, W]`` RGB; ``DataError`` naming the file otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read image file: {error.strerror}") from None
    return decode_image_bytes(data, os.fspath(path))


def _single_string(value: Any, source: str) -> bytes:
    """The OD API's ``string [1]``: bytes, or a one-element list/array of bytes."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != 1:
            raise DataError(f"{source}: expected a string tensor of shape [1], got {len(value)} values")
        value = value[0]
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise DataError(f"{source}: expected bytes (string [1] input), got {type(value).__name__}")
    return bytes(value)
