from __future__ import annotations

import torch

from objdet.structures.boxes import (
    normalized_yxyx_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_normalized_yxyx,
    xyxy_to_xywh,
)
from objdet.structures.sample import Sample


def test_normalized_round_trip() -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 640.0, 480.0]])
    normalized = xyxy_to_normalized_yxyx(boxes, height=480, width=640)
    assert torch.allclose(normalized[0], torch.tensor([20 / 480, 10 / 640, 220 / 480, 110 / 640]))
    assert torch.allclose(normalized_yxyx_to_xyxy(normalized, 480, 640), boxes)


def test_xywh_round_trip() -> None:
    boxes = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert xywh_to_xyxy(boxes).tolist() == [[1.0, 2.0, 4.0, 6.0]]
    assert torch.equal(xyxy_to_xywh(xywh_to_xyxy(boxes)), boxes)


def test_empty_boxes_keep_their_shape() -> None:
    assert normalized_yxyx_to_xyxy(torch.zeros(0, 4), 10, 10).shape == (0, 4)


def test_sample_checks_shapes() -> None:
    sample = Sample(height=4, width=4, boxes=torch.zeros(2, 4), labels=torch.ones(2, dtype=torch.int64))
    assert sample.num_objects == 2
    try:
        Sample(height=4, width=4, boxes=torch.zeros(2, 4), labels=torch.ones(3, dtype=torch.int64))
    except ValueError as error:
        assert "labels must be [N]" in str(error)
    else:
        raise AssertionError("mismatched labels accepted")
