"""The metrics_set registry: a contract test over every name, deprecations, unknown names."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.hooks import EvalHook
from objdet.engine.training import primary_metric
from objdet.errors import ConfigError
from objdet.evaluation.base import DetectionEvaluator, GroundTruth, HeadlineMetric
from objdet.evaluation.registry import (
    DEFAULT_METRICS_SET,
    DEPRECATED_METRICS_SETS,
    METRICS_SETS,
    EvaluatorSettings,
    build_evaluators,
    build_evaluators_from_eval_config,
    headline_metric,
    settings_from_eval_config,
)
from objdet.structures.detections import Detections

CATEGORIES = [
    {"id": 1, "name": "cat", "keypoints": [{"id": 0, "name": "nose"}]},
    {"id": 2, "name": "dog"},
]
SUMMARY_NAMES = {
    "pascal_voc_detection_metrics": "PascalBoxes_Precision/mAP@0.5IOU",
    "weighted_pascal_voc_detection_metrics": "WeightedPascalBoxes_Precision/mAP@0.5IOU",
    "pascal_voc_instance_segmentation_metrics": "PascalMasks_Precision/mAP@0.5IOU",
    "weighted_pascal_voc_instance_segmentation_metrics": "WeightedPascalMasks_Precision/mAP@0.5IOU",
    "precision_at_recall_detection_metrics": "PrecisionAtRecallBoxes_Precision/mAP@0.5IOU",
    "oid_V2_detection_metrics": "OpenImagesV2_Precision/mAP@0.5IOU",
    "oid_challenge_detection_metrics": "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU",
    "oid_challenge_segmentation_metrics": "OpenImagesInstanceSegmentationChallenge_Precision/mAP@0.5IOU",
}


# The metric each set ranks models by: the OD API's name of its summary AP.
HEADLINE_METRICS = {
    **SUMMARY_NAMES,
    "coco_detection_metrics": "DetectionBoxes_Precision/mAP",
    "coco_mask_metrics": "DetectionMasks_Precision/mAP",
    "coco_keypoint_metrics": "Keypoints_Precision/mAP ByCategory/cat",
}


def one_image() -> tuple[GroundTruth, Detections]:
    masks = np.zeros((1, 8, 8), np.uint8)
    masks[0, 2:6, 2:6] = 1
    ground_truth = GroundTruth(
        boxes=[[2, 2, 6, 6]],
        labels=[1],
        masks=masks,
        difficult=[False],
        group_of=[False],
        is_crowd=[False],
        areas=[16.0],
        image_labels=[1],
        keypoints=np.full((1, 1, 2), 3.0),
        keypoint_visibilities=np.ones((1, 1), bool),
    )
    detections = Detections(
        boxes=[[2, 2, 6, 6]],
        scores=[0.9],
        labels=[1],
        masks=masks,
        keypoints=np.full((1, 1, 2), 3.0),
    )
    return ground_truth, detections


@pytest.mark.parametrize("name", sorted(METRICS_SETS))
def test_every_metrics_set_follows_the_evaluator_contract(name: str) -> None:
    if name.startswith("coco_") and importlib.util.find_spec("objdet.evaluation.coco") is None:
        pytest.skip("objdet.evaluation.coco is not in this tree yet")
    (evaluator,) = build_evaluators([name], CATEGORIES)
    assert isinstance(evaluator, DetectionEvaluator)
    ground_truth, detections = one_image()
    evaluator.add_ground_truth("image-1", ground_truth)
    evaluator.add_detections("image-1", detections)
    metrics = evaluator.evaluate()
    assert metrics and all(isinstance(value, float) for value in metrics.values())
    if name in SUMMARY_NAMES:
        assert metrics[SUMMARY_NAMES[name]] == pytest.approx(1.0)
    evaluator.clear()
    evaluator.add_ground_truth("image-1", ground_truth)  # clear() forgets the image
    evaluator.add_detections("image-1", detections)


@pytest.mark.parametrize("old, new", sorted(DEPRECATED_METRICS_SETS.items()))
def test_deprecated_names_warn_and_build_the_successor(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        (evaluator,) = build_evaluators([old], CATEGORIES)
    (expected,) = build_evaluators([new], CATEGORIES)
    assert type(evaluator) is type(expected)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown metrics set 'voc_metrics'") as error:
        build_evaluators(["voc_metrics"], CATEGORIES)
    for name in METRICS_SETS:
        assert name in str(error.value)


def test_empty_metrics_set_uses_default_and_repeats_build_once() -> None:
    assert DEFAULT_METRICS_SET == "coco_detection_metrics"
    evaluators = build_evaluators(
        ["pascal_voc_detection_metrics", "pascal_voc_detection_metrics"], CATEGORIES
    )
    assert len(evaluators) == 1


def test_recall_bounds_reach_precision_at_recall() -> None:
    (evaluator,) = build_evaluators(
        ["precision_at_recall_detection_metrics"],
        CATEGORIES,
        recall_lower_bound=0.2,
        recall_upper_bound=0.8,
    )
    ground_truth = GroundTruth(boxes=[[0, 0, 1, 1], [2, 2, 3, 3]], labels=[1, 1])
    evaluator.add_ground_truth(0, ground_truth)
    evaluator.add_detections(
        0,
        Detections(
            boxes=[[0, 0, 1, 1], [5, 5, 6, 6], [2, 2, 3, 3]],
            scores=[0.9, 0.8, 0.7],
            labels=[1, 1, 1],
        ),
    )
    metrics = evaluator.evaluate()
    # recall .5 @ 1, .5 @ .5 (inside [0.2, 0.8]); recall 1.0 is cut off -> 0.5 * 1
    name = "PrecisionAtRecallBoxes_Precision/mAP@0.5IOU@[0.2,0.8]Recall"
    assert metrics[name] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="recall bounds"):
        build_evaluators(
            ["precision_at_recall_detection_metrics"],
            CATEGORIES,
            recall_lower_bound=0.9,
            recall_upper_bound=0.1,
        )


def test_eval_config_message_is_read() -> None:
    from objdet.protos import eval_pb2

    config = eval_pb2.EvalConfig(
        metrics_set=["oid_challenge_object_detection_metrics"], recall_lower_bound=0.1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        (evaluator,) = build_evaluators_from_eval_config(config, CATEGORIES)
    assert type(evaluator).__name__ == "OpenImagesDetectionChallengeEvaluator"
    settings = settings_from_eval_config(config)
    assert math.isclose(settings.recall_lower_bound, 0.1, rel_tol=1e-6)
    assert settings.recall_upper_bound == 1.0
    config.skip_predictions_for_unlabeled_class = True
    with pytest.raises(ConfigError, match="skip_predictions_for_unlabeled_class"):
        settings_from_eval_config(config)


def test_keypoint_metrics_need_categories_with_keypoints() -> None:
    pytest.importorskip("objdet.evaluation.coco")
    with pytest.raises(ConfigError, match="coco_keypoint_metrics needs label map items"):
        build_evaluators(["coco_keypoint_metrics"], [{"id": 1, "name": "cat"}])


PEOPLE = [
    {"id": 1, "name": "person", "keypoints": [{"id": 0, "name": "nose"}, {"id": 1, "name": "eye"}]},
    {"id": 2, "name": "dog"},
]


def keypoint_ap(evaluator: DetectionEvaluator) -> float:
    """Keypoint AP of one person whose two keypoints are found 1 pixel off in x and y."""
    points = np.array([[[20.0, 10.0], [40.0, 30.0]]])
    evaluator.add_ground_truth("a", GroundTruth(
        boxes=[[0, 0, 50, 50]], labels=[1], keypoints=points,
        keypoint_visibilities=np.ones((1, 2), bool)))
    evaluator.add_detections("a", Detections(
        boxes=[[0, 0, 50, 50]], scores=[0.9], labels=[1], keypoints=points + 1.0))
    return evaluator.evaluate()["Keypoints_Precision/mAP ByCategory/person"]


def keypoint_config(text: str) -> object:
    from google.protobuf import text_format

    from objdet.protos import eval_pb2

    return text_format.Parse(text, eval_pb2.EvalConfig())


def test_keypoint_metrics_without_sigmas_use_the_odapi_default() -> None:
    """Without sigmas the OD API uses 0.05 per keypoint (its code; its comment says 0): the
    near-perfect keypoints score AP 1.0 (the OD API gives 0.9999999999999998 here); with
    sigmas of 0 (objdet before) every AP was 0."""
    pytest.importorskip("objdet.evaluation.coco")
    from objdet.evaluation.coco import DEFAULT_OKS_SIGMA, CocoKeypointEvaluator

    assert DEFAULT_OKS_SIGMA == 0.05
    (from_metrics_set,) = build_evaluators(["coco_keypoint_metrics"], PEOPLE)
    assert keypoint_ap(from_metrics_set) == pytest.approx(1.0)
    config = keypoint_config('parameterized_metric { coco_keypoint_metrics { class_label: "person" } }')
    boxes, from_parameterized = build_evaluators_from_eval_config(config, PEOPLE)
    assert type(boxes).__name__ == "CocoDetectionEvaluator"  # the default metrics set, first
    assert keypoint_ap(from_parameterized) == pytest.approx(1.0)
    explicit = CocoKeypointEvaluator(1, PEOPLE[0]["keypoints"], "person", {"nose": 0.05, "eye": 0.05})
    assert keypoint_ap(explicit) == keypoint_ap(CocoKeypointEvaluator(1, PEOPLE[0]["keypoints"], "person"))


def test_parameterized_keypoint_sigmas_are_used() -> None:
    pytest.importorskip("objdet.evaluation.coco")
    sigmas = " ".join(f'keypoint_label_to_sigmas {{ key: "{k}" value: 0.0001 }}' for k in ("nose", "eye"))
    config = keypoint_config(
        'metrics_set: "pascal_voc_detection_metrics" '
        f'parameterized_metric {{ coco_keypoint_metrics {{ class_label: "person" {sigmas} }} }}')
    pascal, keypoints = build_evaluators_from_eval_config(config, PEOPLE)
    assert type(pascal).__name__ == "PascalDetectionEvaluator"
    assert keypoint_ap(keypoints) == 0.0  # 1 pixel off is far with tiny sigmas
    # With metrics_set coco_keypoint_metrics too: still one evaluator, with these sigmas.
    config.metrics_set[:] = ["coco_keypoint_metrics"]
    (keypoints,) = build_evaluators_from_eval_config(config, PEOPLE)
    assert keypoint_ap(keypoints) == 0.0


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ('class_label: "cat"', (r"coco_keypoint_metrics.class_label: 'cat' is not a label map "
                                r"category with keypoints \(those are: \['person'\]\)")),
        ('class_label: "dog"', r"class_label: 'dog' is not a label map category with keypoints"),
        ('class_label: "person" keypoint_label_to_sigmas { key: "nose" value: 0.1 }',
         r"keypoint_label_to_sigmas of 'person' must give every keypoint .*missing \['eye'\]"),
        (" ".join(['class_label: "person"'] + [
            f'keypoint_label_to_sigmas {{ key: "{k}" value: 0.1 }}' for k in ("nose", "eye", "ear")]),
         r"unknown \['ear'\]"),
        ("", r"parameterized_metric\[0\].coco_keypoint_metrics: class_label is required"),
    ],
)
def test_parameterized_keypoint_metric_errors_name_the_field(metric: str, message: str) -> None:
    """Where the OD API skips silently (unknown class), fails with a KeyError (class without
    keypoints) or uses sigma 0 (a keypoint missing from the map): a ConfigError."""
    pytest.importorskip("objdet.evaluation.coco")
    config = keypoint_config(f"parameterized_metric {{ coco_keypoint_metrics {{ {metric} }} }}")
    with pytest.raises(ConfigError, match=message):
        build_evaluators_from_eval_config(config, PEOPLE)


def test_every_metrics_set_has_a_headline_metric() -> None:
    assert sorted(HEADLINE_METRICS) == sorted(METRICS_SETS)


@pytest.mark.parametrize("name", sorted(METRICS_SETS))
def test_headline_metric_is_reported_and_finite(name: str) -> None:
    """The declared headline key is among the metrics of a real evaluation, a finite number."""
    (evaluator,) = build_evaluators([name], CATEGORIES)
    assert evaluator.headline_metric == HeadlineMetric(HEADLINE_METRICS[name], higher_is_better=True)
    assert headline_metric(name, CATEGORIES) == evaluator.headline_metric
    ground_truth, detections = one_image()
    evaluator.add_ground_truth("image-1", ground_truth)
    evaluator.add_detections("image-1", detections)
    value = evaluator.evaluate()[evaluator.headline_metric.key]
    assert isinstance(value, float) and math.isfinite(value)


def test_headline_metric_follows_the_settings() -> None:
    settings = EvaluatorSettings(recall_lower_bound=0.2, recall_upper_bound=0.8)
    assert headline_metric("precision_at_recall_detection_metrics", CATEGORIES, settings).key == (
        "PrecisionAtRecallBoxes_Precision/mAP@0.5IOU@[0.2,0.8]Recall")
    assert headline_metric("", CATEGORIES).key == "DetectionBoxes_Precision/mAP"  # the default


def no_detections() -> Detections:
    return Detections(boxes=np.zeros((0, 4)), scores=[], labels=[],
                      masks=np.zeros((0, 8, 8), np.uint8), keypoints=np.zeros((0, 1, 2)))


@pytest.mark.parametrize("name", sorted(METRICS_SETS))
def test_best_checkpoint_is_recorded(name: str, tmp_path: Path) -> None:
    """Training's EvalHook ranks checkpoints by primary_metric: for every metrics set the
    best checkpoint is recorded, and the better evaluation (step 2: the object found; steps
    1 and 3: missed) wins."""
    evaluators = build_evaluators([name], CATEGORIES)
    manager = CheckpointManager(tmp_path)
    ground_truth, found = one_image()

    def evaluate(trainer: SimpleNamespace) -> dict[str, float]:
        (evaluator,) = build_evaluators([name], CATEGORIES)
        evaluator.add_ground_truth("image-1", ground_truth)
        evaluator.add_detections("image-1", found if trainer.step == 2 else no_detections())
        return evaluator.evaluate()

    hook = EvalHook(evaluate, every_n=1, manager=manager, best_metric=primary_metric(evaluators))
    for step in (1, 2, 3):
        manager.save(step, {"weights": step})
        hook.run(SimpleNamespace(step=step))  # EvalHook reads only the step of its trainer
    values = [metrics[HEADLINE_METRICS[name]] for _, metrics in hook.history]
    index = manager.read_index()
    assert (index.best_metric, index.best_value) == (HEADLINE_METRICS[name], max(values))
    assert index.best == f"ckpt-{1 + values.index(max(values))}.pt"
    assert values[1] > values[0] and index.best == "ckpt-2.pt"
