import torch

from objdet.models.hard_example_miner import HardExampleMiner
from objdet.models.matchers import IGNORED, UNMATCHED


def _separate_boxes(count: int) -> torch.Tensor:
    starts = torch.arange(count, dtype=torch.float32)[:, None] * 20
    return torch.cat([starts, starts * 0, starts + 10, starts * 0 + 10], dim=1)


def test_negatives_are_capped_per_positive_in_loss_order() -> None:
    losses = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    matches = torch.tensor([UNMATCHED, 0, UNMATCHED, UNMATCHED, UNMATCHED, IGNORED])
    miner = HardExampleMiner(
        num_hard_examples=None,
        iou_threshold=0.99,
        loss_type="CLASSIFICATION",
        max_negatives_per_positive=2,
    )
    selected = miner.select(torch.zeros(6), losses, _separate_boxes(6), matches)
    # one positive -> at most two negatives, the hardest; the ignored anchor is dropped.
    assert selected.tolist() == [0, 1, 2]


def test_min_negatives_per_image_applies_without_positives() -> None:
    losses = torch.tensor([1.0, 3.0, 2.0])
    matches = torch.full((3,), UNMATCHED)
    miner = HardExampleMiner(
        num_hard_examples=None,
        iou_threshold=0.99,
        loss_type="CLASSIFICATION",
        max_negatives_per_positive=3,
        min_negatives_per_image=2,
    )
    assert miner.select(torch.zeros(3), losses, _separate_boxes(3), matches).tolist() == [1, 2]


def test_nms_removes_overlapping_hard_examples_and_caps_count() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]])
    losses = torch.tensor([4.0, 3.0, 2.0, 1.0])
    matches = torch.full((4,), UNMATCHED)
    miner = HardExampleMiner(num_hard_examples=2, iou_threshold=0.5, loss_type="CLASSIFICATION")
    assert miner.select(torch.zeros(4), losses, boxes, matches).tolist() == [0, 2]


def test_loss_type_both_ranks_by_weighted_sum_and_sums_selected_losses() -> None:
    location = torch.tensor([[1.0, 10.0, 4.0]])
    classification = torch.tensor([[3.0, 1.0, 2.0]])
    matches = torch.tensor([[UNMATCHED, 0, UNMATCHED]])
    miner = HardExampleMiner(
        num_hard_examples=2,
        iou_threshold=0.99,
        loss_type="BOTH",
        classification_weight=2.0,
        localization_weight=0.25,
    )
    # ranking losses 2 * cls + 0.25 * loc = [6.25, 4.5, 5.0]: anchors 0 and 2 are the hardest
    # (unweighted sums [4, 11, 6] would pick anchors 1 and 2).
    selected = miner.select(location[0], classification[0], _separate_boxes(3), matches[0])
    assert selected.tolist() == [0, 2]
    mined_location, mined_classification = miner(
        location, classification, _separate_boxes(3)[None], matches
    )
    # the raw (unweighted) losses of the selected anchors only
    assert mined_location.item() == 1.0 + 4.0 and mined_classification.item() == 3.0 + 2.0


def test_each_image_is_mined_separately() -> None:
    location = torch.zeros(2, 3)
    classification = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 1.0]])
    matches = torch.full((2, 3), UNMATCHED)
    miner = HardExampleMiner(num_hard_examples=1, iou_threshold=0.99, loss_type="CLASSIFICATION")
    boxes = _separate_boxes(3)[None].expand(2, 3, 4)
    _, mined_classification = miner(location, classification, boxes, matches)
    assert mined_classification.item() == 3.0 + 4.0  # the hardest anchor of each image
