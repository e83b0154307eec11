"""Post-processing: score conversion and the OD API's ``batch_non_max_suppression``.

Input: decoded boxes ``[B, A, 4]`` (x1, y1, x2, y2, canvas pixels) and class logits
``[B, A, K]`` whose column 0 is background. Output per image: ``boxes [D, 4]``,
``scores [D]``, ``labels [D]`` int64 label-map ids (column index), sorted by score.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

SCORE_CONVERTERS = ("IDENTITY", "SIGMOID", "SOFTMAX")


def convert_scores(class_logits: Tensor, converter: str, logit_scale: float = 1.0) -> Tensor:
    """``[..., K]`` logits -> scores, after dividing by ``logit_scale`` as the OD API does."""
    scaled = class_logits / logit_scale
    if converter == "IDENTITY":
        return scaled
    if converter == "SIGMOID":
        return scaled.sigmoid()
    if converter == "SOFTMAX":
        return scaled.softmax(dim=-1)
    raise ValueError(f"score_converter must be one of {SCORE_CONVERTERS}, got {converter!r}")


def _cap_per_class(order: Tensor, labels: Tensor, max_per_class: int) -> Tensor:
    """Keep the first ``max_per_class`` entries of ``order`` (score-sorted indices) per label."""
    sorted_labels = labels[order]
    by_label = torch.sort(sorted_labels, stable=True).indices  # score order kept within a label
    grouped = sorted_labels[by_label]
    _, counts = torch.unique_consecutive(grouped, return_counts=True)
    group_starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank_in_label = torch.arange(grouped.numel(), device=order.device) - group_starts
    keep = torch.zeros_like(sorted_labels, dtype=torch.bool)
    keep[by_label] = rank_in_label < max_per_class
    return order[keep]


class BatchNonMaxSuppression:
    """Per-class (or class-agnostic) NMS with score threshold and per-class/total caps."""

    def __init__(
        self, *, score_threshold: float = 0.0, iou_threshold: float = 0.6,
        max_detections_per_class: int = 100, max_total_detections: int = 100,
        use_class_agnostic_nms: bool = False, max_classes_per_detection: int = 1,
        score_converter: str = "IDENTITY", logit_scale: float = 1.0,
    ) -> None:
        if score_converter not in SCORE_CONVERTERS:
            raise ValueError(f"score_converter must be one of {SCORE_CONVERTERS}, got {score_converter!r}")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.max_detections_per_class = max_detections_per_class
        self.max_total_detections = max_total_detections
        self.use_class_agnostic_nms = use_class_agnostic_nms
        self.max_classes_per_detection = max_classes_per_detection
        self.score_converter, self.logit_scale = score_converter, logit_scale

    def __call__(self, boxes: Tensor, class_logits: Tensor) -> list[dict[str, Tensor]]:
        """``boxes [B, A, 4]``, ``class_logits [B, A, K]`` -> per image dict of
        ``boxes [D, 4]``, ``scores [D]``, ``labels [D]`` (1..K-1)."""
        scores = convert_scores(class_logits, self.score_converter, self.logit_scale)[..., 1:]
        suppress = self._class_agnostic if self.use_class_agnostic_nms else self._per_class
        return [suppress(image_boxes, image_scores) for image_boxes, image_scores in zip(boxes, scores)]

    def _per_class(self, boxes: Tensor, scores: Tensor) -> dict[str, Tensor]:
        """``boxes [A, 4]``, ``scores [A, C]`` -> detections."""
        anchor_index, class_index = torch.nonzero(scores > self.score_threshold, as_tuple=True)
        candidate_scores = scores[anchor_index, class_index]
        keep = batched_nms(boxes[anchor_index], candidate_scores, class_index, self.iou_threshold)
        keep = _cap_per_class(keep, class_index, self.max_detections_per_class)
        keep = keep[torch.argsort(candidate_scores[keep], descending=True, stable=True)]
        keep = keep[: self.max_total_detections]
        return {"boxes": boxes[anchor_index[keep]], "scores": candidate_scores[keep],
                "labels": class_index[keep] + 1}

    def _class_agnostic(self, boxes: Tensor, scores: Tensor) -> dict[str, Tensor]:
        """NMS once over boxes ranked by their best class; each kept box then reports its
        ``max_classes_per_detection`` best classes above the threshold."""
        best_scores = scores.max(dim=1).values  # [A]
        candidates = torch.nonzero(best_scores > self.score_threshold, as_tuple=True)[0]
        kept = candidates[nms(boxes[candidates], best_scores[candidates], self.iou_threshold)]
        kept = kept[: self.max_total_detections]
        top_k = min(self.max_classes_per_detection, scores.shape[1])
        top_scores, top_classes = scores[kept].topk(top_k, dim=1)  # [D, k]
        anchor_index = kept[:, None].expand(-1, top_k).reshape(-1)
        top_scores, top_classes = top_scores.reshape(-1), top_classes.reshape(-1)
        valid = top_scores > self.score_threshold
        anchor_index, top_scores, top_classes = anchor_index[valid], top_scores[valid], top_classes[valid]
        order = torch.argsort(top_scores, descending=True, stable=True)[: self.max_total_detections]
        return {"boxes": boxes[anchor_index[order]], "scores": top_scores[order],
                "labels": top_classes[order] + 1}
