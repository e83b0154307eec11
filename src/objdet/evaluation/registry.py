"""The metrics_set registry: the OD API's ``EvalConfig.metrics_set`` names -> evaluators.

    evaluators = build_evaluators(["pascal_voc_detection_metrics"], label_map.categories())
    evaluators = build_evaluators_from_eval_config(pipeline.eval_config, categories)
    headline_metric("coco_mask_metrics", categories)  # HeadlineMetric("DetectionMasks_Precision/mAP")

One flat dict, ``METRICS_SETS``; COCO evaluators are imported only when asked for. Deprecated
names still work and warn (``DeprecationWarning`` and a log line); an unknown name is a
``ConfigError`` listing every valid name. An empty metrics_set means ``coco_detection_metrics``
(the TF2 OD API's default). Repeated names build one evaluator.

Keypoint metrics come as in the OD API from ``eval_config.parameterized_metric {
coco_keypoint_metrics { class_label keypoint_label_to_sigmas } }``: one evaluator per entry,
after the metrics_set ones, OKS sigma 0.05 for every keypoint when the map is empty. Where
the OD API skips an unknown class_label silently or uses sigma 0 for a keypoint missing from
a non-empty map, objdet stops with a ``ConfigError`` naming the field. objdet also accepts
``metrics_set: "coco_keypoint_metrics"`` (the OD API's get_evaluators fails on it): one
evaluator per category with keypoints, with the sigmas of its parameterized_metric if any.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from objdet.errors import ConfigError
from objdet.evaluation.base import Category, DetectionEvaluator, HeadlineMetric

logger = logging.getLogger(__name__)

DEFAULT_METRICS_SET = "coco_detection_metrics"


@dataclass(frozen=True)
class KeypointMetricsSpec:
    """One ``parameterized_metric { coco_keypoint_metrics { ... } }`` of an EvalConfig.

    Attributes:
        class_label: the category name (display name, as in ``LabelMap.categories()``)
            whose keypoints are evaluated.
        oks_sigmas: ``((keypoint label, OKS sigma), ...)`` for every keypoint of the class;
            empty: ``coco.DEFAULT_OKS_SIGMA`` for each, as in the OD API.
    """

    class_label: str
    oks_sigmas: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class EvaluatorSettings:
    """The evaluator-related fields of an EvalConfig, as plain values."""

    metrics_sets: tuple[str, ...] = (DEFAULT_METRICS_SET,)
    include_metrics_per_category: bool = False
    all_metrics_per_category: bool = False
    recall_lower_bound: float = 0.0
    recall_upper_bound: float = 1.0
    keypoint_metrics: tuple[KeypointMetricsSpec, ...] = ()


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
    """``metrics_set: coco_keypoint_metrics``: one keypoint evaluator per category whose
    label-map item lists keypoints (``'keypoints': [{'id': index, 'name': str}, ...]``)."""
    if not any(c.get("keypoints") for c in categories):
        raise ConfigError(
            "eval_config.metrics_set: coco_keypoint_metrics needs label map items with "
            "keypoints; none of the categories has any"
        )
    return _keypoint_evaluators(categories, settings, every_category=True)


def _keypoint_evaluators(
    categories: Sequence[Category], settings: EvaluatorSettings, every_category: bool
) -> list[DetectionEvaluator]:
    """Keypoint evaluators for the parameterized_metric entries (in their order), or for
    every category with keypoints (in category order), with each entry's sigmas."""
    from objdet.evaluation.coco import CocoKeypointEvaluator

    field = "eval_config.parameterized_metric.coco_keypoint_metrics"
    by_name = {str(c["name"]): c for c in categories}
    specs: dict[str, KeypointMetricsSpec] = {}
    for spec in settings.keypoint_metrics:
        category = by_name.get(spec.class_label)
        if category is None or not category.get("keypoints"):
            with_keypoints = [name for name, c in by_name.items() if c.get("keypoints")]
            raise ConfigError(
                f"{field}.class_label: {spec.class_label!r} is not a label map category with "
                f"keypoints (those are: {with_keypoints or 'none'})"
            )
        if spec.class_label in specs:
            raise ConfigError(f"{field}: class_label {spec.class_label!r} appears twice")
        specs[spec.class_label] = spec
    chosen = (
        [c for c in categories if c.get("keypoints")]
        if every_category
        else [by_name[label] for label in specs]
    )
    evaluators: list[DetectionEvaluator] = []
    for category in chosen:
        name, keypoints = str(category["name"]), list(category["keypoints"])
        sigmas = dict(specs[name].oks_sigmas) if name in specs else {}
        labels = [str(k["name"]) for k in keypoints]
        missing = [label for label in labels if label not in sigmas]
        unknown = sorted(set(sigmas) - set(labels))
        if sigmas and (missing or unknown):
            raise ConfigError(
                f"{field}.keypoint_label_to_sigmas of {name!r} must give every keypoint of "
                f"the class ({labels}) or none (0.05 each); missing {missing}, unknown {unknown}"
            )
        evaluators.append(CocoKeypointEvaluator(
            int(category["id"]), keypoints, name, sigmas,
            label_map_ids=[int(c["id"]) for c in categories]))
    return evaluators


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
    keypoint_metrics: Sequence[KeypointMetricsSpec] = (),
) -> list[DetectionEvaluator]:
    """The evaluators of the metrics set names (empty -> ``DEFAULT_METRICS_SET``).

    One evaluator per name, except coco_keypoint_metrics: one per category with keypoints.
    ``keypoint_metrics`` (the parameterized_metric entries) give those their sigmas, or
    without coco_keypoint_metrics among the names add one keypoint evaluator each, last.

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
        keypoint_metrics=tuple(keypoint_metrics),
    )
    evaluators = [e for name in names for e in METRICS_SETS[name](categories, settings)]
    if keypoint_metrics and "coco_keypoint_metrics" not in names:
        evaluators += _keypoint_evaluators(categories, settings, every_category=False)
    return evaluators


def headline_metric(
    metrics_set: str, categories: Sequence[Category], settings: EvaluatorSettings | None = None
) -> HeadlineMetric:
    """The metric that ranks models for ``metrics_set``, as its (first) evaluator declares it.

    Its key can depend on ``categories`` (coco_keypoint_metrics: the first category with
    keypoints) and ``settings`` (precision_at_recall: the recall bounds), hence the arguments.
    An empty name means ``DEFAULT_METRICS_SET``.
    """
    name = resolve_metrics_set(metrics_set or DEFAULT_METRICS_SET)
    evaluators = METRICS_SETS[name](categories, settings or EvaluatorSettings(metrics_sets=(name,)))
    return evaluators[0].headline_metric


# EvalConfig fields that change evaluator behaviour in the OD API but are not supported here.
_UNSUPPORTED_EVAL_CONFIG_FIELDS = (
    "skip_predictions_for_unlabeled_class",
    "super_categories",
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
        keypoint_metrics=_keypoint_metrics_specs(eval_config),
    )


def _keypoint_metrics_specs(eval_config: Any) -> tuple[KeypointMetricsSpec, ...]:
    """The ``parameterized_metric`` entries (each must hold coco_keypoint_metrics with a
    class_label, as the OD API asserts)."""
    specs = []
    for index, entry in enumerate(eval_config.parameterized_metric):
        field = f"eval_config.parameterized_metric[{index}]"
        if entry.WhichOneof("parameterized_metric") != "coco_keypoint_metrics":
            raise ConfigError(f"{field}: expected coco_keypoint_metrics {{ class_label: ... }}")
        metric = entry.coco_keypoint_metrics
        if not metric.class_label:
            raise ConfigError(f"{field}.coco_keypoint_metrics: class_label is required")
        sigmas = tuple(sorted((str(k), float(v)) for k, v in metric.keypoint_label_to_sigmas.items()))
        specs.append(KeypointMetricsSpec(metric.class_label, sigmas))
    return tuple(specs)


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
        keypoint_metrics=settings.keypoint_metrics,
    )
