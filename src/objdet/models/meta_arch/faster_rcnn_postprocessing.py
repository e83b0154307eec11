"""Faster R-CNN's two post-processing steps, as the OD API's ``batch_multiclass_non_max_suppression``
runs them for it.

- :func:`select_proposals` (first stage): NMS over the decoded RPN boxes ranked by objectness
  probability, at most ``max_proposals`` kept, clipped to the image window (zero-area ones
  dropped), zero-padded to ``max_proposals``; traceable by ``torch.export``.
- :class:`SecondStageNonMaxSuppression`: per-class NMS where each class may have its own box
  (``share_box_across_classes: false``), score threshold, per-class and total caps, clip to the
  image window after NMS.

Boxes are ``(x1, y1, x2, y2)`` canvas pixels; clip windows are ``(height, width)`` of each
resized image on the canvas.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

from objdet.models.postprocessing import convert_scores, per_class_nms


def select_proposals(
    boxes: Tensor, objectness: Tensor, windows: Tensor, *,
    score_threshold: float, iou_threshold: float, max_proposals: int,
) -> tuple[Tensor, Tensor]:
    """``boxes [B, A, 4]``, ``objectness [B, A]`` probabilities, ``windows [B, 2]`` (height,
    width) of each image on the canvas -> proposals ``[B, max_proposals, 4]`` (zero rows after
    the first ``num_proposals [B]``).

    Static output shapes, so that ``torch.export`` traces it: the survivors are padded by
    concatenating zero rows and cutting at ``max_proposals``."""
    limits = windows.to(boxes).flip(1).repeat(1, 2)  # [B, 4] (width, height, width, height)
    proposals, counts = [], []
    for index in range(boxes.shape[0]):
        kept = _proposal_nms(boxes[index], objectness[index], score_threshold, iou_threshold,
                             max_proposals)  # [<= max_proposals] anchor indices, best first
        clipped = torch.minimum(boxes[index, kept].clamp(min=0), limits[index])
        has_area = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        survivors = clipped[has_area]
        proposals.append(torch.cat([survivors, survivors.new_zeros(max_proposals, 4)])[:max_proposals])
        counts.append(has_area.sum())
    return torch.stack(proposals), torch.stack(counts)


def _proposal_nms(boxes: Tensor, scores: Tensor, score_threshold: float, iou_threshold: float,
                  max_proposals: int) -> Tensor:
    """Indices of the first ``max_proposals`` NMS survivors among ``boxes [A, 4]`` scoring
    above ``score_threshold``, by decreasing score.

    Eagerly this is the exact top-M search of ``per_class_nms`` (NMS over a growing number of
    best candidates: fast with thousands of anchors); its loop depends on the data, so under
    ``torch.export`` one NMS runs over all candidates, which keeps the same boxes."""
    if torch.compiler.is_exporting():
        candidates = torch.nonzero(scores > score_threshold).squeeze(1)
        return candidates[nms(boxes[candidates], scores[candidates], iou_threshold)][:max_proposals]
    anchors, _ = per_class_nms(boxes, scores[:, None], score_threshold, iou_threshold,
                                max_proposals, ties_by_index=True)  # as the one NMS above
    return anchors


class SecondStageNonMaxSuppression:
    """Per-class NMS over per-class (or shared) boxes; see the module docstring."""

    def __init__(self, *, score_threshold: float, iou_threshold: float,
                 max_detections_per_class: int, max_total_detections: int,
                 score_converter: str, logit_scale: float = 1.0) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.max_detections_per_class = max_detections_per_class
        self.max_total_detections = max_total_detections
        self.score_converter, self.logit_scale = score_converter, logit_scale
        # validated here, once: a bad name raises ValueError at build time
        convert_scores(torch.zeros(1, 2), score_converter, logit_scale)

    def __call__(self, boxes: Tensor, class_logits: Tensor, num_valid: Tensor,
                 clip_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """``boxes [B, P, C or 1, 4]``, ``class_logits [B, P, C + 1]`` (column 0 background),
        ``num_valid [B]`` rows to consider -> per image ``boxes [D, 4]``, ``scores [D]``,
        ``labels [D]`` (1..C), by decreasing score."""
        scores = convert_scores(class_logits, self.score_converter, self.logit_scale)[..., 1:]
        detections = []
        for index in range(boxes.shape[0]):
            count = int(num_valid[index])
            image_boxes = boxes[index, :count].expand(-1, scores.shape[-1], -1)  # [P, C, 4]
            detection = self._per_class(image_boxes, scores[index, :count])
            detections.append(self._clip_and_cap(detection, clip_sizes[index]))
        return detections

    def _per_class(self, boxes: Tensor, scores: Tensor) -> dict[str, Tensor]:
        kept_rows, kept_classes = [], []
        for class_index in range(scores.shape[1]):
            candidates = torch.nonzero(scores[:, class_index] > self.score_threshold,
                                       as_tuple=True)[0]
            if candidates.numel() == 0:
                continue
            # nms returns survivors by decreasing score: the first ones are the best
            keep = nms(boxes[candidates, class_index], scores[candidates, class_index],
                       self.iou_threshold)[: self.max_detections_per_class]
            kept_rows.append(candidates[keep])
            kept_classes.append(torch.full_like(keep, class_index))
        if not kept_rows:
            empty = torch.zeros(0, dtype=torch.int64, device=scores.device)
            return {"boxes": boxes.new_zeros(0, 4), "scores": scores.new_zeros(0),
                    "labels": empty}
        rows, classes = torch.cat(kept_rows), torch.cat(kept_classes)
        kept_scores = scores[rows, classes]
        order = torch.argsort(kept_scores, descending=True, stable=True)
        return {"boxes": boxes[rows[order], classes[order]], "scores": kept_scores[order],
                "labels": classes[order] + 1}

    def _clip_and_cap(self, detection: dict[str, Tensor], size: tuple[int, int]
                      ) -> dict[str, Tensor]:
        height, width = size
        boxes = detection["boxes"]
        limits = boxes.new_tensor([width, height, width, height])
        clipped = torch.minimum(boxes.clamp(min=0), limits)
        has_area = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        cap = self.max_total_detections
        return {"boxes": clipped[has_area][:cap], "scores": detection["scores"][has_area][:cap],
                "labels": detection["labels"][has_area][:cap]}
