"""The overlap measures COCO matches on, for aligned (detection, ground truth) pairs:
box IoU, mask IoU and keypoint OKS, each with pycocotools' exact arithmetic.

Each builder returns a ``PairIouFunction``: ``(detection rows, ground-truth rows) -> [E]``
float64 overlaps, evaluated for all pairs of all images in one vectorized call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError
from objdet.evaluation.coco_matching import PairIouFunction
from objdet.evaluation.mask_rle import RleMask

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Mask IoU evaluates this many interval end points per chunk (bounds memory).
_QUERY_CHUNK = 1 << 21


def box_iou_function(
    dt_boxes: FloatArray, gt_boxes: FloatArray, gt_crowd: BoolArray
) -> PairIouFunction:
    """IoU of ``[x, y, w, h]`` boxes as maskApi's ``bbIou``; crowd: over the detection area.

    Args:
        dt_boxes: ``[D, 4]`` float64 COCO ``[x, y, width, height]``.
        gt_boxes: ``[G, 4]`` float64, same layout.
        gt_crowd: ``[G]`` bool.
    """

    def ious(dt_rows: IntArray, gt_rows: IntArray) -> FloatArray:
        d, g = dt_boxes[dt_rows], gt_boxes[gt_rows]
        dt_area = d[:, 2] * d[:, 3]
        gt_area = g[:, 2] * g[:, 3]
        # Same operand order as the C code: min(x + w) - max(x), then w * h.
        width = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
        height = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
        overlap = (width > 0) & (height > 0)
        intersection = width * height
        union = np.where(gt_crowd[gt_rows], dt_area, dt_area + gt_area - intersection)
        result = np.zeros(dt_rows.size)
        np.divide(intersection, union, out=result, where=overlap)
        return result

    return ious


class _IntervalTable:
    """Masks' foreground intervals laid end to end, each mask in its own pixel block."""

    def __init__(self, masks: Sequence[RleMask]) -> None:
        self.sizes = np.array([(m.height, m.width) for m in masks], dtype=np.int64).reshape(-1, 2)
        pixels = self.sizes[:, 0] * self.sizes[:, 1]
        self.block_offset = np.cumsum(pixels) - pixels
        self.count = np.array([m.starts.size for m in masks], dtype=np.int64)
        self.first = np.cumsum(self.count) - self.count
        self.area = np.array([m.area for m in masks], dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        self.starts = np.concatenate([m.starts for m in masks] + [empty])
        self.ends = np.concatenate([m.ends for m in masks] + [empty])
        owner_offset = np.repeat(self.block_offset, self.count)
        self.global_starts = self.starts + owner_offset
        lengths = self.ends - self.starts
        self.lengths = lengths
        self.covered_before = np.cumsum(lengths) - lengths

    def covered(self, positions: IntArray) -> IntArray:
        """Foreground pixels before each global position (a piecewise-linear count)."""
        index = np.searchsorted(self.global_starts, positions, side="right") - 1
        safe = np.maximum(index, 0)
        inside = np.minimum(positions - self.global_starts[safe], self.lengths[safe])
        return np.where(index >= 0, self.covered_before[safe] + inside, 0)


def mask_iou_function(
    dt_masks: Sequence[RleMask], gt_masks: Sequence[RleMask], gt_crowd: BoolArray
) -> PairIouFunction:
    """Mask IoU as maskApi's ``rleIou``; crowd ground truth: intersection / detection area.

    Raises (when called):
        DataError: if a detection mask and a ground-truth mask of one image differ in size.
    """
    dt_table, gt_table = _IntervalTable(dt_masks), _IntervalTable(gt_masks)

    def ious(dt_rows: IntArray, gt_rows: IntArray) -> FloatArray:
        mismatch = np.flatnonzero((dt_table.sizes[dt_rows] != gt_table.sizes[gt_rows]).any(1))
        if mismatch.size:
            bad = int(mismatch[0])
            raise DataError(
                f"detection mask {int(dt_rows[bad])} is {dt_table.sizes[dt_rows[bad]].tolist()} "
                f"(h, w) but the ground-truth mask it is compared with is "
                f"{gt_table.sizes[gt_rows[bad]].tolist()}"
            )
        intersection = np.zeros(dt_rows.size, dtype=np.int64)
        for start, end in _chunks(dt_table.count[dt_rows]):
            intersection[start:end] = _intersections(
                dt_table, gt_table, dt_rows[start:end], gt_rows[start:end]
            )
        dt_area, gt_area = dt_table.area[dt_rows], gt_table.area[gt_rows]
        union = np.where(gt_crowd[gt_rows], dt_area, dt_area + gt_area - intersection)
        result = np.zeros(dt_rows.size)
        np.divide(intersection, union, out=result, where=intersection > 0)
        return result

    return ious


def _chunks(query_counts: IntArray) -> list[tuple[int, int]]:
    """Consecutive element ranges holding about ``_QUERY_CHUNK`` queries each."""
    if query_counts.size == 0:
        return []
    cumulative = np.cumsum(query_counts)
    marks = np.arange(_QUERY_CHUNK, int(cumulative[-1]) + _QUERY_CHUNK, _QUERY_CHUNK)
    edges = np.unique(np.concatenate([[0], np.searchsorted(cumulative, marks, side="right"),
                                      [query_counts.size]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _intersections(
    dt_table: _IntervalTable, gt_table: _IntervalTable, dt_rows: IntArray, gt_rows: IntArray
) -> IntArray:
    """Common foreground pixels of aligned mask pairs: sum, over the detection's intervals,
    of the ground truth's covered-pixel count at the interval's end minus at its start."""
    counts = dt_table.count[dt_rows]
    element = np.repeat(np.arange(dt_rows.size), counts)
    interval = np.repeat(dt_table.first[dt_rows], counts) + (
        np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    shift = gt_table.block_offset[gt_rows][element]
    covered = gt_table.covered(dt_table.ends[interval] + shift) - gt_table.covered(
        dt_table.starts[interval] + shift
    )
    return np.bincount(element, weights=covered, minlength=dt_rows.size).astype(np.int64)


def keypoint_oks_function(
    dt_keypoints: FloatArray,
    gt_keypoints: FloatArray,
    gt_area: FloatArray,
    gt_boxes: FloatArray,
    sigmas: FloatArray,
) -> PairIouFunction:
    """Object keypoint similarity as pycocotools' ``computeOks``.

    Args:
        dt_keypoints: ``[D, K, 2]`` float64 (x, y) pixels.
        gt_keypoints: ``[G, K, 3]`` float64 (x, y, visibility); visibility > 0 is labeled.
        gt_area: ``[G]`` float64 object areas (the OKS scale).
        gt_boxes: ``[G, 4]`` float64 ``[x, y, w, h]``; without labeled keypoints, distance is
            measured to this box grown by its size on each side.
        sigmas: ``[K]`` float64 per-keypoint OKS sigmas.
    """
    variances = (sigmas * 2) ** 2

    def ious(dt_rows: IntArray, gt_rows: IntArray) -> FloatArray:
        d, g = dt_keypoints[dt_rows], gt_keypoints[gt_rows]  # [E, K, 2], [E, K, 3]
        visible = g[:, :, 2] > 0
        num_visible = visible.sum(axis=1)
        box = gt_boxes[gt_rows][:, :, None]  # [E, 4, 1]
        x0, x1 = box[:, 0] - box[:, 2], box[:, 0] + box[:, 2] * 2
        y0, y1 = box[:, 1] - box[:, 3], box[:, 1] + box[:, 3] * 2
        labeled = num_visible[:, None] > 0
        dx = np.where(labeled, d[:, :, 0] - g[:, :, 0],
                      np.maximum(0, x0 - d[:, :, 0]) + np.maximum(0, d[:, :, 0] - x1))
        dy = np.where(labeled, d[:, :, 1] - g[:, :, 1],
                      np.maximum(0, y0 - d[:, :, 1]) + np.maximum(0, d[:, :, 1] - y1))
        with np.errstate(divide="ignore", invalid="ignore"):
            error = (dx**2 + dy**2) / variances / (gt_area[gt_rows][:, None] + np.spacing(1)) / 2
        return _mean_similarity(np.exp(-error), visible, num_visible)

    return ious


def _mean_similarity(similarity: FloatArray, visible: BoolArray, num_visible: IntArray) -> FloatArray:
    """Mean of each row over its labeled keypoints (all keypoints if none is labeled).

    Rows are summed as compact arrays of exactly the values pycocotools sums, so numpy's
    pairwise summation groups them the same way (padding with zeros would not).
    """
    result = np.zeros(similarity.shape[0])
    num_keypoints = similarity.shape[1]
    for count in np.unique(num_visible).tolist():
        rows = np.flatnonzero(num_visible == count)
        if count == 0:
            values = np.ascontiguousarray(similarity[rows])
            result[rows] = np.sum(values, axis=1) / num_keypoints
            continue
        # Visible columns first, in their original order.
        columns = np.argsort(~visible[rows], axis=1, kind="stable")[:, :count]
        values = np.ascontiguousarray(np.take_along_axis(similarity[rows], columns, axis=1))
        result[rows] = np.sum(values, axis=1) / count
    return result
