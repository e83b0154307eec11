import math

import torch

from objdet.models.box_coders import FasterRcnnBoxCoder


def test_encode_matches_the_od_api_formula() -> None:
    coder = FasterRcnnBoxCoder()
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), w 10, h 20
    box = torch.tensor([[2.0, 4.0, 12.0, 44.0]])  # centre (7, 24), w 10, h 40
    codes = coder.encode(box, anchor)
    expected = [10 * 14 / 20, 10 * 2 / 10, 5 * math.log(2.0), 0.0]  # ty, tx, th, tw
    assert torch.allclose(codes, torch.tensor([expected]), atol=1e-5)


def test_encode_decode_round_trip() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(50, 2, generator=generator) * 100
    boxes = torch.cat([corners, corners + 1 + torch.rand(50, 2, generator=generator) * 50], 1)
    anchors = torch.cat([corners + 3, corners + 20], 1)
    coder = FasterRcnnBoxCoder(y_scale=7.0, x_scale=3.0, height_scale=2.0, width_scale=4.0)
    decoded = coder.decode(coder.encode(boxes, anchors), anchors)
    assert torch.allclose(decoded, boxes, atol=1e-3)


def test_batched_shapes_broadcast() -> None:
    coder = FasterRcnnBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0]])
    codes = torch.zeros(3, 2, 4)
    assert torch.allclose(coder.decode(codes, anchors[None]), anchors.expand(3, 2, 4))
