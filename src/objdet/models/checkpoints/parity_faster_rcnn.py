"""Faster R-CNN / Mask R-CNN against the OD API's own model, level by level (the
``faster_rcnn`` family of :func:`objdet.models.checkpoints.parity.compare_with_reference`).

Each level is fed the OD API's own inputs where it has them, so a difference shows where it
starts:

- preprocessed image (max |Δ|), anchors (max |Δ|, normalized to the canvas), RPN box
  encodings and objectness logits (max |Δ| / the reference's max |value|);
- proposals: objdet's first-stage NMS fed the OD API's RPN outputs, and end to end, as the
  share of the OD API's proposals reproduced (IoU >= 0.99, one to one);
- second stage: refined box encodings and class logits of objdet's box classifier on its
  own feature map and the OD API's proposals (relative max |Δ|, valid proposals only);
- detections: objdet's post-processing fed the OD API's proposals and second-stage outputs,
  and end to end (matched share, as the SSD's);
- masks (three stages): the mask head fed the OD API's detections (max |Δ| of the box
  masks' probabilities) and, end to end, the masks reframed to the input image (mean |Δ|
  over the OD API's first reframed detections, each against the objdet detection it
  matches; one it misses counts in the end-to-end share instead).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import Tensor

from objdet.errors import ObjdetError
from objdet.models.checkpoints.parity import (
    ParityResult,
    ReferenceArrays,
    Tolerances,
    WorstLevels,
    detections_to_reference_form,
    matched_pairs,
    matched_share,
    preprocessed_tolerance,
    reference_detections,
    relative_max_abs,
)
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, FasterRcnnFeatureExtractor


def _xyxy(boxes: np.ndarray) -> Tensor:
    """OD API (ymin, xmin, ymax, xmax) -> float32 (x1, y1, x2, y2)."""
    return torch.from_numpy(np.asarray(boxes, dtype=np.float32)[..., [1, 0, 3, 2]].copy())


def _normalized_yx(boxes: Tensor | np.ndarray, canvas: tuple[int, int], xyxy: bool) -> np.ndarray:
    """Canvas-pixel boxes ``[N, 4]`` -> (ymin, xmin, ymax, xmax) fractions of the canvas."""
    array = (boxes.detach().double().numpy() if isinstance(boxes, Tensor)
             else np.asarray(boxes, dtype=np.float64)).reshape(-1, 4)
    if xyxy:
        array = array[:, [1, 0, 3, 2]]
    height, width = canvas
    return array / np.array([height, width, height, width])


def _proposal_share(reference: np.ndarray, found: Tensor, canvas: tuple[int, int]) -> float:
    """Share of the reference's proposals (``[P, 4]`` yx canvas pixels) that ``found``
    (``[Q, 4]`` xyxy canvas pixels) reproduces one to one (IoU >= 0.99)."""
    reference_boxes = {"boxes": _normalized_yx(reference, canvas, xyxy=False)}
    found_boxes = {"boxes": _normalized_yx(found, canvas, xyxy=True)}
    if len(reference_boxes["boxes"]) == 0:
        return 1.0 if len(found_boxes["boxes"]) == 0 else 0.0
    pairs, looked_at = matched_pairs(reference_boxes, found_boxes, top=len(reference))
    return len(pairs) / looked_at


def compare_faster_rcnn(model: torch.nn.Module, data: ReferenceArrays, indices: list[int],
                        tolerances: Tolerances, label: str) -> ParityResult:
    """The levels of the module docstring, worst over ``indices`` (images of ``data``)."""
    if not isinstance(model, FasterRCNN):
        raise ObjdetError(f"{label}: meta.json says faster_rcnn, the config builds "
                          f"{type(model).__name__}")
    worst = WorstLevels()
    for index in indices:
        _compare_image(model, data, index, worst)
    has_masks = model.mask_head is not None
    return ParityResult(
        config=label, family="faster_rcnn",
        preprocessed_max_abs=worst["pre"],
        preprocessed_tolerance=preprocessed_tolerance(tolerances, worst["pre_scale"]),
        anchors_max_abs=worst["anchors"],
        raw_boxes_max_abs=worst["rpn_boxes"], raw_classes_max_abs=worst["rpn_objectness"],
        proposals_matched=worst["proposals"],
        end_to_end_proposals_matched=worst["e2e_proposals"],
        second_stage_boxes_max_abs=worst["second_boxes"],
        second_stage_classes_max_abs=worst["second_classes"],
        mask_head_max_abs=worst.get("mask_head") if has_masks else None,
        masks_mean_abs=worst.get("masks") if has_masks else None,
        postprocess_matched=worst["post"], end_to_end_matched=worst["e2e"], ok=False,
    )


def _compare_image(model: FasterRCNN, data: ReferenceArrays, index: int, worst: WorstLevels) -> None:
    """One image's levels into ``worst``."""
    image_array = np.asarray(data[f"image_{index}"])
    image = torch.from_numpy(image_array).permute(2, 0, 1).float() / 255.0
    image_size = (int(image.shape[1]), int(image.shape[2]))
    batch = model.resize_batch([image])
    canvas = (int(batch.images.shape[2]), int(batch.images.shape[3]))
    extractor = cast(FasterRcnnFeatureExtractor, model.feature_extractor)
    preprocessed = extractor.preprocess(batch.images).permute(0, 2, 3, 1)
    reference_pre = np.asarray(data[f"preprocessed_{index}"], dtype=np.float64)  # [1, H, W, 3]
    worst.high("pre", float(np.abs(preprocessed.double().numpy() - reference_pre).max()))
    worst.high("pre_scale", float(np.abs(reference_pre).max()))

    first = model.predict_first_stage(batch.images)
    reference_anchors = np.asarray(data[f"anchors_{index}"])  # [A, 4] yx canvas pixels
    worst.high("anchors", float(np.abs(
        _normalized_yx(first["anchors"], canvas, xyxy=True)
        - _normalized_yx(reference_anchors, canvas, xyxy=False)).max()))
    rpn_boxes = np.asarray(data[f"rpn_box_encodings_{index}"])  # [1, A, 4]
    rpn_objectness = np.asarray(data[f"rpn_objectness_{index}"])  # [1, A, 2]
    worst.high("rpn_boxes", relative_max_abs(first["rpn_box_encodings"], rpn_boxes))
    worst.high("rpn_objectness", relative_max_abs(first["rpn_objectness"], rpn_objectness))

    count = int(np.asarray(data[f"num_proposals_{index}"]).reshape(-1)[0])
    reference_proposals = np.asarray(data[f"proposal_boxes_{index}"])  # [1, P, 4] yx pixels
    fed_first = {"rpn_box_encodings": torch.from_numpy(rpn_boxes),
                 "rpn_objectness": torch.from_numpy(rpn_objectness),
                 "anchors": _xyxy(reference_anchors)}
    for key, source in (("proposals", fed_first), ("e2e_proposals", first)):
        proposals, num_proposals = model.propose(source, batch.resized_sizes)
        worst.low(key, _proposal_share(reference_proposals[0, :count],
                                       proposals[0, :int(num_proposals[0])], canvas))

    proposals = _xyxy(reference_proposals)  # [1, P, 4] canvas pixels
    refined, class_logits = model.predict_second_stage(first["features"], proposals, canvas)
    reference_refined = np.asarray(data[f"refined_box_encodings_{index}"])  # [P, C', 4]
    reference_classes = np.asarray(data[f"class_predictions_{index}"])  # [P, K + 1]
    worst.high("second_boxes", relative_max_abs(refined[0, :count], reference_refined[:count]))
    worst.high("second_classes", relative_max_abs(class_logits[0, :count],
                                                  reference_classes[:count]))

    fed = {"proposal_boxes": proposals, "num_proposals": torch.tensor([count]),
           "refined_box_encodings": torch.from_numpy(reference_refined)[None],
           "class_logits": torch.from_numpy(reference_classes)[None]}
    if model.mask_head is not None:
        fed["rpn_features_to_crop"] = first["features"]
    expected = reference_detections(data, index)
    post = model.postprocess(fed, batch.resized_sizes, batch.original_sizes)[0]
    worst.low("post", matched_share(expected, detections_to_reference_form(post, image_size)))
    own = cast(list[dict[str, Tensor]], model([image]))[0]
    own_form = detections_to_reference_form(own, image_size)
    worst.low("e2e", matched_share(expected, own_form))
    if model.mask_head is not None:
        compare_masks(model, data, index, first["features"], expected, own, own_form, worst)


