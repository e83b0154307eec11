"""Post-processing: score conversion and the OD API's ``batch_non_max_suppression``.

Input: decoded boxes ``[B, A, 4]`` (x1, y1, x2, y2, canvas pixels) and class logits
``[B, A, K]`` whose column 0 is background. Output per image: ``boxes [D, 4]``,
``scores [D]``, ``labels [D]`` int64 label-map ids (column index), sorted by score.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

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


def per_class_nms(
    boxes: Tensor, scores: Tensor, score_threshold: float, iou_threshold: float, max_per_class: int,
    *, ties_by_index: bool = False,
) -> tuple[Tensor, Tensor]:
    """Exact per-class NMS keeping ``max_per_class`` boxes per class -> (anchor, class) indices.

    ``ties_by_index``: equal scores rank by anchor index, as TF's NMS and one torchvision
    ``nms`` over all anchors rank them (a stable sort: for few classes; ``topk``, the default,
    leaves their order unspecified, so another tied anchor may be kept first).

    Greedy NMS decides a box only from higher-scoring boxes, so NMS over a class's top ``M``
    candidates yields the same first kept boxes as over all of them. Start with a small ``M``
    and grow it only for classes that kept fewer than ``max_per_class`` and have more
    candidates: SSD has thousands of anchors per class above a 1e-8 threshold.
    """
    num_candidates = (scores > score_threshold).sum(dim=0)  # [C]
    pending = torch.nonzero(num_candidates > 0, as_tuple=True)[0]
    top = max_per_class + max_per_class // 4 + 8
    kept_anchors, kept_classes = [], []
    while pending.numel():
        rows = min(top, scores.shape[0])
        # each pending class's best `rows` anchors, descending: no full sort of [A, C]
        if ties_by_index:
            top_scores, top_anchors = scores[:, pending].sort(dim=0, descending=True, stable=True)
            top_scores, top_anchors = top_scores[:rows], top_anchors[:rows]  # [rows, P]
        else:
            top_scores, top_anchors = scores[:, pending].topk(rows, dim=0)  # [rows, P]
        candidate_scores, candidate_anchors = top_scores.T, top_anchors.T  # [P, rows]
        valid = candidate_scores > score_threshold
        keep = _nms_by_class(
            boxes[candidate_anchors], candidate_scores, valid, iou_threshold, max_per_class
        )  # [P, rows]
        done = (keep.sum(dim=1) >= max_per_class) | (num_candidates[pending] <= rows)
        class_index, rank = torch.nonzero(keep & done[:, None], as_tuple=True)
        kept_anchors.append(candidate_anchors[class_index, rank])
        kept_classes.append(pending[class_index])
        pending, top = pending[~done], top * 4
    if not kept_anchors:
        empty = torch.zeros(0, dtype=torch.int64, device=scores.device)
        return empty, empty
    return torch.cat(kept_anchors), torch.cat(kept_classes)


def _nms_by_class(
    boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float, max_keep: int
) -> Tensor:
    """Per-class NMS: ``boxes [P, M, 4]`` and ``scores [P, M]`` of each class's candidates
    in descending score order, ``valid [P, M]`` -> ``keep [P, M]``, the first ``max_keep``
    survivors of each class. One torchvision ``nms`` per class: its batched form scans every
    candidate once per class on the CPU, which is slower with 90 classes."""
    keep = torch.zeros_like(valid)
    for row in range(valid.shape[0]):
        candidates = torch.nonzero(valid[row], as_tuple=True)[0]
        # nms returns the survivors by decreasing score: the first max_keep are the best
        kept = candidates[nms(boxes[row, candidates], scores[row, candidates], iou_threshold)]
        keep[row, kept[:max_keep]] = True
    return keep


class BatchNonMaxSuppression:
    """Per-class (or class-agnostic) NMS with score threshold and per-class/total caps."""

    def __init__(
        self,
        *,
        score_threshold: float = 0.0,
        iou_threshold: float = 0.6,
        max_detections_per_class: int = 100,
        max_total_detections: int = 100,
        use_class_agnostic_nms: bool = False,
        max_classes_per_detection: int = 1,
        score_converter: str = "IDENTITY",
        logit_scale: float = 1.0,
        background_column: bool = True,
    ) -> None:
        """``background_column``: the logits' column 0 is background (dropped before NMS);
        false for models without one (the OD API's ``add_background_class: false``)."""
        if score_converter not in SCORE_CONVERTERS:
            raise ValueError(
                f"score_converter must be one of {SCORE_CONVERTERS}, got {score_converter!r}"
            )
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.max_detections_per_class = max_detections_per_class
        self.max_total_detections = max_total_detections
        self.use_class_agnostic_nms = use_class_agnostic_nms
        self.max_classes_per_detection = max_classes_per_detection
        self.score_converter, self.logit_scale = score_converter, logit_scale
        self.background_column = background_column

    def __call__(
        self, boxes: Tensor, class_logits: Tensor,
        clip_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """``boxes [B, A, 4]``, ``class_logits [B, A, K]`` -> per image dict of
        ``boxes [D, 4]``, ``scores [D]``, ``labels [D]`` (1..K-1).

        With ``clip_sizes`` ((height, width) per image, canvas pixels), kept boxes are clipped
        to ``[0, width] x [0, height]`` *after* NMS and boxes left with no area are dropped
        before the total cap, as the OD API's ``multiclass_non_max_suppression`` does with its
        clip window (NMS itself sees the unclipped boxes).
        """
        scores = convert_scores(class_logits, self.score_converter, self.logit_scale)
        if self.background_column:
            scores = scores[..., 1:]
        suppress = self._class_agnostic if self.use_class_agnostic_nms else self._per_class
        detections = []
        for index, (image_boxes, image_scores) in enumerate(zip(boxes, scores)):
            detection = suppress(image_boxes, image_scores)
            if clip_sizes is not None:
                detection = _clip_and_prune(detection, clip_sizes[index])
            detections.append(_cap(detection, self.max_total_detections))
        return detections

    def _per_class(self, boxes: Tensor, scores: Tensor) -> dict[str, Tensor]:
        """``boxes [A, 4]``, ``scores [A, C]`` -> detections."""
        keep_anchor, keep_class = per_class_nms(
            boxes, scores, self.score_threshold, self.iou_threshold, self.max_detections_per_class
        )
        kept_scores = scores[keep_anchor, keep_class]
        order = torch.argsort(kept_scores, descending=True, stable=True)
        return {
            "boxes": boxes[keep_anchor[order]],
            "scores": kept_scores[order],
            "labels": keep_class[order] + 1,
        }

    def _class_agnostic(self, boxes: Tensor, scores: Tensor) -> dict[str, Tensor]:
        """NMS once over boxes ranked by their best class; each kept box then reports its
        ``max_classes_per_detection`` best classes above the threshold."""
        best_scores = scores.max(dim=1).values  # [A]
        candidates = torch.nonzero(best_scores > self.score_threshold, as_tuple=True)[0]
        kept = candidates[nms(boxes[candidates], best_scores[candidates], self.iou_threshold)]
        top_k = min(self.max_classes_per_detection, scores.shape[1])
        top_scores, top_classes = scores[kept].topk(top_k, dim=1)  # [D, k]
        anchor_index = kept[:, None].expand(-1, top_k).reshape(-1)
        top_scores, top_classes = top_scores.reshape(-1), top_classes.reshape(-1)
        valid = top_scores > self.score_threshold
        anchor_index, top_scores, top_classes = (
            anchor_index[valid],
            top_scores[valid],
            top_classes[valid],
        )
        order = torch.argsort(top_scores, descending=True, stable=True)
        return {
            "boxes": boxes[anchor_index[order]],
            "scores": top_scores[order],
            "labels": top_classes[order] + 1,
        }


def _clip_and_prune(detection: dict[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
    """Clip score-sorted boxes to ``[0, width] x [0, height]``; drop those left with no area."""
    height, width = size
    boxes = detection["boxes"]
    limits = boxes.new_tensor([width, height, width, height])
    clipped = torch.minimum(boxes.clamp(min=0), limits)
    has_area = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return {"boxes": clipped[has_area], "scores": detection["scores"][has_area],
            "labels": detection["labels"][has_area]}


def _cap(detection: dict[str, Tensor], max_total: int) -> dict[str, Tensor]:
    return {name: value[:max_total] for name, value in detection.items()}
