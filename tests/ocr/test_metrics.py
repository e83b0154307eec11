from __future__ import annotations

import pytest

from objdet.ocr.metrics import cer, error_rates, normalize_text, wer


def test_error_rates_count_edits_over_reference_length() -> None:
    assert cer("hello world", "hello world") == 0.0
    assert cer("hello world", "helo world") == pytest.approx(1 / 11)
    assert wer("hello world", "helo world") == pytest.approx(1 / 2)
    assert cer("ab\ncd", "ab cd") == pytest.approx(1 / 5)  # the line break is a character


def test_whitespace_is_normalized() -> None:
    assert normalize_text("  a   b \n\n c\n") == "a b\nc"
    assert cer("a b\nc", "a  b\n\nc\n") == 0.0


def test_totals_over_pages_weight_by_length() -> None:
    counts = error_rates(["aaaa", "bb"], ["aaab", "bb"])
    assert counts.cer == pytest.approx(1 / 6)
    assert counts.wer == pytest.approx(1 / 2)
    assert error_rates([""], ["x"]).cer == 1.0
    with pytest.raises(ValueError):
        error_rates(["a"], [])
