"""Decoding image bytes: the same pixels as before, clear errors instead of crashes, a pixel limit."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from objdet.data import image_decode
from objdet.data.image_decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
    decode_image_bytes,
    max_image_pixels,
    read_image_header,
    set_max_image_pixels,
    verify_image_bytes,
)
from objdet.errors import ConfigError, DataError

RACCOON_IMAGES = Path(__file__).resolve().parents[2] / "datasets" / "raccoon" / "images"


@pytest.fixture(autouse=True)
def default_limit(monkeypatch: pytest.MonkeyPatch):
    """Each test starts from the default limit (no environment variable, no override)."""
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)
    set_max_image_pixels(None)
    yield
    set_max_image_pixels(None)


def raccoon_jpeg(number: int = 1) -> bytes:
    return (RACCOON_IMAGES / f"raccoon-{number}.jpg").read_bytes()


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` RGB, with one tiny IDAT and IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        image_decode.PNG_SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_same_pixels_as_torchvision_for_jpeg_and_png() -> None:
    image = Image.open(io.BytesIO(raccoon_jpeg(3)))
    for data in (
        raccoon_jpeg(3),
        encoded(image, "JPEG", progressive=True),
        encoded(image, "PNG"),
        encoded(image.convert("P"), "PNG"),
        encoded(image, "PNG", interlace=1),
        encoded(image.convert("L"), "PNG"),
    ):
        reference = decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
        )
        decoded = decode_image_bytes(data, "x")
        assert decoded.dtype == torch.uint8
        assert torch.equal(decoded, reference)


def test_gray_masks() -> None:
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:6] = 1
    for image in (Image.fromarray(mask), Image.fromarray(mask * 255).convert("P")):
        decoded = decode_image_bytes(encoded(image, "PNG"), "mask", gray=True)
        assert decoded.shape == (1, 5, 7)
        assert torch.equal(decoded[0] > 0, torch.from_numpy(mask > 0))


def test_headers_give_pillows_sizes_without_decoding() -> None:
    for path in sorted(RACCOON_IMAGES.glob("*.jpg"))[:50]:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            expected = ("jpeg", image.height, image.width)
        header = read_image_header(data, str(path))
        assert (header.image_format, header.height, header.width) == expected
    image = Image.new("RGB", (9, 4))
    assert read_image_header(encoded(image, "PNG"), "x") == image_decode.ImageHeader("png", 4, 9)
    assert read_image_header(encoded(image, "GIF"), "x") == image_decode.ImageHeader("gif", 4, 9)
    assert read_image_header(encoded(image, "BMP"), "x").image_format == "bmp"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^img: the image is empty \(0 bytes\)$"),
        (
            b"this is text",
            r"^img: not an image file \(JPEG/PNG expected\); it starts with bytes 74 68",
        ),
        (
            b"\xff\xd8\xff\xe0\x00\x10JFIF",
            r"^img: JPEG data cut short: it ends before the frame header$",
        ),
        (
            b"\xff\xd8\xff\xda\x00\x02",
            r"^img: corrupt JPEG: no frame header before the image data$",
        ),
        (b"\xff\xd8\x00\x00", r"^img: corrupt JPEG: expected a marker at byte 2$"),
        (
            image_decode.PNG_SIGNATURE + b"\0\0\0\x0dIHDR",
            r"^img: PNG data cut short or corrupt: no IHDR",
        ),
        (png_header_only(0, 5), r"^img: the PNG header declares an empty image \(0x5\)$"),
    ],
)
def test_bad_headers_name_the_source(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        decode_image_bytes(data, "img")


def test_truncated_and_corrupt_data_are_errors_not_crashes() -> None:
    """Cut short at many offsets, zero-filled after the cut (a preallocated download), one
    byte flipped: every case is a DataError. Run in a subprocess, because torchvision's PNG
    decoder, which objdet used before, kills the process (SIGSEGV) on some of them."""
    script = textwrap.dedent(
        f"""
        import io, random
        from PIL import Image
        from objdet.data.image_decode import decode_image_bytes
        from objdet.errors import DataError

        jpeg = open({str(RACCOON_IMAGES / "raccoon-1.jpg")!r}, "rb").read()
        buffer = io.BytesIO()
        Image.open(io.BytesIO(jpeg)).resize((96, 64)).save(buffer, "PNG")
        png = buffer.getvalue()
        rng = random.Random(0)
        outcome = {{}}
        for name, good in (("jpeg", jpeg), ("png", png)):
            cuts = range(1, len(good) - 2, max(1, len(good) // 60))
            cases = [good[:cut] for cut in cuts]
            cases += [good[:cut] + bytes(len(good) - cut) for cut in cuts]
            for _ in range(60):
                flipped = bytearray(good)
                flipped[rng.randrange(2, len(good))] ^= 0xFF
                cases.append(bytes(flipped))
            for data in cases:
                try:
                    decode_image_bytes(data, name)
                    kind = "ok"
                except DataError as error:
                    assert str(error).startswith(name + ": "), error
                    kind = "DataError"
                outcome[name, kind] = outcome.get((name, kind), 0) + 1
        print(sorted(outcome.items()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts = dict(eval(result.stdout))  # our own script's repr of a list of pairs
    # Every cut, zero-filled or flipped PNG is refused (a flip breaks a chunk CRC); every cut
    # or zero-filled JPEG too (a JPEG with a flipped byte may still decode, with a warning).
    assert counts[("png", "DataError")] == 61 + 61 + 60 and ("png", "ok") not in counts
    assert counts[("jpeg", "DataError")] >= 61 + 61


def test_truncated_files_are_named_with_what_is_wrong() -> None:
    jpeg = raccoon_jpeg(1)
    with pytest.raises(
        DataError,
        match=r"^a\.jpg: JPEG data does not decode \(truncated or corrupt 650x417 image\): Image is incomplete or truncated$",
    ):
        decode_image_bytes(jpeg[: len(jpeg) // 2], "a.jpg")
    png = encoded(Image.open(io.BytesIO(jpeg)), "PNG")
    with pytest.raises(
        DataError, match=r"^a\.png: PNG data cut short: the IDAT chunk at byte \d+ needs"
    ):
        decode_image_bytes(png[: len(png) // 2], "a.png")
    zero_filled = png[: len(png) // 2] + bytes(len(png) - len(png) // 2)
    with pytest.raises(DataError, match=r"^a\.png: corrupt PNG: CRC mismatch in the IDAT chunk"):
        decode_image_bytes(zero_filled, "a.png")  # Pillow alone decodes it into wrong pixels
    with pytest.raises(DataError, match=r"^a\.png: corrupt PNG: CRC mismatch"):
        verify_image_bytes(zero_filled, "a.png")
    with pytest.raises(DataError, match=r"^a\.jpg: JPEG data does not decode"):
        verify_image_bytes(jpeg[: len(jpeg) // 2], "a.jpg")
    assert verify_image_bytes(jpeg, "a.jpg") == image_decode.ImageHeader("jpeg", 417, 650)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    bomb = png_header_only(20000, 20000)  # 133 bytes claiming 1.2 GB of RGB pixels
    message = (
        r"^bomb\.png: the PNG header declares 20000x20000 = 400,000,000 pixels, above the "
        r"limit of 89,478,485 \(a decompression bomb guard; raise it with --max_image_pixels "
        rf"or {MAX_IMAGE_PIXELS_ENV}\)$"
    )
    for check in (decode_image_bytes, read_image_header, verify_image_bytes):
        with pytest.raises(DataError, match=message):
            check(bomb, "bomb.png")
    assert DEFAULT_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS  # Pillow's default guard


def test_the_limit_comes_from_the_override_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = raccoon_jpeg(1)  # 650x417 = 271,050 pixels
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "271049")
    with pytest.raises(DataError, match="271,050 pixels, above the limit of 271,049"):
        decode_image_bytes(image, "a.jpg")
    assert decode_image_bytes(image, "a.jpg", max_pixels=271_050).shape == (3, 417, 650)
    set_max_image_pixels(0)  # the CLI flag: no limit, over the environment
    assert decode_image_bytes(image, "a.jpg").shape == (3, 417, 650)
    set_max_image_pixels(None)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(
        ConfigError, match=rf"{MAX_IMAGE_PIXELS_ENV}='lots': expected a pixel count"
    ):
        decode_image_bytes(image, "a.jpg")
    with pytest.raises(ConfigError, match="must be >= 0"):
        set_max_image_pixels(-1)
