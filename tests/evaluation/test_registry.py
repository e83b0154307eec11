"""The metrics_set registry: a contract test over every name, deprecations, unknown names."""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np
import pytest

from objdet.errors import ConfigError
from objdet.evaluation.base import DetectionEvaluator, GroundTruth, ImageDetections
from objdet.evaluation.registry import (
    DEFAULT_METRICS_SET,
    DEPRECATED_METRICS_SETS,
    METRICS_SETS,
    build_evaluators,
    build_evaluators_from_eval_config,
    settings_from_eval_config,
)

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


def one_image() -> tuple[GroundTruth, ImageDetections]:
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
    detections = ImageDetections(
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
        ImageDetections(
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
