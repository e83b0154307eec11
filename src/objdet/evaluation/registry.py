"""The metrics_set registry: the OD API's ``EvalConfig.metrics_set`` names -> evaluators.

    evaluators = build_evaluators(["pascal_voc_detection_metrics"], label_map.categories())
    evaluators = build_evaluators_from_eval_config(pipeline.eval_config, categories)

One flat dict, ``METRICS_SETS``; COCO evaluators are imported only when asked for. Deprecated
names still work and warn (``DeprecationWarning`` and a log line); an unknown name is a
``ConfigError`` listing every valid name. An empty metrics_set means ``coco_detection_metrics``
(the TF2 OD API's default). Repeated names build one evaluator.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from objdet.errors import ConfigError
from objdet.evaluation.base import Category, DetectionEvaluator

logger = logging.getLogger(__name__)

DEFAULT_METRICS_SET = "coco_detection_metrics"


@dataclass(frozen=True)
class EvaluatorSettings:
    """The evaluator-related fields of an EvalConfig, as plain values."""

    metrics_sets: tuple[str, ...] = (DEFAULT_METRICS_SET,)
    include_metrics_per_category: bool = False
    all_metrics_per_category: bool = False
    recall_lower_bound: float = 0.0
    recall_upper_bound: float = 1.0


EvaluatorFactory = Callable[[Sequence[Category], EvaluatorSettings], list[DetectionEvaluator]]


def _pascal(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.pascal_voc import PascalDetectionEvaluator

    return [PascalDetectionEvaluator(categories)]


def _weighted_pascal(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.pascal_voc import WeightedPascalDetectionEvaluator

    return [WeightedPascalDetectionEvaluator(categories)]


def _pascal_masks(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.pascal_voc import PascalInstanceSegmentationEvaluator

    return [PascalInstanceSegmentationEvaluator(categories)]


def _weighted_pascal_masks(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.pascal_voc import WeightedPascalInstanceSegmentationEvaluator

    return [WeightedPascalInstanceSegmentationEvaluator(categories)]


def _precision_at_recall(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.precision_at_recall import PrecisionAtRecallDetectionEvaluator

    return [
        PrecisionAtRecallDetectionEvaluator(
            categories,
            recall_lower_bound=settings.recall_lower_bound,
            recall_upper_bound=settings.recall_upper_bound,
        )
    ]


def _oid_v2(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.open_images import OpenImagesDetectionEvaluator

    return [OpenImagesDetectionEvaluator(categories)]


def _oid_challenge(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.open_images import OpenImagesDetectionChallengeEvaluator

    return [OpenImagesDetectionChallengeEvaluator(categories)]


def _oid_challenge_masks(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    from objdet.evaluation.open_images import OpenImagesInstanceSegmentationChallengeEvaluator

    return [OpenImagesInstanceSegmentationChallengeEvaluator(categories)]


def _coco(class_name: str) -> EvaluatorFactory:
    """A factory importing ``objdet.evaluation.coco`` lazily (it pulls in more code)."""

    def build(
        categories: Sequence[Category], settings: EvaluatorSettings
    ) -> list[DetectionEvaluator]:
        from objdet.evaluation import coco

        evaluator_class = getattr(coco, class_name)
        return [
            evaluator_class(
                categories,
                include_metrics_per_category=settings.include_metrics_per_category,
                all_metrics_per_category=settings.all_metrics_per_category,
            )
        ]

    return build


def _coco_keypoints(
    categories: Sequence[Category], settings: EvaluatorSettings
) -> list[DetectionEvaluator]:
    """One keypoint evaluator per category whose label-map item lists keypoints.

    Categories carry them as ``'keypoints': [{'id': index, 'name': str}, ...]`` (the OD
    API's categories from a label map with keypoints).
    """
    from objdet.evaluation.coco import CocoKeypointEvaluator

    with_keypoints = [c for c in categories if c.get("keypoints")]
    if not with_keypoints:
        raise ConfigError(
            "eval_config.metrics_set: coco_keypoint_metrics needs label map items with "
            "keypoints; none of the categories has any"
        )
    return [
        CocoKeypointEvaluator(int(c["id"]), list(c["keypoints"]), str(c["name"]))
        for c in with_keypoints
    ]


METRICS_SETS: dict[str, EvaluatorFactory] = {
    "pascal_voc_detection_metrics": _pascal,
    "weighted_pascal_voc_detection_metrics": _weighted_pascal,
    "pascal_voc_instance_segmentation_metrics": _pascal_masks,
    "weighted_pascal_voc_instance_segmentation_metrics": _weighted_pascal_masks,
    "precision_at_recall_detection_metrics": _precision_at_recall,
    "oid_V2_detection_metrics": _oid_v2,
    "oid_challenge_detection_metrics": _oid_challenge,
    "oid_challenge_segmentation_metrics": _oid_challenge_masks,
    "coco_detection_metrics": _coco("CocoDetectionEvaluator"),
    "coco_mask_metrics": _coco("CocoMaskEvaluator"),
    "coco_keypoint_metrics": _coco_keypoints,
}

# Old name -> the name that replaced it (the OD API keeps both, marked DEPRECATED).
DEPRECATED_METRICS_SETS: dict[str, str] = {
    "open_images_V2_detection_metrics": "oid_V2_detection_metrics",
    "oid_challenge_object_detection_metrics": "oid_challenge_detection_metrics",
}


def resolve_metrics_set(name: str) -> str:
    """The registered name for ``name``: deprecated names warn, unknown names fail."""
    if name in METRICS_SETS:
        return name
    if name in DEPRECATED_METRICS_SETS:
        replacement = DEPRECATED_METRICS_SETS[name]
        message = f"metrics_set {name!r} is deprecated; use {replacement!r} instead"
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        logger.warning(message)
        return replacement
    raise ConfigError(
        f"eval_config.metrics_set: unknown metrics set {name!r}; valid: "
        f"{', '.join(sorted(METRICS_SETS))} (deprecated: {', '.join(sorted(DEPRECATED_METRICS_SETS))})"
    )


def build_evaluators(
    metrics_sets: Sequence[str],
    categories: Sequence[Category],
    *,
    include_metrics_per_category: bool = False,
    all_metrics_per_category: bool = False,
    recall_lower_bound: float = 0.0,
    recall_upper_bound: float = 1.0,
) -> list[DetectionEvaluator]:
    """The evaluators of the metrics set names (empty -> ``DEFAULT_METRICS_SET``).

    One evaluator per name, except coco_keypoint_metrics: one per category with keypoints.

    ``categories`` is the OD API's list ``[{'id': 1, 'name': 'cat'}, ...]``. The per-category
    flags apply to the COCO evaluators (the PASCAL/Open Images ones always report per class);
    the recall bounds to ``precision_at_recall_detection_metrics``.
    """
    if isinstance(metrics_sets, str):
        metrics_sets = [metrics_sets]
    names: list[str] = []
    for name in metrics_sets or [DEFAULT_METRICS_SET]:
        resolved = resolve_metrics_set(name)
        if resolved not in names:
            names.append(resolved)
    settings = EvaluatorSettings(
        metrics_sets=tuple(names),
        include_metrics_per_category=include_metrics_per_category,
        all_metrics_per_category=all_metrics_per_category,
        recall_lower_bound=recall_lower_bound,
        recall_upper_bound=recall_upper_bound,
    )
    return [evaluator for name in names for evaluator in METRICS_SETS[name](categories, settings)]


# EvalConfig fields that change evaluator behaviour in the OD API but are not supported here.
_UNSUPPORTED_EVAL_CONFIG_FIELDS = (
    "skip_predictions_for_unlabeled_class",
    "super_categories",
    "parameterized_metric",
    "keypoint_edge",
)


def settings_from_eval_config(eval_config: Any) -> EvaluatorSettings:
    """Read the evaluator fields of an ``objdet.protos.eval_pb2.EvalConfig`` message.

    Fields that would change the metrics but are not supported raise ``ConfigError``.
    """
    set_fields = {descriptor.name for descriptor, _ in eval_config.ListFields()}
    unsupported = [name for name in _UNSUPPORTED_EVAL_CONFIG_FIELDS if name in set_fields]
    if unsupported:
        raise ConfigError(
            f"eval_config: {', '.join(unsupported)} is set but not supported by objdet's "
            "evaluators; remove it"
        )
    return EvaluatorSettings(
        metrics_sets=tuple(eval_config.metrics_set),
        include_metrics_per_category=bool(eval_config.include_metrics_per_category),
        all_metrics_per_category=bool(eval_config.all_metrics_per_category),
        recall_lower_bound=float(eval_config.recall_lower_bound),
        recall_upper_bound=float(eval_config.recall_upper_bound),
    )


def build_evaluators_from_eval_config(
    eval_config: Any, categories: Sequence[Category]
) -> list[DetectionEvaluator]:
    """``build_evaluators`` with the arguments an EvalConfig message holds."""
    settings = settings_from_eval_config(eval_config)
    return build_evaluators(
        settings.metrics_sets,
        categories,
        include_metrics_per_category=settings.include_metrics_per_category,
        all_metrics_per_category=settings.all_metrics_per_category,
        recall_lower_bound=settings.recall_lower_bound,
        recall_upper_bound=settings.recall_upper_bound,
    )
