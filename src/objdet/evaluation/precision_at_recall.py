"""``precision_at_recall_detection_metrics``: PASCAL AP over a recall operating range.

Per class, only the precision/recall points with ``recall_lower_bound <= recall <=
recall_upper_bound`` enter the all-point AP (the OD API's PrecisionAtRecallDetectionEvaluator).
With non-default bounds the summary metric is named
``PrecisionAtRecallBoxes_Precision/mAP@0.5IOU@[0.2,0.8]Recall``.
"""

from __future__ import annotations

from collections.abc import Sequence

from objdet.errors import ConfigError
from objdet.evaluation.base import Category
from objdet.evaluation.pascal_voc import MatchingEvaluator


class PrecisionAtRecallDetectionEvaluator(MatchingEvaluator):
    """Box AP@0.5 restricted to a recall range (metric prefix 'PrecisionAtRecallBoxes')."""

    def __init__(
        self,
        categories: Sequence[Category],
        matching_iou_threshold: float = 0.5,
        recall_lower_bound: float = 0.0,
        recall_upper_bound: float = 1.0,
    ) -> None:
        if not 0.0 <= recall_lower_bound <= recall_upper_bound <= 1.0:
            raise ConfigError(
                "eval_config: recall bounds must satisfy 0 <= recall_lower_bound <= "
                f"recall_upper_bound <= 1, got recall_lower_bound={recall_lower_bound}, "
                f"recall_upper_bound={recall_upper_bound}"
            )
        super().__init__(
            categories,
            metric_prefix="PrecisionAtRecallBoxes",
            matching_iou_threshold=matching_iou_threshold,
            recall_lower_bound=recall_lower_bound,
            recall_upper_bound=recall_upper_bound,
        )
