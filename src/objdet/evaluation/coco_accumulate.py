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
    """Precision at the 101 recall points and final recall, per threshold/category/area/maxDets."""
    num_areas, num_thresholds = matches.true_positive.shape[1:]
    shape = (num_thresholds, RECALL_THRESHOLDS.size, tables.num_categories, num_areas,
             len(params.max_detections))
    precision = -np.ones(shape)
    recall = -np.ones((num_thresholds, tables.num_categories, num_areas, shape[4]))
    # Rank detections by category, descending score, image, rank in pair.
    rows = matches.dt_rows
    order = np.lexsort((matches.rank, tables.dt_image[rows], -tables.dt_score[rows],
                        tables.dt_category[rows]))
    categories = tables.dt_category[rows][order]
    bounds = np.searchsorted(categories, np.arange(tables.num_categories + 1))
    regular_gt = np.zeros((tables.num_categories, num_areas), dtype=np.int64)
    np.add.at(regular_gt, tables.gt_category, ~matches.gt_ignored)
    for category in range(tables.num_categories):
        picked = order[bounds[category]:bounds[category + 1]]
        for area in range(num_areas):
            num_regular = int(regular_gt[category, area])
            if num_regular == 0:
                continue
            for slot, max_dets in enumerate(params.max_detections):
                kept = picked[matches.rank[picked] < max_dets]
                curve = _precision_recall(
                    matches.true_positive[kept, area].T, matches.ignored[kept, area].T,
                    num_regular,
                )
                precision[:, :, category, area, slot], recall[:, category, area, slot] = curve
    return Accumulated(precision, recall)


def _precision_recall(
    true_positive: NDArray[np.bool_], ignored: NDArray[np.bool_], num_regular: int
) -> tuple[FloatArray, FloatArray]:
    """``[T, R]`` interpolated precision and ``[T]`` recall of ranked detections ``[T, N]``."""
    tp_sum = np.cumsum(true_positive & ~ignored, axis=1).astype(dtype=float)
    fp_sum = np.cumsum(~true_positive & ~ignored, axis=1).astype(dtype=float)
    num_thresholds, num_dets = tp_sum.shape
    recall_curve = tp_sum / num_regular
    precision_curve = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    # The envelope: precision at a rank is the best precision at any later rank.
    precision_curve = np.maximum.accumulate(precision_curve[:, ::-1], axis=1)[:, ::-1]
    sampled = np.zeros((num_thresholds, RECALL_THRESHOLDS.size))
    final_recall = np.zeros(num_thresholds)
    if num_dets == 0:
        return sampled, final_recall
    final_recall = recall_curve[:, -1].copy()
    for threshold in range(num_thresholds):
        at = np.searchsorted(recall_curve[threshold], RECALL_THRESHOLDS, side="left")
        reached = at < num_dets
        sampled[threshold, reached] = precision_curve[threshold, at[reached]]
    return sampled, final_recall


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
