import pytest
import torch

from objdet.models.postprocessing import BatchNonMaxSuppression, convert_scores


def _logits(scores: list[list[float]]) -> torch.Tensor:
    """Scores per anchor for classes 1..C -> IDENTITY logits with a background column."""
    tensor = torch.tensor(scores)
    return torch.cat([torch.zeros(tensor.shape[0], 1), tensor], dim=1)[None]


BOXES = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [100, 100, 110, 110]])


def test_per_class_nms_cap_and_threshold() -> None:
    scores = [[0.9, 0.1], [0.8, 0.7], [0.3, 0.05], [0.2, 0.6]]
    nms = BatchNonMaxSuppression(
        score_threshold=0.15, iou_threshold=0.5, max_detections_per_class=2, max_total_detections=10
    )
    result = nms(BOXES[None], _logits(scores))[0]
    # class 1: anchor 1 is suppressed by anchor 0; anchors 2, 3 survive but only 2 allowed.
    # class 2: anchors 1, 3 (anchor 0 is below threshold, anchor 2 too).
    assert result["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.3])
    assert result["labels"].tolist() == [1, 2, 2, 1]
    assert torch.equal(result["boxes"][0], BOXES[0])


def test_total_cap_keeps_the_best() -> None:
    scores = [[0.9, 0.1], [0.8, 0.7], [0.3, 0.05], [0.2, 0.6]]
    nms = BatchNonMaxSuppression(
        score_threshold=0.0, iou_threshold=0.5, max_detections_per_class=10, max_total_detections=3
    )
    assert nms(BOXES[None], _logits(scores))[0]["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_class_agnostic_nms_suppresses_across_classes() -> None:
    scores = [[0.9, 0.1], [0.1, 0.8], [0.3, 0.4], [0.01, 0.02]]
    nms = BatchNonMaxSuppression(
        score_threshold=0.05,
        iou_threshold=0.5,
        use_class_agnostic_nms=True,
        max_total_detections=10,
    )
    result = nms(BOXES[None], _logits(scores))[0]
    # anchor 1 (class 2) overlaps anchor 0 and is suppressed despite its other class.
    assert result["scores"].tolist() == pytest.approx([0.9, 0.4])
    assert result["labels"].tolist() == [1, 2]
    two_classes = BatchNonMaxSuppression(
        score_threshold=0.05,
        iou_threshold=0.5,
        use_class_agnostic_nms=True,
        max_classes_per_detection=2,
    )
    result = two_classes(BOXES[None], _logits(scores))[0]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.4, 0.3, 0.1])
    assert result["labels"].tolist() == [1, 2, 1, 2]


def test_no_detections_give_empty_tensors() -> None:
    nms = BatchNonMaxSuppression(score_threshold=0.99)
    result = nms(BOXES[None], _logits([[0.1, 0.1]] * 4))[0]
    assert result["boxes"].shape == (0, 4) and result["labels"].dtype == torch.int64


def test_score_converters_apply_logit_scale() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    assert torch.allclose(convert_scores(logits, "SIGMOID", 2.0), torch.sigmoid(logits / 2))
    assert torch.allclose(convert_scores(logits, "SOFTMAX").sum(-1), torch.ones(1))
    assert torch.equal(convert_scores(logits, "IDENTITY"), logits)


def test_many_classes_equal_plain_per_class_nms() -> None:
    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(300, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + 5 + torch.rand(300, 2, generator=generator) * 60], 1)
    scores = torch.rand(300, 7, generator=generator)
    nms = BatchNonMaxSuppression(
        score_threshold=0.3,
        iou_threshold=0.5,
        max_detections_per_class=5,
        max_total_detections=1000,
    )
    result = nms(boxes[None], _logits(scores.tolist()))[0]
    from torchvision.ops import nms as plain_nms

    expected = []
    for column in range(7):
        candidates = torch.nonzero(scores[:, column] > 0.3)[:, 0]
        keep = candidates[plain_nms(boxes[candidates], scores[candidates, column], 0.5)][:5]
        expected += [(scores[index, column].item(), column + 1) for index in keep]
    expected.sort(key=lambda item: -item[0])
    assert result["scores"].tolist() == [item[0] for item in expected]
    assert result["labels"].tolist() == [item[1] for item in expected]


def test_a_score_equal_to_the_threshold_is_dropped() -> None:
    # TF's non_max_suppression keeps scores strictly above score_threshold.
    scores = [[0.5, 0.25], [0.75, 0.5], [0.5, 0.5], [0.25, 0.75]]
    for agnostic in (False, True):
        nms = BatchNonMaxSuppression(
            score_threshold=0.5, iou_threshold=0.99, use_class_agnostic_nms=agnostic
        )
        result = nms(BOXES[None], _logits(scores))[0]
        assert result["scores"].tolist() == [0.75, 0.75], agnostic
        assert result["labels"].tolist() == [1, 2], agnostic


def test_class_agnostic_extra_classes_must_pass_the_threshold_too() -> None:
    scores = [[0.9, 0.1], [0.0, 0.0], [0.3, 0.4], [0.0, 0.0]]
    nms = BatchNonMaxSuppression(
        score_threshold=0.2,
        iou_threshold=0.5,
        use_class_agnostic_nms=True,
        max_classes_per_detection=2,
    )
    result = nms(BOXES[None], _logits(scores))[0]
    # anchor 0 reports class 1 only: its class 2 score 0.1 is under the threshold.
    assert result["scores"].tolist() == pytest.approx([0.9, 0.4, 0.3])
    assert result["labels"].tolist() == [1, 2, 1]
