"""Compare an objdet SSD with the OD API's own model, level by level.

A *reference directory* is what ``benchmarks/odapi_reference/dump_reference.py`` writes in the
OD API's TensorFlow environment: ``pipeline.config``, the TF2 checkpoint
``checkpoint/ckpt-0``, ``reference.npz`` (per image ``i``: ``image_i`` uint8 HWC,
``preprocessed_i`` NHWC, ``anchors_i``, ``box_encodings_i``,
``class_predictions_with_background_i``, ``detection_boxes_i`` normalized (ymin, xmin, ymax,
xmax), ``detection_scores_i``, ``detection_classes_i`` 0-based, ``num_detections_i``) and
``meta.json``. :func:`compare_with_reference` imports the checkpoint into objdet's model
for that config and measures each level:

- preprocessed image, anchors: max |Δ| (anchors normalized to the canvas). The preprocessed
  bound is 1e-5 or two float32 ulps of the reference's largest value, whichever is larger:
  ResNet's input is on the 0..255 scale, where one ulp is 1.5e-5 and objdet, whose images
  are in [0, 1], rounds in other places than TensorFlow;
- raw box encodings and class logits: max |Δ| divided by the reference's max |value|;
- post-processing: objdet's post-processing fed the OD API's raw predictions, against the
  OD API's detections; end to end: objdet's own detections against the OD API's. Both as
  the share of the OD API's top detections objdet reproduces (same class, IoU >= 0.99,
  |Δscore| <= 1e-4), so that ties in NMS order do not count as differences.

Faster R-CNN / Mask R-CNN (:mod:`~objdet.models.checkpoints.parity_faster_rcnn`) add the
proposals, the second stage's raw outputs and the masks; CenterNet
(:mod:`~objdet.models.checkpoints.parity_center_net`) compares its heads and keypoints. The
reference directory's ``meta.json`` names the family (``"family"``, SSD when absent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

import objdet.config
from objdet.errors import ObjdetError
from objdet.models.checkpoints.importer import load_tf2_checkpoint

TOP_DETECTIONS = 100
# reference.npz as np.load gives it (an NpzFile is a Mapping), or a dict of its arrays
ReferenceArrays = Mapping[str, np.ndarray]
MATCH_IOU, MATCH_SCORE = 0.99, 1e-4


@dataclass(frozen=True)
class Tolerances:
    preprocessed: float = 1e-5
    anchors: float = 1e-5
    raw: float = 1e-4  # relative to the reference's scale
    postprocess_matched: float = 0.99
    end_to_end_matched: float = 0.95
    proposals_matched: float = 0.99  # from the OD API's RPN outputs
    end_to_end_proposals_matched: float = 0.95
    masks_mean_abs: float = 1e-3  # masks reframed to the image, probabilities
    keypoint_coordinates: float = 1e-3  # of the image's longer side
    keypoint_scores: float = 1e-4


@dataclass
class ParityResult:
    """Each level's worst value over the images. ``raw_boxes`` / ``raw_classes``: the SSD's
    box encodings / class logits, Faster R-CNN's RPN box encodings / objectness, CenterNet's
    box and keypoint regression / offset heads / center and keypoint heatmap logits. Fields a
    family lacks are None; ``failures`` names each level outside its tolerance."""

    config: str
    preprocessed_max_abs: float
    preprocessed_tolerance: float
    anchors_max_abs: float | None
    raw_boxes_max_abs: float
    raw_classes_max_abs: float
    postprocess_matched: float
    end_to_end_matched: float
    ok: bool
    family: str = "ssd"
    proposals_matched: float | None = None
    end_to_end_proposals_matched: float | None = None
    second_stage_boxes_max_abs: float | None = None
    second_stage_classes_max_abs: float | None = None
    mask_head_max_abs: float | None = None
    masks_mean_abs: float | None = None
    keypoints_max_abs: float | None = None
    keypoint_scores_max_abs: float | None = None
    keypoint_detections_compared: int | None = None  # fewest on an image, of a task's class
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def _box_iou(boxes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of normalized (ymin, xmin, ymax, xmax) boxes. Where both boxes are
    empty (CenterNet boxes clipped to a line), 1 if they coincide within 1e-3 (of the image
    size), else 0."""
    top_left = np.maximum(boxes[:, None, :2], other[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], other[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clip(0).prod(-1)
    other_area = (other[:, 2:] - other[:, :2]).clip(0).prod(-1)
    union = area[:, None] + other_area[None, :] - intersection
    coincide = np.abs(boxes[:, None, :] - other[None, :, :]).max(-1) <= 1e-3
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), coincide.astype(float))


