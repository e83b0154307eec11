"""Instance masks through evaluation: the eval loop hands the targets' masks to the evaluators
as groundtruth and the model's ``masks`` output (probabilities over the input image, as Mask
R-CNN gives them) as detections, so coco_mask_metrics scores them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from objdet.engine.evaluate import evaluate_detector, ground_truth_from_target
from objdet.evaluation.registry import build_evaluators

CATEGORIES = [{"id": 1, "name": "cat"}]


class MaskModel(nn.Module):
    """Detects one box per image with a given mask probability map."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.mask = mask  # [H, W] probabilities

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [{"boxes": torch.tensor([[4.0, 4.0, 12.0, 12.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1]), "masks": self.mask[None, None]} for _ in images]


def batches(gt_mask: Tensor) -> list[tuple[list[Tensor], list[dict[str, Tensor]]]]:
    target = {"boxes": torch.tensor([[4.0, 4.0, 12.0, 12.0]]), "labels": torch.tensor([1]),
              "masks": gt_mask[None].to(torch.uint8)}
    return [([torch.zeros(3, 16, 16)], [target])]


def gt_mask() -> Tensor:
    mask = torch.zeros(16, 16)
    mask[4:12, 4:8] = 1.0  # the left half of the box
    return mask


def test_ground_truth_carries_the_masks() -> None:
    target = batches(gt_mask())[0][1][0]
    ground_truth = ground_truth_from_target(target)
    assert ground_truth.masks is not None and ground_truth.masks.shape == (1, 16, 16)
    assert int(ground_truth.masks.sum()) == 32


def test_mask_metrics_score_the_model_masks() -> None:
    evaluators = build_evaluators(["coco_mask_metrics"], CATEGORIES)
    right = 0.2 + 0.7 * gt_mask()  # probabilities: 0.9 inside, 0.2 outside
    metrics = evaluate_detector(MaskModel(right), batches(gt_mask()), evaluators)
    assert abs(metrics["DetectionMasks_Precision/mAP"] - 1.0) < 1e-6
    wrong = 0.9 - 0.7 * gt_mask()  # the box's other half
    metrics = evaluate_detector(MaskModel(wrong), batches(gt_mask()), evaluators)
    assert metrics["DetectionMasks_Precision/mAP"] == 0.0
