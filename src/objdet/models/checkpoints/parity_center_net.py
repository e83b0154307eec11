"""CenterNet (boxes and keypoints) against the OD API's own model, level by level (the
``center_net`` family of :func:`objdet.models.checkpoints.parity.compare_with_reference`):

- preprocessed image (max |Δ|, the extractor's input);
- raw heads of the last feature output (max |Δ| / the reference's max |value|): the center
  and keypoint heatmap logits as ``raw_classes``, the box and keypoint regression / offset
  heads as ``raw_boxes``;
- detections: objdet's post-processing fed the OD API's raw heads, and end to end (matched
  share, as the SSD's);
- keypoints, on each OD API detection objdet reproduces (both ways above): coordinates
  (max |Δ| / the image's longer side) and scores (max |Δ|).
"""

from __future__ import annotations

import re

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
from objdet.models.meta_arch.center_net import CenterNet

# The OD API's prediction keys whose objdet names differ.
HEAD_NAMES = {"object_center": "object_center", "box/scale": "box_scale",
              "box/offset": "box_offset"}


def _heads(data: ReferenceArrays, index: int) -> dict[str, np.ndarray]:
    """objdet head name -> the reference's raw head ``[1, h, w, C]`` (``head_<key>_<i>``,
    ``<key>`` the OD API's prediction key with ``/`` written ``.``)."""
    pattern = re.compile(rf"head_(.+)_{index}$")
    heads = {}
    for key in data:
        match = pattern.match(key)
        if match:
            odapi_name = match.group(1).replace(".", "/")
            heads[HEAD_NAMES.get(odapi_name, odapi_name)] = np.asarray(data[key])
    return heads


def _is_heatmap(name: str) -> bool:
    return name == "object_center" or name.endswith("keypoint/heatmap")


def compare_center_net(model: torch.nn.Module, data: ReferenceArrays, indices: list[int],
                       tolerances: Tolerances, label: str) -> ParityResult:
    """The levels of the module docstring, worst over ``indices`` (images of ``data``)."""
    if not isinstance(model, CenterNet):
        raise ObjdetError(f"{label}: meta.json says center_net, the config builds "
                          f"{type(model).__name__}")
    worst = WorstLevels()
    for index in indices:
        _compare_image(model, data, index, worst)
    has_keypoints = bool(model.keypoint_tasks)
    return ParityResult(
        config=label, family="center_net",
        preprocessed_max_abs=worst["pre"],
        preprocessed_tolerance=preprocessed_tolerance(tolerances, worst["pre_scale"]),
        anchors_max_abs=None,
        raw_boxes_max_abs=worst["boxes"], raw_classes_max_abs=worst["classes"],
        keypoints_max_abs=worst.get("keypoints") if has_keypoints else None,
        keypoint_scores_max_abs=worst.get("keypoint_scores") if has_keypoints else None,
        keypoint_detections_compared=(int(worst["keypoint_detections"]) if has_keypoints
                                      else None),
        postprocess_matched=worst["post"], end_to_end_matched=worst["e2e"], ok=False,
    )


def _compare_image(model: CenterNet, data: ReferenceArrays, index: int, worst: WorstLevels) -> None:
    """One image's levels into ``worst``."""
    image = torch.from_numpy(np.asarray(data[f"image_{index}"])).permute(2, 0, 1).float() / 255.0
    image_size = (int(image.shape[1]), int(image.shape[2]))
    batch = model.resize_batch([image])
    preprocessed = model.preprocess(batch.images).permute(0, 2, 3, 1)
    reference_pre = np.asarray(data[f"preprocessed_{index}"], dtype=np.float64)  # [1, H, W, 3]
    worst.high("pre", float(np.abs(preprocessed.double().numpy() - reference_pre).max()))
    worst.high("pre_scale", float(np.abs(reference_pre).max()))

    predictions = model.predict(batch.images)
    heads = _heads(data, index)
    missing = sorted(set(predictions) - set(heads))
    if missing:
        raise ObjdetError(f"reference image {index}: no head_* arrays for {missing}")
    for name, reference in heads.items():
        difference = relative_max_abs(predictions[name].permute(0, 2, 3, 1), reference)
        worst.high("classes" if _is_heatmap(name) else "boxes", difference)
    fed = {name: torch.from_numpy(reference).permute(0, 3, 1, 2) for name, reference in heads.items()}

    expected = reference_detections(data, index)
    for key, raw in (("post", fed), ("e2e", predictions)):
        detection = model.postprocess(raw, batch.resized_sizes, batch.original_sizes)[0]
        found = detections_to_reference_form(detection, image_size)
        worst.low(key, matched_share(expected, found))
        if model.keypoint_tasks:
            classes = {task.class_id for task in model.keypoint_tasks}
            _compare_keypoints(data, index, expected, found, detection, image_size, classes,
                               worst)


def _compare_keypoints(data: ReferenceArrays, index: int, expected: dict[str, np.ndarray],
                       found: dict[str, np.ndarray], detection: dict[str, Tensor],
                       image_size: tuple[int, int], classes: set[int],
                       worst: WorstLevels) -> None:
    """Into ``worst``: the keypoints' coordinate and score differences on the reference's
    detections ``found`` reproduces, and how many of those are of a keypoint task's
    ``classes`` (0-based; the others have zero keypoints on both sides)."""
    count = len(expected["boxes"])
    height, width = image_size
    reference = np.asarray(data[f"detection_keypoints_{index}"])[0, :count]  # [D, K, 2] y, x
    reference_xy = reference[..., ::-1] * np.array([width, height])  # pixels
    reference_scores = np.asarray(data[f"detection_keypoint_scores_{index}"])[0, :count]
    pairs, _ = matched_pairs(expected, found)
    keypoints = detection["keypoints"].double().numpy()  # [D', K, 2] (x, y) pixels
    scores = detection["keypoints_scores"].double().numpy()  # [D', K]
    for reference_index, found_index in pairs:
        worst.high("keypoints", float(np.abs(
            keypoints[found_index] - reference_xy[reference_index]).max()) / max(height, width))
        worst.high("keypoint_scores", float(np.abs(
            scores[found_index] - reference_scores[reference_index]).max()))
    if not pairs:
        worst.high("keypoints", float("inf") if count else 0.0)
        worst.high("keypoint_scores", float("inf") if count else 0.0)
    worst.low("keypoint_detections", float(sum(
        int(expected["classes"][reference_index]) in classes for reference_index, _ in pairs)))
