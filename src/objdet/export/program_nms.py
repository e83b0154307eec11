"""``detector.pt2``'s non-max suppression: every image of a batch in one torchvision ``nms``.

``torch.export`` keeps the batch dimension dynamic only where no loop runs over the images,
so each NMS here runs once over the candidates of every image, the images kept apart by a
coordinate offset (each image's boxes move by a multiple of the extent of all boxes, in
float64, so the shift costs no precision). Sizes after ``nonzero`` and ``nms`` depend on the
data; the outputs are padded to a static number of rows.

- :func:`batched_detections`: the second (or only) NMS, as ``BatchNonMaxSuppression`` (per
  class, or class-agnostic with ``max_classes_per_detection``) and Faster R-CNN's
  ``SecondStageNonMaxSuppression`` (a box per class, rows past ``num_proposals`` ignored)
  compute it per image: survivors clipped to the resized image, those left without area
  dropped, the best ``max_total_detections`` of each image.
- :func:`batched_proposals`: Faster R-CNN's first-stage NMS, as ``select_proposals``
  (``model.onnx`` builds the same from ONNX ops, ``objdet.export.onnx_faster_rcnn``).

Boxes are ``(x1, y1, x2, y2)`` canvas pixels; ``resized`` is float64 ``[2]``, the (height,
width) of the resized image on the canvas (every image of a batch alike).
"""

from __future__ import annotations

import torch
from torch import Tensor

from objdet.models.meta_arch.faster_rcnn_postprocessing import SecondStageNonMaxSuppression
from objdet.models.postprocessing import BatchNonMaxSuppression

DetectionOutputs = tuple[Tensor, Tensor, Tensor, Tensor]  # boxes, scores, classes, counts
Suppression = BatchNonMaxSuppression | SecondStageNonMaxSuppression


def batched_detections(boxes: Tensor, scores: Tensor, resized: Tensor, nms: Suppression,
                       valid_rows: Tensor | None = None) -> DetectionOutputs:
    """Decoded ``boxes`` (``[B, A, 4]``, one per row, or ``[B, A, C', 4]``, one per class, C'
    1 when shared), converted ``scores [B, A, C]`` (no background) and ``resized`` -> the four
    detection outputs (``detection_boxes [B, max, 4]`` normalized ymin, xmin, ymax, xmax,
    ``detection_scores``, ``detection_classes [B, max]`` label-map ids, ``num_detections
    [B]``; zero rows past the count), with ``nms``'s thresholds and caps. ``valid_rows`` bool
    ``[B, A]``: rows that may be detected (Faster R-CNN: those before ``num_proposals``)."""
    per_class_boxes = boxes if boxes.dim() == 4 else boxes[:, :, None]  # [B, A, C', 4]
    wide = per_class_boxes.to(torch.float64)
    extent = wide.max() - wide.min() + 1.0
    if isinstance(nms, BatchNonMaxSuppression) and nms.use_class_agnostic_nms:
        image, anchor, class_index, kept_scores = _class_agnostic_survivors(
            wide[:, :, 0], extent, scores, nms, valid_rows)
        valid = kept_scores > nms.score_threshold
    else:
        image, anchor, class_index = _per_class_survivors(wide, extent, scores, nms, valid_rows)
        kept_scores = scores[image, anchor, class_index]  # [M]
        # the first max_detections_per_class survivors of each (image, class)
        num_classes = scores.shape[2]
        per_class = rank_within_group(image * num_classes + class_index, boxes.shape[0] * num_classes)
        valid = per_class < nms.max_detections_per_class
    box_column = class_index if per_class_boxes.shape[2] > 1 else torch.zeros_like(class_index)
    clipped, has_area = clip_to_window(per_class_boxes[image, anchor, box_column], resized)
    return _padded_outputs(image, class_index, kept_scores, clipped, valid & has_area, resized,
                           boxes.shape[0], int(nms.max_total_detections))