def matched_pairs(reference: dict[str, np.ndarray], found: dict[str, np.ndarray],
                  top: int = TOP_DETECTIONS) -> tuple[list[tuple[int, int]], int]:
    """The reference's ``top`` best detections paired one to one with ``found``'s (same
    class, IoU >= 0.99, |Δscore| <= 1e-4): ``[(reference index, found index)]`` and how many
    reference detections were looked at. Both hold ``boxes [N, 4]`` (ymin, xmin, ymax, xmax,
    one frame), ``scores [N]`` and ``classes [N]`` (0-based); without ``scores``/``classes``
    (proposals) boxes alone are matched."""
    count = len(reference["boxes"])
    scores = reference.get("scores", np.zeros(count))
    order = np.argsort(-scores, kind="stable")[:top]
    found_count = len(found["boxes"])
    if order.size == 0 or found_count == 0:
        return [], int(order.size)
    iou = _box_iou(reference["boxes"][order], found["boxes"])
    taken = np.zeros(found_count, dtype=bool)
    pairs = []
    for row, index in enumerate(order):
        candidates = (iou[row] >= MATCH_IOU) & ~taken
        if "classes" in reference:
            candidates &= found["classes"] == reference["classes"][index]
        if "scores" in reference:
            candidates &= np.abs(found["scores"] - reference["scores"][index]) <= MATCH_SCORE
        hits = np.flatnonzero(candidates)
        if hits.size:
            best = int(hits[np.argmax(iou[row][hits])])
            taken[best] = True
            pairs.append((int(index), best))
    return pairs, int(order.size)


def matched_share(reference: dict[str, np.ndarray], found: dict[str, np.ndarray],
                  top: int = TOP_DETECTIONS) -> float:
    """Share of the reference's top detections that ``found`` reproduces one to one
    (:func:`matched_pairs`). With no reference detections the share is 1 if ``found`` has
    none either, else 0."""
    pairs, looked_at = matched_pairs(reference, found, top)
    if looked_at == 0:
        return 1.0 if len(found["boxes"]) == 0 else 0.0
    return len(pairs) / looked_at


def relative_max_abs(found: Tensor, expected: np.ndarray) -> float:
    found_array = found.detach().cpu().numpy().astype(np.float64)
    if found_array.shape != expected.shape:
        raise ObjdetError(f"shape {found_array.shape} differs from the reference's {expected.shape}")
    scale = max(float(np.abs(expected).max()), 1e-12) if expected.size else 1.0
    return float(np.abs(found_array - expected).max() / scale) if expected.size else 0.0