def compare_masks(model: FasterRCNN, data: ReferenceArrays, index: int, features: Tensor,
                   expected: dict[str, np.ndarray], own: dict[str, Tensor],
                   own_form: dict[str, np.ndarray], worst: WorstLevels) -> None:
    """Into ``worst``: ``mask_head``, the max |Δ| of the mask head's probabilities on the
    OD API's detections ``expected`` (objdet's map ``features [1, C, h, w]``), and
    ``masks``, the mean |Δ| of objdet's masks reframed to the image (``own``: its
    detections, ``own_form`` the same in the reference's form) on the OD API's reframed ones
    (``reframed_masks_i``; the detections objdet matches)."""
    count = len(expected["boxes"])
    if count:
        boxes = _xyxy(expected["boxes"])  # fractions of the image window
        labels = torch.from_numpy(expected["classes"]) + 1
        head_masks = model.predict_masks(features, boxes, labels)  # [D, mh, mw]
        reference_masks = np.asarray(data[f"detection_masks_{index}"])[0, :count]
        worst.high("mask_head", float(np.abs(head_masks.double().numpy() - reference_masks).max()))
    reframed = np.asarray(data[f"reframed_masks_{index}"]).astype(np.float64) / 65535.0  # [S, H, W]
    shown = reframed.shape[0]
    pairs, _ = matched_pairs(expected, own_form)
    differences = [np.abs(own["masks"][found, 0].double().numpy() - reframed[reference]).mean()
                   for reference, found in pairs if reference < shown]
    if shown:  # detections objdet misses count in end_to_end_matched, not here
        worst.high("masks", float(np.mean(differences)) if differences else float("inf"))
