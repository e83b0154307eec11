"""COCO's per-image, per-category greedy matching (pycocotools ``evaluateImg``), vectorized.

For one (image, category) pair pycocotools walks the detections by descending score (a
stable sort: tied scores keep their input order), keeps the first ``max_detections``, and
for every area range and IoU threshold gives each detection the best still-free ground truth
whose IoU reaches the threshold. Non-ignored ground truth is preferred over ignored (crowd or
outside the area range); among equals the *last* one in ground-truth order with the highest
IoU wins; crowd ground truth can be matched any number of times.

The walk is sequential in the detections, but only detections with an IoU >= the lowest
threshold against some ground truth can change anything. Those "candidates" are grouped per
pair, pairs are bucketed by their ground-truth count, and the walk runs once per detection
rank over all pairs of a bucket, all area ranges and all thresholds at once:
``[pairs, area ranges, thresholds, ground truth]`` boolean tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# (detection rows, ground-truth rows) -> IoU of each aligned pair, float64.
PairIouFunction = Callable[[IntArray, IntArray], FloatArray]


@dataclass
class EvaluationTables:
    """Ground truth and detections of one evaluation, one array entry per object.

    Image and category indices point into the sorted image ids / category ids (pycocotools
    evaluates images in sorted-id order, which decides how tied scores across images rank).

    Attributes:
        gt_image, gt_category: ``[G]`` int64 indices.
        gt_area: ``[G]`` float64 area deciding the area range (COCO's ``area`` field).
        gt_crowd: ``[G]`` bool ``iscrowd``: IoU is intersection over the detection's area
            and it may absorb any number of detections.
        gt_ignore: ``[G]`` bool ignored ground truth (crowd; for keypoints also no keypoints).
        gt_countable: ``[G]`` bool; False where pycocotools cannot count a match (annotation
            id 0: it records matches by id and reads id 0 as "unmatched").
        dt_image, dt_category: ``[D]`` int64 indices.
        dt_score: ``[D]`` float64 confidences (finite).
        dt_area: ``[D]`` float64 area deciding whether an unmatched detection is ignored.
    """

    num_images: int
    num_categories: int
    gt_image: IntArray
    gt_category: IntArray
    gt_area: FloatArray
    gt_crowd: BoolArray
    gt_ignore: BoolArray
    gt_countable: BoolArray
    dt_image: IntArray
    dt_category: IntArray
    dt_score: FloatArray
    dt_area: FloatArray


@dataclass
class MatchResult:
    """Per-detection outcome of the matching, for the detections kept (rank < max).

    Attributes:
        dt_rows: ``[N]`` rows of the kept detections in ``EvaluationTables``.
        rank: ``[N]`` int64 position of each by descending score within its pair.
        true_positive: ``[N, A, T]`` bool matched to (countable) ground truth.
        ignored: ``[N, A, T]`` bool neither true nor false positive.
        gt_ignored: ``[G, A]`` bool ground truth ignored per area range.
    """

    dt_rows: IntArray
    rank: IntArray
    true_positive: BoolArray
    ignored: BoolArray
    gt_ignored: BoolArray


def _ragged_arange(lengths: IntArray) -> IntArray:
    """``[0..lengths[0]), [0..lengths[1]), ...`` concatenated."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def _outside(areas: FloatArray, area_ranges: FloatArray) -> BoolArray:
    """``[N, A]`` areas outside each ``[lo, hi]`` range (pycocotools: ``a < lo or a > hi``)."""
    return (areas[:, None] < area_ranges[None, :, 0]) | (areas[:, None] > area_ranges[None, :, 1])


def sort_detections(tables: EvaluationTables, max_detections: int) -> tuple[IntArray, IntArray]:
    """Detections by (image, category, descending score, input order), capped per pair.

    Returns:
        rows: ``[N]`` kept detection rows in that order; rank: ``[N]`` rank in the pair.
    """
    order = np.lexsort((-tables.dt_score, tables.dt_category, tables.dt_image))
    pair_key = tables.dt_image[order] * tables.num_categories + tables.dt_category[order]
    new_pair = np.ones(order.size, dtype=bool)
    new_pair[1:] = pair_key[1:] != pair_key[:-1]
    pair_start = np.maximum.accumulate(np.where(new_pair, np.arange(order.size), 0))
    rank = np.arange(order.size) - pair_start
    keep = rank < max_detections
    return order[keep].astype(np.int64), rank[keep].astype(np.int64)


@dataclass
class _PairLayout:
    """Kept detections against the ground truth of their pair, flattened."""

    gt_order: IntArray  # ground-truth rows sorted by pair, input order within
    gt_first: IntArray  # [N] first index into gt_order of each detection's pair
    gt_count: IntArray  # [N] ground-truth count of each detection's pair
    element_first: IntArray  # [N] offset of each detection's IoU row in the flat IoUs
    ious: FloatArray  # flat: per detection, its IoU with each ground truth of its pair


def _layout_pairs(
    tables: EvaluationTables, dt_rows: IntArray, pair_ious: PairIouFunction
) -> _PairLayout:
    gt_key = tables.gt_image * tables.num_categories + tables.gt_category
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    dt_key = tables.dt_image[dt_rows] * tables.num_categories + tables.dt_category[dt_rows]
    gt_first = np.searchsorted(sorted_keys, dt_key, side="left")
    gt_count = np.searchsorted(sorted_keys, dt_key, side="right") - gt_first
    element_first = np.cumsum(gt_count) - gt_count
    element_dt = np.repeat(np.arange(dt_rows.size), gt_count)
    element_gt = gt_order[np.repeat(gt_first, gt_count) + _ragged_arange(gt_count)]
    ious = pair_ious(dt_rows[element_dt], element_gt)
    return _PairLayout(gt_order, gt_first, gt_count, element_first, ious)


@dataclass
class _Bucket:
    """Candidate detections of pairs with similar ground-truth counts, padded.

    Pairs are sorted by candidate count, descending, so the pairs still walking at
    candidate step ``c`` are a prefix.
    """

    ious: FloatArray  # [P, C, Gb] IoU of candidate c with ground truth j; -1 padding
    detections: IntArray  # [P, C] index into the kept detections; -1 padding
    candidate_count: IntArray  # [P] descending
    crowd: BoolArray  # [P, Gb]
    countable: BoolArray  # [P, Gb]
    ignored: BoolArray  # [P, A, Gb]


def _build_bucket(
    candidates: IntArray, layout: _PairLayout, pair_of: IntArray, tables: EvaluationTables,
    gt_ignored: BoolArray, width: int,
) -> _Bucket:
    """Pad the candidates (kept-detection indices, sorted by pair and rank) of one bucket."""
    pairs, first, counts = np.unique(pair_of[candidates], return_index=True, return_counts=True)
    by_count = np.argsort(-counts, kind="stable")
    slot_of_pair = np.empty(pairs.size, dtype=np.int64)
    slot_of_pair[by_count] = np.arange(pairs.size)
    slot = slot_of_pair[np.repeat(np.arange(pairs.size), counts)]
    step = _ragged_arange(counts)
    num_pairs, max_steps = pairs.size, int(counts.max())
    detections = np.full((num_pairs, max_steps), -1, dtype=np.int64)
    detections[slot, step] = candidates
    gt_count = layout.gt_count[candidates]
    ious = np.full((num_pairs, max_steps, width), -1.0)
    column = _ragged_arange(gt_count)
    ious[np.repeat(slot, gt_count), np.repeat(step, gt_count), column] = layout.ious[
        np.repeat(layout.element_first[candidates], gt_count) + column
    ]
    # Ground-truth attributes, from the first candidate of each pair.
    pair_det = candidates[first][by_count]
    pair_gt_count = layout.gt_count[pair_det]
    gt_column = _ragged_arange(pair_gt_count)
    gt_rows = layout.gt_order[np.repeat(layout.gt_first[pair_det], pair_gt_count) + gt_column]
    pair_slot = np.repeat(np.arange(num_pairs), pair_gt_count)
    crowd = np.zeros((num_pairs, width), dtype=bool)
    crowd[pair_slot, gt_column] = tables.gt_crowd[gt_rows]
    countable = np.zeros((num_pairs, width), dtype=bool)
    countable[pair_slot, gt_column] = tables.gt_countable[gt_rows]
    ignored = np.zeros((num_pairs, gt_ignored.shape[1], width), dtype=bool)
    ignored[pair_slot, :, gt_column] = gt_ignored[gt_rows]
    return _Bucket(ious, detections, counts[by_count], crowd, countable, ignored)


def _walk_bucket(
    bucket: _Bucket, thresholds: FloatArray, true_positive: BoolArray, matched_ignored: BoolArray
) -> None:
    """The greedy walk over one bucket; writes the candidates' rows of the two outputs."""
    num_pairs, max_steps, width = bucket.ious.shape
    num_areas = bucket.ignored.shape[1]
    taken = np.zeros((num_pairs, num_areas, thresholds.size, width), dtype=bool)
    for step in range(max_steps):
        active = int(np.count_nonzero(bucket.candidate_count > step))
        iou = bucket.ious[:active, step]  # [P, Gb]
        reaches = iou[:, None, :] >= thresholds[None, :, None]  # [P, T, Gb]
        free = ~taken[:active] | bucket.crowd[:active, None, None, :]  # [P, A, T, Gb]
        eligible = reaches[:, None] & free
        regular = eligible & ~bucket.ignored[:active, :, None, :]
        pool = np.where(regular.any(axis=-1, keepdims=True), regular, eligible)
        values = np.where(pool, iou[:, None, None, :], -1.0)
        best = values.max(axis=-1, keepdims=True)
        winners = pool & (values == best)
        # pycocotools keeps the last ground truth of highest IoU (it replaces on >=).
        chosen = width - 1 - np.argmax(winners[..., ::-1], axis=-1)  # [P, A, T]
        found = best[..., 0] >= 0.0
        taken[:active] |= (np.arange(width) == chosen[..., None]) & found[..., None]
        rows = bucket.detections[:active, step]
        countable = np.take_along_axis(bucket.countable[:active, None, :], chosen, axis=2)
        ignored = np.take_along_axis(bucket.ignored[:active], chosen, axis=2)
        true_positive[rows] = found & countable
        matched_ignored[rows] = found & ignored


def match_detections(
    tables: EvaluationTables,
    pair_ious: PairIouFunction,
    area_ranges: FloatArray,
    iou_thresholds: FloatArray,
    max_detections: int,
) -> MatchResult:
    """Match every (image, category) pair as pycocotools' ``evaluateImg`` does.

    Args:
        tables: ground truth and detections.
        pair_ious: IoU (or OKS) of aligned (detection row, ground-truth row) pairs.
        area_ranges: ``[A, 2]`` float64 inclusive area bounds.
        iou_thresholds: ``[T]`` float64.
        max_detections: detections kept per pair (the largest maxDets).
    """
    dt_rows, rank = sort_detections(tables, max_detections)
    layout = _layout_pairs(tables, dt_rows, pair_ious)
    # pycocotools starts the search at min(t, 1 - 1e-10) and accepts IoU >= it.
    thresholds = np.minimum(iou_thresholds, 1 - 1e-10)
    gt_ignored = tables.gt_ignore[:, None] | _outside(tables.gt_area, area_ranges)  # [G, A]
    shape = (dt_rows.size, area_ranges.shape[0], thresholds.size)
    true_positive = np.zeros(shape, dtype=bool)
    matched_ignored = np.zeros(shape, dtype=bool)
    with_gt = np.flatnonzero(layout.gt_count > 0)
    if with_gt.size and layout.ious.size:
        best = np.maximum.reduceat(layout.ious, layout.element_first[with_gt])
        candidates = with_gt[best >= thresholds.min()]
        pair_key = tables.dt_image[dt_rows] * tables.num_categories + tables.dt_category[dt_rows]
        widths = 1 << np.ceil(np.log2(layout.gt_count[candidates])).astype(np.int64)
        for width in np.unique(widths).tolist():
            bucket = _build_bucket(
                candidates[widths == width], layout, pair_key, tables, gt_ignored, width
            )
            _walk_bucket(bucket, thresholds, true_positive, matched_ignored)
    outside = _outside(tables.dt_area[dt_rows], area_ranges)[:, :, None]  # [N, A, 1]
    ignored = matched_ignored | (~true_positive & outside)
    return MatchResult(dt_rows, rank, true_positive, ignored, gt_ignored)