def detections_to_reference_form(
    detection: dict[str, Tensor], image_size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """objdet detections (x1, y1, x2, y2 input pixels, ids 1..N) -> normalized yx, 0-based."""
    height, width = image_size
    boxes = detection["boxes"].detach().cpu().double().numpy()
    normalized = boxes[:, [1, 0, 3, 2]] / np.array([height, width, height, width])
    return {
        "boxes": normalized,
        "scores": detection["scores"].detach().cpu().double().numpy(),
        "classes": detection["labels"].detach().cpu().numpy().astype(np.int64) - 1,
    }


def reference_detections(data: ReferenceArrays, index: int) -> dict[str, np.ndarray]:
    count = int(np.asarray(data[f"num_detections_{index}"]).reshape(-1)[0])
    return {
        "boxes": np.asarray(data[f"detection_boxes_{index}"]).reshape(-1, 4)[:count].astype(np.float64),
        "scores": np.asarray(data[f"detection_scores_{index}"]).reshape(-1)[:count].astype(np.float64),
        "classes": np.asarray(data[f"detection_classes_{index}"]).reshape(-1)[:count].astype(np.int64),
    }


def _anchors_normalized(anchors: Tensor, canvas: tuple[int, int]) -> np.ndarray:
    """objdet anchors (x1, y1, x2, y2 canvas pixels) -> normalized (ymin, xmin, ymax, xmax)."""
    height, width = canvas
    array = anchors.detach().cpu().double().numpy()
    return array[:, [1, 0, 3, 2]] / np.array([height, width, height, width])


def _reference_anchors(data: ReferenceArrays, index: int, meta: dict[str, Any], canvas: tuple[int, int]) -> np.ndarray:
    anchors = np.asarray(data[f"anchors_{index}"], dtype=np.float64).reshape(-1, 4)
    if meta.get("anchors", {}).get("normalized", True):
        return anchors
    height, width = canvas
    return anchors / np.array([height, width, height, width])


def image_indices(data: ReferenceArrays) -> list[int]:
    """The image numbers ``i`` of a reference's ``image_i`` arrays."""
    return sorted(int(key.rsplit("_", 1)[1]) for key in data if key.startswith("image_"))


class WorstLevels:
    """Each level's worst value over the images: the largest difference, the smallest
    matched share."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def high(self, key: str, value: float) -> None:
        self.values[key] = max(self.values.get(key, value), value)

    def low(self, key: str, value: float) -> None:
        self.values[key] = min(self.values.get(key, value), value)

    def get(self, key: str) -> float | None:
        return self.values.get(key)

    def __getitem__(self, key: str) -> float:
        return self.values[key]


def finish(result: ParityResult, tolerances: Tolerances) -> ParityResult:
    """Sets ``failures`` (each level outside its tolerance, with its value) and ``ok``."""
    limits = [  # (field, tolerance, True: the value must be at most it)
        ("preprocessed_max_abs", result.preprocessed_tolerance, True),
        ("anchors_max_abs", tolerances.anchors, True),
        ("raw_boxes_max_abs", tolerances.raw, True),
        ("raw_classes_max_abs", tolerances.raw, True),
        ("proposals_matched", tolerances.proposals_matched, False),
        ("end_to_end_proposals_matched", tolerances.end_to_end_proposals_matched, False),
        ("second_stage_boxes_max_abs", tolerances.raw, True),
        ("second_stage_classes_max_abs", tolerances.raw, True),
        ("masks_mean_abs", tolerances.masks_mean_abs, True),
        ("keypoints_max_abs", tolerances.keypoint_coordinates, True),
        ("keypoint_scores_max_abs", tolerances.keypoint_scores, True),
        ("postprocess_matched", tolerances.postprocess_matched, False),
        ("end_to_end_matched", tolerances.end_to_end_matched, False),
    ]
    failures = []
    if result.keypoint_detections_compared == 0:
        failures.append("keypoint_detections_compared 0 (no detection of a keypoint class)")
    for name, limit, at_most in limits:
        value = getattr(result, name)
        if value is None:
            continue
        if not np.isfinite(value) or (value > limit if at_most else value < limit):
            failures.append(f"{name} {value:.3g} ({'>' if at_most else '<'} {limit:.3g})")
    result.failures = failures
    result.ok = not failures
    return result


def preprocessed_tolerance(tolerances: Tolerances, scale: float) -> float:
    """1e-5, or two float32 ulps of the reference's largest input value (ResNet's 0..255)."""
    return max(tolerances.preprocessed, 2 * float(np.spacing(np.float32(scale))))


@torch.no_grad()
def compare_with_reference(
    reference_dir: str | Path, tolerances: Tolerances = Tolerances(), name: str | None = None
) -> ParityResult:
    """Import ``reference_dir``'s checkpoint into objdet's model of its config; measure each
    level on every image of ``reference.npz`` (the worst image counts)."""
    from objdet.models import build_model

    directory = Path(reference_dir)
    for required in ("pipeline.config", "meta.json", "reference.npz"):
        if not (directory / required).is_file():
            raise ObjdetError(f"{directory / required}: missing; a reference directory is what "
                              "benchmarks/odapi_reference/dump_reference.py writes")
    config = objdet.config.load(directory / "pipeline.config")
    meta = json.loads((directory / "meta.json").read_text())
    model = build_model(config.model).eval()
    load_tf2_checkpoint(model, directory / "checkpoint" / "ckpt-0", "full")
    data = np.load(directory / "reference.npz")
    indices = image_indices(data)
    label = name or str(meta.get("config", directory.name))
    family = meta.get("family", "ssd")
    if family == "ssd":
        result = _compare_ssd(model, data, indices, meta, tolerances, label)
    elif family == "faster_rcnn":
        from objdet.models.checkpoints.parity_faster_rcnn import compare_faster_rcnn

        result = compare_faster_rcnn(model, data, indices, tolerances, label)
    elif family == "center_net":
        from objdet.models.checkpoints.parity_center_net import compare_center_net

        result = compare_center_net(model, data, indices, tolerances, label)
    else:
        raise ObjdetError(f"{directory / 'meta.json'}: family {family!r}; expected ssd, "
                          "faster_rcnn or center_net")
    return finish(result, tolerances)


def _compare_ssd(model: torch.nn.Module, data: ReferenceArrays, indices: list[int], meta: dict[str, Any],
                 tolerances: Tolerances, label: str) -> ParityResult:
    from objdet.models.meta_arch.ssd import SSD, FeatureExtractor

    if not isinstance(model, SSD):
        raise ObjdetError(f"{label}: meta.json says ssd, the config builds {type(model).__name__}")
    worst = {"pre": 0.0, "anchors": 0.0, "boxes": 0.0, "classes": 0.0, "post": 1.0, "e2e": 1.0,
             "pre_scale": 0.0}
    for index in indices:
        image = torch.from_numpy(np.asarray(data[f"image_{index}"])).permute(2, 0, 1).float() / 255.0
        batch = model.resize_batch([image])
        canvas = (int(batch.images.shape[2]), int(batch.images.shape[3]))
        extractor = cast(FeatureExtractor, model.feature_extractor)
        preprocessed = extractor.preprocess(batch.images).permute(0, 2, 3, 1)
        reference_pre = np.asarray(data[f"preprocessed_{index}"], dtype=np.float64)
        worst["pre"] = max(worst["pre"], float(np.abs(preprocessed.double().numpy() - reference_pre).max()))
        worst["pre_scale"] = max(worst["pre_scale"], float(np.abs(reference_pre).max()))
        predictions = model.predict(batch.images)
        anchors = _anchors_normalized(predictions["anchors"], canvas)
        worst["anchors"] = max(worst["anchors"], float(np.abs(
            anchors - _reference_anchors(data, index, meta, canvas)).max()))
        reference_boxes = np.asarray(data[f"box_encodings_{index}"], dtype=np.float64)
        reference_classes = np.asarray(data[f"class_predictions_with_background_{index}"], dtype=np.float64)
        worst["boxes"] = max(worst["boxes"], relative_max_abs(predictions["box_encodings"], reference_boxes))
        worst["classes"] = max(worst["classes"], relative_max_abs(predictions["class_logits"], reference_classes))
        expected = reference_detections(data, index)
        image_size = (int(image.shape[1]), int(image.shape[2]))
        fed = {
            "box_encodings": torch.from_numpy(reference_boxes).float(),
            "class_logits": torch.from_numpy(reference_classes).float(),
            "anchors": predictions["anchors"],
        }
        post = model.postprocess(fed, batch.resized_sizes, batch.original_sizes)[0]
        worst["post"] = min(worst["post"], matched_share(expected, detections_to_reference_form(post, image_size)))
        own = cast(list[dict[str, Tensor]], model([image]))[0]
        worst["e2e"] = min(worst["e2e"], matched_share(expected, detections_to_reference_form(own, image_size)))
    return ParityResult(
        config=label, preprocessed_max_abs=worst["pre"],
        preprocessed_tolerance=preprocessed_tolerance(tolerances, worst["pre_scale"]),
        anchors_max_abs=worst["anchors"],
        raw_boxes_max_abs=worst["boxes"], raw_classes_max_abs=worst["classes"],
        postprocess_matched=worst["post"], end_to_end_matched=worst["e2e"], ok=False,
    )
