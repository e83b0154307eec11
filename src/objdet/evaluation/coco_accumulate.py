"""COCO precision/recall accumulation and the summary statistics (pycocotools ``accumulate``
and ``summarize``), with the same floating-point operations so results are bit-identical.

Per category, area range and maxDets, the detections of all images are ranked by descending
score; ties keep (image in sorted-id order, rank within the image), which is what
pycocotools' stable mergesort over the per-image lists gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from objdet.evaluation.coco_matching import EvaluationTables, MatchResult

FloatArray = NDArray[np.float64]

# pycocotools builds them with linspace; np.arange would drift in the last bits.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


@dataclass(frozen=True)
class CocoParams:
    """One COCO protocol: area ranges (labels and bounds) and maxDets."""

    area_labels: tuple[str, ...]
    area_ranges: tuple[tuple[float, float], ...]
    max_detections: tuple[int, ...]

    @property
    def area_array(self) -> FloatArray:
        return np.asarray(self.area_ranges, dtype=np.float64)


BOX_PARAMS = CocoParams(
    area_labels=("all", "small", "medium", "large"),
    area_ranges=((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2)),
    max_detections=(1, 10, 100),
)
KEYPOINT_PARAMS = CocoParams(
    area_labels=("all", "medium", "large"),
    area_ranges=((0**2, 1e5**2), (32**2, 96**2), (96**2, 1e5**2)),
    max_detections=(20,),
)


@dataclass
class Accumulated:
    """pycocotools' ``eval`` arrays: precision ``[T, R, K, A, M]``, recall ``[T, K, A, M]``;
    -1 where a category has no (non-ignored) ground truth in that area range."""

    precision: FloatArray
    recall: FloatArray


def accumulate(tables: EvaluationTables, matches: MatchResult, params: CocoParams) -> Accumulated:
    """Precision at the 101 recall points and final recall, per threshold/category/area/maxDets.

    Only true positives move recall, and precision's envelope peaks at true positives, so the
    curves are evaluated at the true positives alone (the j-th one of a category sits at
    tp = j, fp = detections before it that are neither ignored nor true positives): the
    same integers and the same divisions as pycocotools' full cumulative sums.
    """
    num_areas, num_thresholds = matches.true_positive.shape[1:]
    shape = (num_thresholds, RECALL_THRESHOLDS.size, tables.num_categories, num_areas,
             len(params.max_detections))
    accumulated = Accumulated(-np.ones(shape), -np.ones((shape[0],) + shape[2:]))
    rows = matches.dt_rows
    # Rank detections by category, descending score, image, rank in pair.
    order = np.lexsort((matches.rank, tables.dt_image[rows], -tables.dt_score[rows],
                        tables.dt_category[rows]))
    categories, ranks = tables.dt_category[rows][order], matches.rank[order]
    # [A, T, N] copies: one (area, threshold) row of detections is contiguous.
    ignored = np.ascontiguousarray(matches.ignored.transpose(1, 2, 0)[:, :, order])
    counted_tp = np.ascontiguousarray(matches.true_positive.transpose(1, 2, 0)[:, :, order])
    counted_tp &= ~ignored
    regular_gt = np.zeros((tables.num_categories, num_areas), dtype=np.int64)
    np.add.at(regular_gt, tables.gt_category, ~matches.gt_ignored)
    for area in range(num_areas):
        # (threshold, detection) of every true positive / ignored detection, row-major.
        tp_threshold, tp_column = np.nonzero(counted_tp[area])
        ig_threshold, ig_column = np.nonzero(ignored[area])
        for slot, max_dets in enumerate(params.max_detections):
            kept = ranks < max_dets
            position = np.cumsum(kept) - 1  # column among the kept detections
            tp_kept, ig_kept = kept[tp_column], kept[ig_column]
            events = _CategoryEvents(
                categories[kept], tables.num_categories, num_thresholds,
                tp_threshold[tp_kept], position[tp_column[tp_kept]],
                ig_threshold[ig_kept], position[ig_column[ig_kept]],
            )
            events.fill(accumulated, regular_gt[:, area], area, slot)
    return accumulated


class _CategoryEvents:
    """The true positives of one (area range, maxDets), grouped by (threshold, category)."""

    def __init__(self, categories: NDArray[np.int64], num_categories: int, num_thresholds: int,
                 tp_threshold: NDArray[np.int64], tp_column: NDArray[np.int64],
                 ig_threshold: NDArray[np.int64], ig_column: NDArray[np.int64]) -> None:
        """``categories``: ``[N']`` category of each kept detection, in ranked order;
        columns index those kept detections."""
        num_kept = categories.size
        self.num_categories = num_categories
        self.num_thresholds = num_thresholds
        bounds = np.searchsorted(categories, np.arange(self.num_categories + 1))
        category = categories[tp_column]
        # Events come sorted by threshold, then column, so groups are contiguous.
        self.group = tp_threshold * self.num_categories + category
        num_groups = num_thresholds * self.num_categories
        self.count = np.bincount(self.group, minlength=num_groups)
        self.first = np.cumsum(self.count) - self.count
        ordinal = np.arange(self.group.size) - self.first[self.group] + 1  # tp = j
        first_column = bounds[category]
        ignored_keys = ig_threshold * num_kept + ig_column  # sorted
        ignored_before = np.searchsorted(
            ignored_keys, tp_threshold * num_kept + tp_column, side="right"
        ) - np.searchsorted(ignored_keys, tp_threshold * num_kept + first_column, side="left")
        false_positives = (tp_column - first_column + 1) - ordinal - ignored_before
        tp, fp = ordinal.astype(float), false_positives.astype(float)
        self.precision = _group_suffix_max(tp / (fp + tp + np.spacing(1)), self.group)

    def fill(self, accumulated: Accumulated, regular_gt: NDArray[np.int64], area: int,
             slot: int) -> None:
        """Write this (area, maxDets) column of precision and recall."""
        measured = np.flatnonzero(regular_gt > 0)  # the rest stays -1
        if measured.size == 0:
            return
        num_gt = regular_gt[measured]  # [K']
        first_needed = _first_reaching(num_gt)  # [K', R] the tp count reaching each recall
        count = self.count.reshape(self.num_thresholds, self.num_categories)[:, measured]
        first = self.first.reshape(self.num_thresholds, self.num_categories)[:, measured]
        reached = first_needed[None] <= count[:, :, None]  # [T, K', R]
        index = np.where(reached, first[:, :, None] + first_needed[None] - 1, 0)
        values = np.where(reached, self.precision[index] if self.precision.size else 0.0, 0.0)
        accumulated.precision[:, :, measured, area, slot] = values.transpose(0, 2, 1)
        accumulated.recall[:, measured, area, slot] = count.astype(float) / num_gt


def _first_reaching(num_gt: NDArray[np.int64]) -> NDArray[np.int64]:
    """``[K, R]`` smallest j >= 1 with ``float(j) / num_gt >= recall threshold`` (exactly)."""
    num_gt_column = num_gt[:, None]
    first = np.maximum(np.ceil(RECALL_THRESHOLDS[None] * num_gt_column).astype(np.int64), 1)
    for _ in range(2):  # correct the float rounding of the ceil, either way
        first = np.where(first / num_gt_column < RECALL_THRESHOLDS, first + 1, first)
        lower = first - 1
        first = np.where((lower >= 1) & (lower / num_gt_column >= RECALL_THRESHOLDS), lower, first)
    return first


def _group_suffix_max(values: FloatArray, group: NDArray[np.int64]) -> FloatArray:
    """Max of ``values`` from each entry to the end of its (contiguous, sorted) group.

    Exact: the running max runs on integer keys (group, rank of the value), not on floats.
    """
    if values.size == 0:
        return values
    distinct, codes = np.unique(values, return_inverse=True)
    # Walking backwards, later groups come first; give them the smaller high part.
    keys = (int(group.max()) - group) * distinct.size + codes
    running = np.maximum.accumulate(keys[::-1])[::-1]
    return distinct[running % distinct.size]


def _mean_valid(values: FloatArray) -> float:
    """pycocotools' mean over entries > -1, or -1 if there are none."""
    valid = values[values > -1]
    return -1.0 if len(valid) == 0 else float(np.mean(valid))


def summary_value(
    accumulated: Accumulated, params: CocoParams, average_precision: bool,
    iou_threshold: float | None = None, area: str = "all", max_dets: int = 100,
    category: int | None = None,
) -> float:
    """One summary number, as pycocotools' ``_summarize`` (optionally for one category)."""
    area_index = [i for i, label in enumerate(params.area_labels) if label == area]
    max_index = [i for i, value in enumerate(params.max_detections) if value == max_dets]
    values = accumulated.precision if average_precision else accumulated.recall
    if iou_threshold is not None:
        values = values[np.where(iou_threshold == IOU_THRESHOLDS)[0]]
    categories = slice(None) if category is None else [category]
    if average_precision:
        values = values[:, :, categories, area_index, max_index]
    else:
        values = values[:, categories, area_index, max_index]
    return _mean_valid(values)


# (average precision?, IoU threshold, area, maxDets) of pycocotools' 12 box/mask stats.
DETECTION_STATS = (
    (True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
    (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
    (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
    (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100),
)
# ... and its 10 keypoint stats.
KEYPOINT_STATS = (
    (True, None, "all", 20), (True, 0.5, "all", 20), (True, 0.75, "all", 20),
    (True, None, "medium", 20), (True, None, "large", 20),
    (False, None, "all", 20), (False, 0.5, "all", 20), (False, 0.75, "all", 20),
    (False, None, "medium", 20), (False, None, "large", 20),
)


def summarize(
    accumulated: Accumulated, params: CocoParams, category: int | None = None
) -> list[float]:
    """pycocotools' ``stats`` (12 for boxes/masks, 10 for keypoints), or one category's."""
    table = KEYPOINT_STATS if params is KEYPOINT_PARAMS else DETECTION_STATS
    return [
        summary_value(accumulated, params, ap, threshold, area, max_dets, category)
        for ap, threshold, area, max_dets in table
    ]
