"""One COCO evaluation end to end (match, accumulate, summarize) and the OD API metric names.

Metric names follow the OD API's ``coco_tools.COCOEvalWrapper.ComputeMetrics``: the 12 box /
mask stats as ``Precision/mAP``, ``Recall/AR@100 (small)``, ...; per category
``PerformanceByCategory/mAP/<name>`` and, with ``all_metrics_per_category``,
``<stat name> ByCategory/<name>``. The caller adds the prefix (``DetectionBoxes_``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from objdet.evaluation.coco_accumulate import (
    IOU_THRESHOLDS,
    KEYPOINT_PARAMS,
    Accumulated,
    CocoParams,
    accumulate,
    summarize,
)
from objdet.evaluation.coco_matching import EvaluationTables, PairIouFunction, match_detections

DETECTION_STAT_NAMES = (
    "Precision/mAP",
    "Precision/mAP@.50IOU",
    "Precision/mAP@.75IOU",
    "Precision/mAP (small)",
    "Precision/mAP (medium)",
    "Precision/mAP (large)",
    "Recall/AR@1",
    "Recall/AR@10",
    "Recall/AR@100",
    "Recall/AR@100 (small)",
    "Recall/AR@100 (medium)",
    "Recall/AR@100 (large)",
)
# The OD API's names for pycocotools' 10 keypoint stats (all at maxDets=20 in pycocotools).
KEYPOINT_STAT_NAMES = (
    "Precision/mAP",
    "Precision/mAP@.50IOU",
    "Precision/mAP@.75IOU",
    "Precision/mAP (medium)",
    "Precision/mAP (large)",
    "Recall/AR@1",
    "Recall/AR@10",
    "Recall/AR@100",
    "Recall/AR@100 (medium)",
    "Recall/AR@100 (large)",
)


@dataclass
class CocoResult:
    """The outcome of one evaluation: pycocotools' ``stats`` and ``eval`` arrays."""

    params: CocoParams
    stats: list[float]
    accumulated: Accumulated

    def category_stats(self, category: int) -> list[float]:
        """The stats restricted to one category index (the OD API's ``category_stats``)."""
        return summarize(self.accumulated, self.params, category=category)


def run_coco(tables: EvaluationTables, pair_ious: PairIouFunction, params: CocoParams) -> CocoResult:
    """Match, accumulate and summarize, exactly as pycocotools' COCOeval."""
    matches = match_detections(
        tables, pair_ious, params.area_array, IOU_THRESHOLDS, max(params.max_detections)
    )
    accumulated = accumulate(tables, matches, params)
    return CocoResult(params, summarize(accumulated, params), accumulated)


def named_metrics(
    result: CocoResult,
    category_names: Mapping[int, str],
    include_metrics_per_category: bool = False,
    all_metrics_per_category: bool = False,
) -> dict[str, float]:
    """The OD API's summary (and per-category) metrics, unprefixed.

    Args:
        category_names: category index (position in sorted category ids) -> name.
    """
    names = KEYPOINT_STAT_NAMES if result.params is KEYPOINT_PARAMS else DETECTION_STAT_NAMES
    metrics = {name: float(value) for name, value in zip(names, result.stats)}
    if not include_metrics_per_category:
        return metrics
    for index, name in category_names.items():
        stats = result.category_stats(index)
        metrics[f"PerformanceByCategory/mAP/{name}"] = float(stats[0])
        if all_metrics_per_category:
            for stat_name, value in zip(names, stats):
                metrics[f"{stat_name} ByCategory/{name}"] = float(value)
    return metrics
