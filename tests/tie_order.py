"""numpy's tie order, which the OD API's metrics depend on, differs between CPUs.

The OD API ranks detections with ``np.argsort(scores)[::-1]`` (see
``objdet.evaluation.average_precision.odapi_score_order``): among equal scores the order is
whatever numpy's SIMD sort for this CPU leaves (AVX-512 and AVX2 machines differ, with the
same numpy). objdet reproduces the call, so it equals the OD API on the same machine; a
reference value recorded on another kind of CPU can differ wherever ties decide a metric.

Fixtures recorded on more than one kind of machine keep the extra values under
``argsort-<fingerprint>/`` beside the default ones; :func:`fixture_file` picks this machine's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def argsort_fingerprint() -> str:
    """A short hash of the permutations ``np.argsort`` gives for tied float64 arrays of
    several sizes (the sizes and tie densities the metric fixtures hold)."""
    generator = np.random.default_rng(0)
    parts = []
    for size in (17, 64, 257, 1000, 4099):
        for decimals in (1, 2):
            probe = np.round(generator.random(size), decimals)
            parts.append(np.argsort(probe).astype(np.int64).tobytes())
    return hashlib.sha256(b"".join(parts)).hexdigest()[:12]


def fixture_file(directory: Path, name: str) -> Path:
    """``directory/argsort-<this machine's fingerprint>/name`` when recorded, else
    ``directory/name``."""
    specific = directory / f"argsort-{argsort_fingerprint()}" / name
    return specific if specific.is_file() else directory / name
