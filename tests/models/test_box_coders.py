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
    # decode inverts it on the same non-square anchor (ty scales with the anchor height)
    assert torch.allclose(coder.decode(torch.tensor([expected]), anchor), box, atol=1e-4)


def test_decode_matches_the_od_api_formula_on_a_non_square_anchor() -> None:
    coder = FasterRcnnBoxCoder(y_scale=10.0, x_scale=5.0, height_scale=2.0, width_scale=4.0)
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (x 5, y 10), w 10, h 20
    codes = torch.tensor([[10.0, 5.0, 2.0 * math.log(0.5), 4.0 * math.log(3.0)]])  # ty tx th tw
    # centre y = 10 + 1 * 20 = 30, x = 5 + 1 * 10 = 15; height 20 * 0.5 = 10, width 10 * 3 = 30
    assert torch.allclose(coder.decode(codes, anchor), torch.tensor([[0.0, 25.0, 30.0, 35.0]]))


def test_encode_decode_round_trip() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(50, 2, generator=generator) * 100
    boxes = torch.cat([corners, corners + 1 + torch.rand(50, 2, generator=generator) * 50], 1)
    anchors = torch.cat([corners + 3, corners + torch.tensor([20.0, 45.0])], 1)  # 17 x 42
    coder = FasterRcnnBoxCoder(y_scale=7.0, x_scale=3.0, height_scale=2.0, width_scale=4.0)
    decoded = coder.decode(coder.encode(boxes, anchors), anchors)
    assert torch.allclose(decoded, boxes, atol=1e-3)


def test_batched_shapes_broadcast() -> None:
    coder = FasterRcnnBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0]])
    codes = torch.zeros(3, 2, 4)
    assert torch.allclose(coder.decode(codes, anchors[None]), anchors.expand(3, 2, 4))
