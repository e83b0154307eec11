"""Per-image matching of detections to ground truth: the PASCAL VOC / Open Images protocol.

This is the OD API's ``per_image_evaluation.PerImageEvaluation``, vectorized with numpy and
looping only over the classes present in an image. For one class of one image:

1. As the OD API's (disabled, IoU threshold 1.0) non-max suppression does: scores
   ``<= MIN_SCORE`` are dropped, the rest ranked best first by ``odapi_score_order`` (its
   exact numpy call, so tied scores come in its order) and capped at
   ``MAX_DETECTIONS_PER_CLASS``.
2. Each detection is matched to the non-group-of ground truth box of highest IoU. If that
   IoU reaches the threshold: a difficult box makes the detection *ignored*; otherwise the
   highest-scoring detection claiming the box is a true positive and later ones are false
   positives (they do not fall back to their second-best box, as in the VOC devkit).
3. Detections still unmatched are matched to the group-of box of highest IoA (intersection
   over the *detection's* area). They are ignored individually; each group-of box that got
   at least one such detection adds one entry with the highest of their scores and weight
   ``group_of_weight`` (0 drops the entry: Open Images V2 ignores them).

Mask mode (instance segmentation) runs step 2/3 on mask IoU/IoA against ground truth with a
non-empty mask, then on box IoU/IoA against ground truth whose mask is empty; detections
matched at the box stage are dropped (those objects act as ignore regions).

Boxes are ``(x1, y1, x2, y2)`` float64 pixels; masks ``[N, H, W]`` uint8 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from objdet.errors import DataError
from objdet.evaluation.average_precision import odapi_score_order
from objdet.evaluation.base import GroundTruth
from objdet.structures.detections import Detections

# The OD API's ObjectDetectionEvaluation runs NMS with iou_threshold=1.0 (so it only sorts),
# max_output_size=10000 and its default score_threshold=-10.0 (scores must exceed it).
MAX_DETECTIONS_PER_CLASS = 10000
MIN_SCORE = -10.0
# np_mask_ops' guard against empty unions / areas. It computes mask IoU and IoA in float32,
# and so does this module: there 1e-7 vanishes next to an area of 2 pixels or more, so an
# IoA of exactly 0.5 stays 0.5 (in float64, 11 / (22 + 1e-7) falls below the threshold).
_MASK_EPSILON = np.float32(1e-7)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas ``[N]`` of ``[N, 4]`` (x1, y1, x2, y2) boxes, in square pixels."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_intersections(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas ``[N, M]`` of ``[N, 4]`` and ``[M, 4]`` boxes."""
    width = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2]) - np.maximum(
        boxes_a[:, None, 0], boxes_b[None, :, 0]
    )
    height = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3]) - np.maximum(
        boxes_a[:, None, 1], boxes_b[None, :, 1]
    )
    return np.clip(width, 0.0, None) * np.clip(height, 0.0, None)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[N, M]``; 0 where both boxes are empty."""
    intersections = box_intersections(boxes_a, boxes_b)
    unions = box_areas(boxes_a)[:, None] + box_areas(boxes_b)[None, :] - intersections
    return np.divide(intersections, unions, out=np.zeros_like(intersections), where=unions > 0)


def box_ioa(detections: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Intersection over each detection's area ``[D, R]`` (how much of it lies in a region)."""
    intersections = box_intersections(detections, regions)
    areas = box_areas(detections)[:, None]
    return np.divide(intersections, areas, out=np.zeros_like(intersections), where=areas > 0)


