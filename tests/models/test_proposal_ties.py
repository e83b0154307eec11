"""First-stage proposals on exactly tied objectness (random weights give many: float32
probabilities of ~0.5 over 10^5 anchors) rank by anchor index, as TF's NMS and the single
NMS model.pt2 runs (``torch.compiler.is_exporting``) rank them."""

from __future__ import annotations

import torch

from objdet.models.meta_arch.faster_rcnn_postprocessing import select_proposals


def test_tied_proposals_keep_the_lowest_anchors_first() -> None:
    count = 1000
    left = torch.arange(count, dtype=torch.float32) * 10
    boxes = torch.stack([left, torch.zeros(count), left + 5, torch.full((count,), 5.0)], dim=1)
    objectness = torch.full((1, count), 0.5)  # [B, A]
    proposals, counts = select_proposals(boxes[None], objectness, torch.tensor([[10, 10000]]),
                                         score_threshold=0.0, iou_threshold=0.7, max_proposals=5)
    assert int(counts[0]) == 5
    assert torch.equal(proposals[0], boxes[:5])  # [5, 4]: anchors 0..4, in order
