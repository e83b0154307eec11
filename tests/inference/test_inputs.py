"""Decoding a Predictor's input per input_type; bad inputs are clear DataErrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_detector import example_bytes, png_bytes, sample_image

from objdet.errors import ConfigError, DataError
from objdet.inference.inputs import decode_input, parse_example, read_image_file

IMAGE = sample_image(height=12, width=20)
CHW = torch.from_numpy(IMAGE).permute(2, 0, 1)


@pytest.mark.parametrize(
    ("input_type", "value"),
    [
        ("image_tensor", IMAGE),
        ("image_tensor", IMAGE[None]),
        ("image_tensor", torch.from_numpy(IMAGE)),
        ("image_tensor", Image.fromarray(IMAGE)),
        ("encoded_image_string_tensor", png_bytes(IMAGE)),
        ("encoded_image_string_tensor", [png_bytes(IMAGE)]),
        ("encoded_image_string_tensor", np.array([png_bytes(IMAGE)], dtype=object)),
        ("tf_example", example_bytes(IMAGE)),
        ("tf_example", [example_bytes(IMAGE)]),
        ("tf_example", parse_example(example_bytes(IMAGE))),
    ],
)
def test_every_input_form_decodes_to_the_same_pixels(input_type: str, value: object) -> None:
    assert torch.equal(decode_input(value, input_type), CHW)


@pytest.mark.parametrize(
    ("input_type", "bad_input", "message"),
    [
        ("image_tensor", IMAGE.astype(np.float32), "must be uint8 .* got float32 \\[12, 20, 3\\]"),
        ("image_tensor", IMAGE[..., :2], "must be uint8 .* got uint8 \\[12, 20, 2\\]"),
        ("image_tensor", png_bytes(IMAGE), "use input_type encoded_image_string_tensor"),
        ("encoded_image_string_tensor", b"not an image", "not an image file"),
        ("encoded_image_string_tensor", b"", "the image is empty"),
        ("encoded_image_string_tensor", [b"a", b"b"], "shape \\[1\\], got 2 values"),
        ("encoded_image_string_tensor", IMAGE, "got 12 values|expected bytes"),
        ("tf_example", b"\xff\xff\xff", "not a serialized tf.Example"),
        ("tf_example", parse_example(b""), "no single image/encoded"),
    ],
)
def test_bad_inputs_are_clear_errors(input_type: str, bad_input: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        decode_input(bad_input, input_type, source="request 3")


def test_error_names_the_source() -> None:
    with pytest.raises(DataError, match="^request 3: "):
        decode_input(b"junk", "encoded_image_string_tensor", source="request 3")


def test_unknown_input_type() -> None:
    with pytest.raises(ConfigError, match="expected one of image_tensor, float_image_tensor, encoded"):
        decode_input(IMAGE, "rgb_tensor")


def test_float_image_tensor_keeps_fractional_pixels() -> None:
    values = IMAGE.astype(np.float32) + 0.25
    found = decode_input(values[None], "float_image_tensor")
    assert found.dtype == torch.float32 and torch.equal(found, torch.from_numpy(values).permute(2, 0, 1))
    with pytest.raises(DataError, match="float_image_tensor input must be float"):
        decode_input(IMAGE, "float_image_tensor")  # uint8 is image_tensor's
    with pytest.raises(DataError, match="NaN or infinite"):
        decode_input(np.full((2, 2, 3), np.nan, np.float32), "float_image_tensor")


def test_image_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "a.png"
    good.write_bytes(png_bytes(IMAGE))
    assert torch.equal(read_image_file(good), CHW)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"GIF89a truncated")
    with pytest.raises(DataError, match=f"{bad}: not an image file"):
        read_image_file(bad)
    with pytest.raises(DataError, match="cannot read image file"):
        read_image_file(tmp_path / "missing.jpg")