def mask_intersections(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection pixel counts ``[N, M]`` of ``[N, H, W]`` and ``[M, H, W]`` masks."""
    if masks_a.shape[1:] != masks_b.shape[1:]:
        raise DataError(
            f"detection masks are {masks_a.shape[1:]} but ground truth masks are "
            f"{masks_b.shape[1:]}; both must be the image size [H, W]"
        )
    pixels = int(np.prod(masks_a.shape[1:]))
    # float32 counts are exact below 2**24 pixels; the matmul is chunked to bound memory.
    dtype = np.float32 if pixels < 2**24 else np.float64
    flat_b = (masks_b.reshape(masks_b.shape[0], pixels) > 0).astype(dtype)
    result = np.zeros((masks_a.shape[0], masks_b.shape[0]), dtype=np.float64)
    chunk = max(1, (1 << 24) // max(pixels, 1))
    for start in range(0, masks_a.shape[0], chunk):
        flat_a = (masks_a[start : start + chunk].reshape(-1, pixels) > 0).astype(dtype)
        result[start : start + chunk] = np.matmul(flat_a, flat_b.T)
    return result


def mask_areas(masks: np.ndarray) -> np.ndarray:
    """Pixel counts ``[N]`` of ``[N, H, W]`` masks, float32 as np_mask_ops.area has them."""
    return (masks > 0).sum(axis=(1, 2)).astype(np.float32)


def mask_iou(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """Pairwise mask IoU ``[N, M]`` float32, as the OD API computes it (np_mask_ops.iou)."""
    intersections = mask_intersections(masks_a, masks_b).astype(np.float32)
    unions = mask_areas(masks_a)[:, None] + mask_areas(masks_b)[None, :] - intersections
    return intersections / np.maximum(unions, _MASK_EPSILON)


def mask_ioa(detections: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Intersection over each detection mask's area ``[D, R]`` float32 (np_mask_ops.ioa)."""
    intersections = mask_intersections(detections, regions).astype(np.float32)
    return intersections / (mask_areas(detections)[:, None] + _MASK_EPSILON)


@dataclass
class _DetectionFlags:
    """What matching decided for each of D score-sorted detections of one class."""

    true_positive: np.ndarray  # [D] bool
    matched_difficult: np.ndarray  # [D] bool: ignored
    matched_group_of: np.ndarray  # [D] bool: folded into their group-of box's entry
    matched_box_only: np.ndarray  # [D] bool: mask mode, matched to an object without mask

    @classmethod
    def empty(cls, count: int) -> _DetectionFlags:
        return cls(*(np.zeros(count, dtype=bool) for _ in range(4)))

    def unresolved(self) -> np.ndarray:
        return ~self.true_positive & ~self.matched_difficult & ~self.matched_group_of


def _match_instances(
    overlaps: np.ndarray,
    gt_difficult: np.ndarray,
    threshold: float,
    flags: _DetectionFlags,
    box_stage: bool,
) -> None:
    """Step 2: match detections ``[D]`` to single-object boxes by ``overlaps [D, G]``."""
    if overlaps.shape[1] == 0:
        return
    best_gt = np.argmax(overlaps, axis=1)  # [D]; first index on ties, as np.argmax in the OD API
    reaches = overlaps[np.arange(overlaps.shape[0]), best_gt] >= threshold
    evaluatable = flags.unresolved() & reaches
    flags.matched_difficult |= evaluatable & gt_difficult[best_gt]
    candidates = np.flatnonzero(evaluatable & ~gt_difficult[best_gt])
    # Detections are sorted by descending score, so the first claim on a box is the TP.
    _, first_claims = np.unique(best_gt[candidates], return_index=True)
    winners = candidates[first_claims]
    flags.true_positive[winners] = True
    if box_stage:
        flags.matched_box_only[winners] = True


def _match_groups(
    overlaps: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    flags: _DetectionFlags,
    group_of_weight: float,
    box_stage: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: fold detections into group-of boxes by IoA ``[D, G]``; one entry per box."""
    if overlaps.shape[1] == 0:
        return np.zeros(0), np.zeros(0)
    best_group = np.argmax(overlaps, axis=1)
    reaches = overlaps[np.arange(overlaps.shape[0]), best_group] >= threshold
    matched = flags.unresolved() & reaches
    flags.matched_group_of |= matched
    if box_stage:
        flags.matched_box_only |= matched
    best_scores = np.zeros(overlaps.shape[1], dtype=np.float64)
    np.maximum.at(best_scores, best_group[matched], scores[matched])
    # The OD API keeps a group-of entry only when its best score is > 0 and the weight > 0.
    keep = (best_scores > 0) & (group_of_weight > 0)
    return best_scores[keep], np.full(int(keep.sum()), float(group_of_weight))


def _match_stage(
    instance_overlaps: np.ndarray,
    group_overlaps: np.ndarray,
    instance_difficult: np.ndarray,
    scores: np.ndarray,
    flags: _DetectionFlags,
    threshold: float,
    group_of_weight: float,
    box_stage: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 2 and 3 against one kind of overlap (masks, or boxes); returns group entries."""
    _match_instances(instance_overlaps, instance_difficult, threshold, flags, box_stage)
    return _match_groups(group_overlaps, scores, threshold, flags, group_of_weight, box_stage)


def match_class(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    gt_group_of: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    group_of_weight: float = 0.0,
    det_masks: np.ndarray | None = None,
    gt_masks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and true-positive weights of one class in one image.

    Args:
        det_boxes: ``[D, 4]`` detections best score first, ties in the OD API's order
            (``match_image`` ranks them; the first claim on an object wins); det_scores ``[D]``.
        gt_boxes: ``[G, 4]``; gt_difficult, gt_group_of: ``[G]`` bool.
        det_masks, gt_masks: ``[D, H, W]`` / ``[G, H, W]`` for mask mode (both or neither).

    Returns:
        ``(scores [K], tp_weights [K])``: the detections that count (1.0 = TP, 0.0 = FP)
        followed by one entry per detected group-of box (weight ``group_of_weight``).
    """
    count = det_boxes.shape[0]
    if count == 0:
        return np.zeros(0), np.zeros(0)
    if gt_boxes.shape[0] == 0:
        return det_scores.copy(), np.zeros(count)
    flags = _DetectionFlags.empty(count)
    mask_mode = det_masks is not None and gt_masks is not None
    has_mask = (
        gt_masks.reshape(gt_masks.shape[0], -1).any(axis=1)  # type: ignore[union-attr]
        if mask_mode
        else np.zeros(gt_boxes.shape[0], dtype=bool)
    )
    group_entries: list[tuple[np.ndarray, np.ndarray]] = []
    if mask_mode and has_mask.any():
        single, group = has_mask & ~gt_group_of, has_mask & gt_group_of
        group_entries.append(
            _match_stage(
                mask_iou(det_masks, gt_masks[single]),  # type: ignore[arg-type, index]
                mask_ioa(det_masks, gt_masks[group]),  # type: ignore[arg-type, index]
                gt_difficult[single],
                det_scores,
                flags,
                iou_threshold,
                group_of_weight,
                box_stage=False,
            )
        )
    if (~has_mask).any():
        single, group = ~has_mask & ~gt_group_of, ~has_mask & gt_group_of
        box_groups = _match_stage(
            box_iou(det_boxes, gt_boxes[single]),
            box_ioa(det_boxes, gt_boxes[group]),
            gt_difficult[single],
            det_scores,
            flags,
            iou_threshold,
            group_of_weight,
            box_stage=mask_mode,
        )
        if not mask_mode:  # in mask mode, objects without masks are ignore regions
            group_entries.append(box_groups)
    counted = ~flags.matched_difficult & ~flags.matched_group_of
    if mask_mode:
        counted &= ~flags.matched_box_only
    scores = [det_scores[counted]] + [entry[0] for entry in group_entries]
    weights = [flags.true_positive[counted].astype(np.float64)] + [e[1] for e in group_entries]
    return np.concatenate(scores), np.concatenate(weights)


def is_correctly_localized(
    det_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    det_masks: np.ndarray | None = None,
    gt_masks: np.ndarray | None = None,
) -> bool:
    """CorLoc hit: the detection in row 0 (the class's top one: its first highest score in
    detection order, as the OD API's np.argmax picks it) overlaps some object of its class.

    Every object counts here, difficult and group-of included (as in the OD API).
    """
    if det_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return False
    if det_masks is not None and gt_masks is not None:
        if not gt_masks.any():  # no object has a mask: nothing to localize against
            return False
        overlaps = mask_iou(det_masks[:1], gt_masks)
    else:
        overlaps = box_iou(det_boxes[:1], gt_boxes)
    return bool(overlaps.max() >= iou_threshold)


@dataclass
class ImageMatch:
    """What one image contributes to the dataset-level metrics (no boxes are kept).

    Attributes:
        class_ids, scores, tp_weights: ``[K]`` one entry per counted detection or detected
            group-of box: its class, score and true-positive weight (0 = false positive).
        localized_class_ids: ``[C]`` classes whose top detection hit an object (CorLoc).
        num_degenerate: detections dropped for zero width or height (as the OD API does).
    """

    class_ids: np.ndarray
    scores: np.ndarray
    tp_weights: np.ndarray
    localized_class_ids: np.ndarray
    num_degenerate: int


def match_image(
    detections: Detections,
    ground_truth: GroundTruth,
    *,
    iou_threshold: float = 0.5,
    group_of_weight: float = 0.0,
    use_difficult: bool = True,
    use_group_of: bool = False,
    use_masks: bool = False,
) -> ImageMatch:
    """Match one image's detections to its ground truth, class by class.

    ``use_difficult`` / ``use_group_of`` say whether the protocol reads those flags (PASCAL
    reads difficult only, Open Images group-of only); ``use_masks`` selects mask matching.
    """
    boxes, scores = detections.boxes, detections.scores
    degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    valid = np.flatnonzero(~degenerate)  # [V] in detection order, as the OD API keeps them
    det_masks = detections.masks if use_masks else None
    gt_masks = ground_truth.masks if use_masks else None
    num_gt = ground_truth.num_objects
    difficult = _flags_or_false(ground_truth.difficult if use_difficult else None, num_gt)
    group_of = _flags_or_false(ground_truth.group_of if use_group_of else None, num_gt)
    pieces: list[tuple[int, np.ndarray, np.ndarray]] = []
    localized: list[int] = []
    for class_id in np.union1d(detections.labels[valid], ground_truth.labels).tolist():
        class_rows = valid[detections.labels[valid] == class_id]  # [D] detection order
        on_class = ground_truth.labels == class_id  # [N] bool
        class_gt_masks = None if gt_masks is None else gt_masks[on_class]
        # CorLoc: the first highest score in detection order (the OD API's np.argmax).
        top = class_rows[[np.argmax(scores[class_rows])]] if len(class_rows) else class_rows
        if is_correctly_localized(
            boxes[top],
            ground_truth.boxes[on_class],
            iou_threshold=iou_threshold,
            det_masks=None if det_masks is None else det_masks[top],
            gt_masks=class_gt_masks,
        ):
            localized.append(class_id)
        ranked = _odapi_ranked(class_rows, scores)  # [K] what the OD API matches, in order
        class_scores, weights = match_class(
            boxes[ranked],
            scores[ranked],
            ground_truth.boxes[on_class],
            difficult[on_class],
            group_of[on_class],
            iou_threshold=iou_threshold,
            group_of_weight=group_of_weight,
            det_masks=None if det_masks is None else det_masks[ranked],
            gt_masks=class_gt_masks,
        )
        pieces.append((class_id, class_scores, weights))
    return ImageMatch(
        class_ids=np.concatenate(
            [np.full(len(s), c, dtype=np.int64) for c, s, _ in pieces] or [np.zeros(0, np.int64)]
        ),
        scores=np.concatenate([s for _, s, _ in pieces] or [np.zeros(0)]),
        tp_weights=np.concatenate([w for _, _, w in pieces] or [np.zeros(0)]),
        localized_class_ids=np.asarray(localized, dtype=np.int64),
        num_degenerate=int(degenerate.sum()),
    )


def _odapi_ranked(class_rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The rows ``[K]`` of one class the OD API matches, in its order (its non-max suppression
    with IoU threshold 1.0): scores above ``MIN_SCORE``, ranked by ``odapi_score_order`` on
    the same array it sorts (the class's scores in detection order), at most
    ``MAX_DETECTIONS_PER_CLASS``."""
    above = class_rows[scores[class_rows] > MIN_SCORE]
    return above[odapi_score_order(scores[above])][:MAX_DETECTIONS_PER_CLASS]


def _flags_or_false(flags: np.ndarray | None, count: int) -> np.ndarray:
    return np.zeros(count, dtype=bool) if flags is None else flags.astype(bool)