def _per_class_survivors(boxes: Tensor, extent: Tensor, scores: Tensor, nms: Suppression,
                         valid_rows: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One ``nms`` per class over every image's candidates (``boxes [B, A, C', 4]`` float64)
    -> the survivors' image, row and class index (int64 ``[M]``; by class, then score)."""
    kept_image, kept_anchor, kept_class = [], [], []
    for column in range(scores.shape[2]):
        candidate = scores[:, :, column] > nms.score_threshold  # [B, A]
        if valid_rows is not None:
            candidate = candidate & valid_rows
        image, anchor = torch.nonzero(candidate, as_tuple=True)
        class_boxes = boxes[:, :, column if boxes.shape[2] > 1 else 0]  # [B, A, 4]
        survivors = _suppress(class_boxes, extent, image, anchor, scores[image, anchor, column],
                              nms.iou_threshold)
        kept_image.append(image[survivors])
        kept_anchor.append(anchor[survivors])
        kept_class.append(torch.full_like(survivors, column))
    return torch.cat(kept_image), torch.cat(kept_anchor), torch.cat(kept_class)


def _class_agnostic_survivors(
    boxes: Tensor, extent: Tensor, scores: Tensor, nms: BatchNonMaxSuppression,
    valid_rows: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``BatchNonMaxSuppression._class_agnostic`` for every image at once: one ``nms`` over
    rows ranked by their best class (``boxes [B, A, 4]`` float64), each survivor then
    reporting its ``max_classes_per_detection`` best classes -> image, row, class index and
    score of each (survivor, class) pair (``[M * k]``; the caller drops those at or below the
    score threshold)."""
    best = scores.max(dim=2).values  # [B, A]
    candidate = best > nms.score_threshold
    if valid_rows is not None:
        candidate = candidate & valid_rows
    image, anchor = torch.nonzero(candidate, as_tuple=True)
    survivors = _suppress(boxes, extent, image, anchor, best[image, anchor], nms.iou_threshold)
    image, anchor = image[survivors], anchor[survivors]
    top = min(nms.max_classes_per_detection, int(scores.shape[2]))
    top_scores, top_classes = scores[image, anchor].topk(top, dim=1)  # [M, k]
    return (image[:, None].expand(-1, top).reshape(-1), anchor[:, None].expand(-1, top).reshape(-1),
            top_classes.reshape(-1), top_scores.reshape(-1))


def _suppress(boxes: Tensor, extent: Tensor, image: Tensor, anchor: Tensor, scores: Tensor,
              iou_threshold: float) -> Tensor:
    """Indices into the candidates ``(image, anchor)`` (int64 ``[N]`` into ``boxes [B, A,
    4]`` float64) that survive NMS by ``scores [N]``, by decreasing score; boxes of different
    images never suppress each other (offset by ``image * extent``)."""
    candidates = boxes[image, anchor] + (image.to(torch.float64) * extent)[:, None]  # [N, 4]
    # torchvision's fake nms declares at least 2 survivors (``create_unbacked_symint``'s
    # min=2), which torch.export asserts at run time: two sentinel boxes past every image,
    # apart from each other and scoring below every candidate, always survive; dropped after.
    start = boxes.min() + (boxes.shape[0] + 1) * extent
    corners = torch.stack([start, start + 2 * extent])[:, None]  # [2, 1]
    sentinels = torch.cat([corners, corners, corners + 1, corners + 1], dim=1)  # [2, 4]
    lowest = torch.full((2,), float("-inf"), dtype=torch.float64)
    survivors = torch.ops.torchvision.nms(torch.cat([candidates, sentinels]),
                                          torch.cat([scores.to(torch.float64), lowest]), iou_threshold)
    return survivors[survivors < image.shape[0]]


def batched_proposals(boxes: Tensor, objectness: Tensor, resized: Tensor, *,
                      score_threshold: float, iou_threshold: float, max_proposals: int,
                      ) -> tuple[Tensor, Tensor]:
    """Decoded RPN ``boxes [B, A, 4]`` and ``objectness [B, A]`` probabilities -> proposals
    ``[B, max_proposals, 4]`` (zero rows after ``num_proposals`` int64 ``[B]``), as
    ``select_proposals``: the first ``max_proposals`` NMS survivors of each image scoring
    above ``score_threshold``, clipped to the resized image, those left without area dropped."""
    batch = boxes.shape[0]
    wide = boxes.to(torch.float64)
    extent = wide.max() - wide.min() + 1.0
    image, anchor = torch.nonzero(objectness > score_threshold, as_tuple=True)
    survivors = _suppress(wide, extent, image, anchor, objectness[image, anchor], iou_threshold)
    image, anchor = image[survivors], anchor[survivors]  # by score, descending
    first = rank_within_group(image, batch) < max_proposals
    clipped, has_area = clip_to_window(boxes[image, anchor], resized)
    row, slot, keep = _slots(image, first & has_area, batch, max_proposals)
    proposals = boxes.new_zeros(batch, max_proposals + 1, 4).index_put((row, slot), clipped)
    counts = torch.zeros(batch, dtype=torch.int64).index_add(0, row, keep.to(torch.int64))
    return proposals[:, :max_proposals], counts


def rank_within_group(group: Tensor, num_groups: torch.SymInt | int) -> Tensor:
    """int64 ``[M]``: each row's position among the rows of its ``group`` (int64 ``[M]`` in
    ``0..num_groups - 1``), rows keeping their order."""
    order = torch.sort(group, stable=True).indices  # rows grouped, each group in row order
    counts = torch.zeros(num_groups, dtype=torch.int64).index_add(0, group, torch.ones_like(group))
    starts = counts.cumsum(0) - counts  # [num_groups]
    ranks = torch.arange(group.shape[0]) - starts[group[order]]
    return torch.zeros_like(ranks).index_put((order,), ranks)


def _slots(image: Tensor, valid: Tensor, batch: torch.SymInt | int, width: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Where rows go in a zero ``[B, width + 1, ...]`` output cut at ``width``: the ``valid``
    rows of each image in row order, the first ``width`` of them -> (row, slot) int64 ``[M]``
    and ``keep`` bool ``[M]``; the other rows go to slot ``width``, cut off."""
    group = torch.where(valid, image, batch)  # invalid rows form a group of their own, last
    rank = rank_within_group(group, batch + 1)
    keep = valid & (rank < width)
    return torch.where(keep, image, 0), torch.where(keep, rank, width), keep


