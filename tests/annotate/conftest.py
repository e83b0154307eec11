"""Fixtures of the annotate tests: tiny projects over raccoon images and real servers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
