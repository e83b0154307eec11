"""Precision/recall curves, average precision variants and CorLoc.

The numbers follow the OD API's ``utils/metrics.py``, tied scores included: detections are
ranked by ``odapi_score_order``, the very numpy call the OD API makes (see there).
"""

from __future__ import annotations

import numpy as np


def odapi_score_order(scores: np.ndarray) -> np.ndarray:
    """Indices ``[K]`` that rank ``scores [K]`` best first, exactly as the OD API ranks them.

    The OD API ranks with ``np.argsort(scores)[::-1]``: per image and class before matching
    (``np_box_list_ops.sort_by_field`` inside its non-max suppression) and per class over
    all images before the precision/recall curve (``metrics.compute_precision_recall``).
    numpy's default sort is not stable: among equal scores the order is whatever its
    introsort (or SIMD sort) leaves for this particular array, reversed. Tied scores are
    common (rounded or saturated scores), and their order decides which detection is the
    true positive and where ties sit on the curve; so this copies the call itself, not a
    tidier rule, for tie parity with the OD API. It gives the OD API's order when ``scores``
    holds the same values in the same order as the OD API's array (float64: its offline
    parser and evaluators hold float64) and numpy is the same version on the same kind of
    CPU; the tie order of either may differ elsewhere.
    """
    return np.argsort(np.asarray(scores, dtype=np.float64))[::-1]


def precision_recall(
    scores: np.ndarray, tp_weights: np.ndarray, num_ground_truth: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Precision and recall ``[K]`` after each of K detections, best score first.

    Args:
        scores: ``[K]`` detection (or group-of entry) scores, in the OD API's order (image
            by image as added; in each image, class entries as ``per_image.match_image``
            returns them): ties are ranked by ``odapi_score_order`` on this exact array.
        tp_weights: ``[K]`` true-positive weights; an entry ``<= 0`` is a false positive.
        num_ground_truth: number of (weighted) ground truth objects of the class.

    Returns:
        ``(precision, recall)``, or None when ``num_ground_truth`` is 0 (AP undefined).
    """
    if scores.shape != tp_weights.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and tp_weights {tp_weights.shape} must be [K]")
    if num_ground_truth == 0:
        return None
    order = odapi_score_order(scores)
    weights = tp_weights[order].astype(np.float64)
    cumulative_tp = np.cumsum(weights)
    cumulative_fp = np.cumsum(weights <= 0)
    precision = cumulative_tp / (cumulative_tp + cumulative_fp)
    recall = cumulative_tp / float(num_ground_truth)
    return precision, recall


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+ devkit, the OD API's compute_average_precision).

    The precision envelope (max precision at any recall >= r) integrated over recall, with
    recall padded by 0 and 1 and precision by 0 at both ends. Empty curves give 0.0.
    """
    if precision.size == 0:
        return 0.0
    padded_recall = np.concatenate([[0.0], recall, [1.0]])
    padded_precision = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(padded_precision[::-1])[::-1]
    steps = np.flatnonzero(padded_recall[1:] != padded_recall[:-1]) + 1
    return float(np.sum((padded_recall[steps] - padded_recall[steps - 1]) * envelope[steps]))


def eleven_point_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2007 11-point AP: mean over r in {0, 0.1, ..., 1} of max precision at recall >= r."""
    if precision.size == 0:
        return 0.0
    thresholds = np.linspace(0.0, 1.0, 11)
    reached = recall[None, :] >= thresholds[:, None]  # [11, K]
    best = np.where(reached, precision[None, :], 0.0).max(axis=1)
    return float(best.mean())


def restrict_to_recall(
    precision: np.ndarray, recall: np.ndarray, lower: float, upper: float
) -> tuple[np.ndarray, np.ndarray]:
    """The curve points with ``lower <= recall <= upper`` (precision at recall metrics)."""
    inside = (recall >= lower) & (recall <= upper)
    return precision[inside], recall[inside]


def cor_loc(num_images_with_class: np.ndarray, num_images_localized: np.ndarray) -> np.ndarray:
    """CorLoc per class ``[C]``: images whose top detection hit an object / images with it.

    NaN for classes without ground truth images (Deselaers et al., ECCV 2010).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            num_images_with_class == 0,
            np.nan,
            num_images_localized / np.maximum(num_images_with_class, 1),
        )
