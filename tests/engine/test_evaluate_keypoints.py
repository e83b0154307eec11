"""Keypoints through evaluation: the eval loop hands the targets' keypoints to the evaluators
as groundtruth and a CenterNet keypoint model's ``keypoints`` / ``keypoints_scores`` outputs as
detections, so coco_keypoint_metrics scores them."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from objdet.engine.evaluate import evaluate_detector, ground_truth_from_target
from objdet.evaluation.coco import CocoKeypointEvaluator

KEYPOINTS = [{"id": 0, "name": "head"}, {"id": 1, "name": "feet"}]
GT_KEYPOINTS = torch.tensor([[[8.0, 5.0], [8.0, 11.0]]])  # [N, K, 2] (x, y)


class KeypointModel(nn.Module):
    """Detects one person per image with the given keypoints (as CenterNet outputs them)."""

    def __init__(self, keypoints: Tensor) -> None:
        super().__init__()
        self.keypoints = keypoints

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [{"boxes": torch.tensor([[4.0, 4.0, 12.0, 12.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1]), "keypoints": self.keypoints,
                 "keypoints_scores": torch.ones(1, 2)} for _ in images]


def batches() -> list[tuple[list[Tensor], list[dict[str, Tensor]]]]:
    target = {"boxes": torch.tensor([[4.0, 4.0, 12.0, 12.0]]), "labels": torch.tensor([1]),
              "keypoints": GT_KEYPOINTS, "keypoint_visibilities": torch.ones(1, 2, dtype=torch.bool)}
    return [([torch.zeros(3, 16, 16)], [target])]


def test_ground_truth_carries_the_keypoints() -> None:
    ground_truth = ground_truth_from_target(batches()[0][1][0])
    assert ground_truth.keypoints is not None and ground_truth.keypoints.shape == (1, 2, 2)
    assert ground_truth.keypoint_visibilities is not None


def test_keypoint_metrics_score_the_model_keypoints() -> None:
    def mean_ap(keypoints: Tensor) -> float:
        evaluator = CocoKeypointEvaluator(1, KEYPOINTS, "person", {"head": 0.05, "feet": 0.05})
        metrics = evaluate_detector(KeypointModel(keypoints), batches(), [evaluator])
        return metrics["Keypoints_Precision/mAP ByCategory/person"]

    assert math.isclose(mean_ap(GT_KEYPOINTS), 1.0)
    assert mean_ap(GT_KEYPOINTS + torch.tensor([6.0, 0.0])) == 0.0
