"""Target assignment against hand-computed targets (the OD API's TargetAssigner rules)."""

import math

import torch

from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.matchers import IGNORED, UNMATCHED, ArgMaxMatcher
from objdet.models.target_assigner import TargetAssigner

ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [20.0, 0.0, 30.0, 10.0],
        [0.0, 20.0, 10.0, 30.0],
        [40.0, 40.0, 50.0, 50.0],
    ]
)
UNMATCHED_LABEL = torch.tensor([1.0, 0.0, 0.0])  # background column


def _assigner() -> TargetAssigner:
    return TargetAssigner(
        matcher=ArgMaxMatcher(matched_threshold=0.5, unmatched_threshold=0.3),
        box_coder=FasterRcnnBoxCoder(),
        unmatched_class_label=UNMATCHED_LABEL,
        negative_class_weight=0.7,
    )


def test_matched_negative_and_ignored_anchors_get_the_od_api_targets() -> None:
    gt_boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with anchor 0
            [20.0, 0.0, 30.0, 12.0],  # IoU 100/120 with anchor 1
            [0.0, 20.0, 10.0, 24.0],  # IoU 0.4 with anchor 2: between thresholds -> ignored
        ]
    )
    gt_classes = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    gt_weights = torch.tensor([1.0, 0.5, 1.0])
    targets = _assigner().assign(ANCHORS, [gt_boxes], [gt_classes], [gt_weights])
    assert targets.matches.tolist() == [[0, 1, IGNORED, UNMATCHED]]
    assert targets.class_targets.tolist() == [
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    ]
    # matched: the groundtruth weight; negative: negative_class_weight; ignored: 0.
    assert torch.allclose(targets.class_weights, torch.tensor([[1.0, 0.5, 0.0, 0.7]]))
    assert torch.allclose(targets.box_weights, torch.tensor([[1.0, 0.5, 0.0, 0.0]]))
    # anchor 1 (centre y 5, height 10) -> box (centre y 6, height 12):
    # ty = 10 * (6 - 5) / 10, th = 5 * log(12 / 10); x unchanged. Others: zeros.
    expected_codes = torch.zeros(1, 4, 4)
    expected_codes[0, 1] = torch.tensor([1.0, 0.0, 5 * math.log(1.2), 0.0])
    assert torch.allclose(targets.box_targets, expected_codes, atol=1e-5)


def test_an_image_without_groundtruth_is_all_negatives() -> None:
    targets = _assigner().assign(
        ANCHORS, [torch.zeros(0, 4)], [torch.zeros(0, 3)], [torch.zeros(0)]
    )
    assert targets.matches.tolist() == [[UNMATCHED] * 4]
    assert torch.equal(targets.class_targets[0], UNMATCHED_LABEL.expand(4, 3))
    assert torch.allclose(targets.class_weights, torch.full((1, 4), 0.7))
    assert targets.box_weights.abs().sum() == 0 and targets.box_targets.abs().sum() == 0


def test_batch_assignment_is_per_image() -> None:
    boxes = [torch.tensor([[40.0, 40.0, 50.0, 50.0]]), torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    classes = [torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 1.0, 0.0]])]
    targets = _assigner().assign(ANCHORS, boxes, classes, [torch.ones(1), torch.ones(1)])
    assert targets.matches.tolist() == [
        [UNMATCHED, UNMATCHED, UNMATCHED, 0],
        [0, UNMATCHED, UNMATCHED, UNMATCHED],
    ]
    assert targets.class_targets[0, 3].tolist() == [0.0, 0.0, 1.0]
    assert targets.class_targets[1, 0].tolist() == [0.0, 1.0, 0.0]
