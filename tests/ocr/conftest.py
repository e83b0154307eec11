"""Shared fixtures of the OCR tests: a few glyphs drawn with DejaVu Sans (Debian's fonts-dejavu)."""

from __future__ import annotations

from pathlib import Path

import pytest

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.fixture(scope="session")
def font_path() -> Path:
    if not FONT.is_file():
        pytest.skip(f"{FONT} is not installed (Debian package fonts-dejavu-core)")
    return FONT
