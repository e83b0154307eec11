"""Comparing a metrics dict with a reference one (the OD API's, from the parity fixtures)."""

from __future__ import annotations

import math

import pytest


def assert_same_metrics(found: dict[str, float], expected: dict[str, float]) -> None:
    """The same metric names, and each value within 1e-6 (NaN where the reference has NaN)."""
    assert sorted(found) == sorted(expected)
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(found[name]), name
        else:
            assert found[name] == pytest.approx(value, abs=1e-6), name
