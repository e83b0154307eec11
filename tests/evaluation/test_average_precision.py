"""AP, precision/recall and CorLoc on hand-computed curves."""

from __future__ import annotations

import numpy as np
import pytest

from objdet.evaluation.average_precision import (
    average_precision,
    cor_loc,
    eleven_point_average_precision,
    odapi_score_order,
    precision_recall,
    restrict_to_recall,
)


def test_precision_recall_sorts_by_score_and_counts_weights() -> None:
    scores = np.array([0.2, 0.9, 0.5])
    tp = np.array([1.0, 1.0, 0.0])
    precision, recall = precision_recall(scores, tp, num_ground_truth=4)
    # order: 0.9 TP, 0.5 FP, 0.2 TP
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5])


def test_no_ground_truth_gives_none() -> None:
    assert precision_recall(np.array([0.5]), np.array([0.0]), 0) is None


def test_all_point_average_precision_uses_precision_envelope() -> None:
    # Recall steps 0.5 at precision 1 and 0.5 at the envelope max(0.5, 2/3) = 2/3.
    precision = np.array([1.0, 0.5, 2 / 3])
    recall = np.array([0.5, 0.5, 1.0])
    assert average_precision(precision, recall) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_empty_curve_is_zero() -> None:
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_eleven_point_average_precision() -> None:
    precision = np.array([1.0, 0.5])
    recall = np.array([0.5, 1.0])
    # r in 0..0.5 (6 points) -> 1.0; r in 0.6..1.0 (5 points) -> 0.5
    assert eleven_point_average_precision(precision, recall) == pytest.approx((6 + 2.5) / 11)


def test_restrict_to_recall_keeps_points_inside_bounds() -> None:
    precision = np.array([1.0, 0.8, 0.6])
    recall = np.array([0.1, 0.5, 0.9])
    kept = restrict_to_recall(precision, recall, 0.2, 0.8)
    np.testing.assert_allclose(kept[0], [0.8])
    np.testing.assert_allclose(kept[1], [0.5])


def test_cor_loc_is_nan_without_images() -> None:
    result = cor_loc(np.array([2, 0, 4]), np.array([1, 0, 4]))
    np.testing.assert_allclose(result, [0.5, np.nan, 1.0])


def test_tied_scores_are_ranked_by_the_odapi_call() -> None:
    """Ties in the OD API's order: np.argsort (not stable) reversed, on the float64 array;
    the parity fixtures (test_offline.py) check the numbers against the OD API itself."""
    rng = np.random.default_rng(0)
    differs_from_stable = 0
    for size in (2, 3, 16, 17, 64, 500):
        scores = np.round(rng.random(size), 1)  # many ties
        expected = np.argsort(scores)[::-1]
        np.testing.assert_array_equal(odapi_score_order(scores), expected)
        np.testing.assert_array_equal(odapi_score_order(scores.astype(np.float32)), expected)
        differs_from_stable += not np.array_equal(expected, np.argsort(-scores, kind="stable"))
        tp = (rng.random(size) < 0.5).astype(np.float64)
        curve = precision_recall(scores, tp, num_ground_truth=size)
        assert curve is not None
        cumulative_tp = np.cumsum(tp[expected])
        np.testing.assert_allclose(curve[0], cumulative_tp / np.arange(1, size + 1))
    assert differs_from_stable  # ties are not ranked in insertion order