def clip_to_window(boxes: Tensor, resized: Tensor) -> tuple[Tensor, Tensor]:
    """``boxes [M, 4]`` (x1, y1, x2, y2) clipped to the resized image -> the clipped boxes and
    ``has_area`` bool ``[M]`` (x2 > x1 and y2 > y1 after clipping)."""
    height, width = resized.to(boxes.dtype)
    limits = torch.stack([width, height, width, height])
    clipped = torch.minimum(boxes.clamp(min=0), limits)
    has_area = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, has_area


def _padded_outputs(image: Tensor, class_index: Tensor, scores: Tensor, boxes: Tensor,
                    valid: Tensor, resized: Tensor, batch: torch.SymInt | int,
                    max_total: int) -> DetectionOutputs:
    """The ``valid`` rows of each image (``image``, 0-based ``class_index`` and ``scores``
    ``[M]``, clipped ``boxes [M, 4]`` x1, y1, x2, y2 canvas pixels) by descending score (ties
    in row order), the best ``max_total`` of each written into zero ``[B, max_total, ...]``
    rows."""
    by_score = torch.sort(scores, descending=True, stable=True).indices
    image, class_index, scores, boxes, valid = (
        value[by_score] for value in (image, class_index, scores, boxes, valid))
    row, slot, keep = _slots(image, valid, batch, max_total)
    height, width = resized.to(boxes.dtype)
    normalized = boxes[:, [1, 0, 3, 2]] / torch.stack([height, width, height, width])
    detection_boxes = boxes.new_zeros(batch, max_total + 1, 4).index_put((row, slot), normalized)
    detection_scores = scores.new_zeros(batch, max_total + 1).index_put((row, slot), scores)
    labels = (class_index + 1).to(scores.dtype)
    detection_classes = scores.new_zeros(batch, max_total + 1).index_put((row, slot), labels)
    counts = scores.new_zeros(batch).index_add(0, row, keep.to(scores.dtype))
    return (detection_boxes[:, :max_total], detection_scores[:, :max_total],
            detection_classes[:, :max_total], counts)
