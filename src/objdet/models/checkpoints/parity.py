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
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

import objdet.config
from objdet.errors import ObjdetError
from objdet.models.checkpoints.importer import load_tf2_checkpoint

TOP_DETECTIONS = 100
MATCH_IOU, MATCH_SCORE = 0.99, 1e-4


@dataclass(frozen=True)
class Tolerances:
    preprocessed: float = 1e-5
    anchors: float = 1e-5
    raw: float = 1e-4  # relative to the reference's scale
    postprocess_matched: float = 0.99
    end_to_end_matched: float = 0.95


@dataclass
class ParityResult:
    config: str
    preprocessed_max_abs: float
    preprocessed_tolerance: float
    anchors_max_abs: float
    raw_boxes_max_abs: float
    raw_classes_max_abs: float
    postprocess_matched: float
    end_to_end_matched: float
    ok: bool

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def _box_iou(boxes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of (ymin, xmin, ymax, xmax) boxes."""
    top_left = np.maximum(boxes[:, None, :2], other[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], other[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clip(0).prod(-1)
    other_area = (other[:, 2:] - other[:, :2]).clip(0).prod(-1)
    union = area[:, None] + other_area[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def matched_share(reference: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> float:
    """Share of the reference's top detections that ``found`` reproduces one to one.

    Both hold ``boxes [N, 4]`` normalized (ymin, xmin, ymax, xmax), ``scores [N]``,
    ``classes [N]`` (0-based). With no reference detections the share is 1 if ``found`` has
    none either, else 0.
    """
    order = np.argsort(-reference["scores"], kind="stable")[:TOP_DETECTIONS]
    if order.size == 0:
        return 1.0 if found["scores"].size == 0 else 0.0
    iou = _box_iou(reference["boxes"][order], found["boxes"]) if found["scores"].size else None
    taken = np.zeros(found["scores"].size, dtype=bool)
    matched = 0
    for row, index in enumerate(order):
        if iou is None:
            break
        candidates = (
            (iou[row] >= MATCH_IOU)
            & (found["classes"] == reference["classes"][index])
            & (np.abs(found["scores"] - reference["scores"][index]) <= MATCH_SCORE)
            & ~taken
        )
        hits = np.flatnonzero(candidates)
        if hits.size:
            taken[hits[np.argmax(iou[row][hits])]] = True
            matched += 1
    return matched / order.size


def _relative_max_abs(found: Tensor, expected: np.ndarray) -> float:
    found_array = found.detach().cpu().numpy().astype(np.float64)
    if found_array.shape != expected.shape:
        raise ObjdetError(f"shape {found_array.shape} differs from the reference's {expected.shape}")
    scale = max(float(np.abs(expected).max()), 1e-12) if expected.size else 1.0
    return float(np.abs(found_array - expected).max() / scale) if expected.size else 0.0


def _detections_to_reference_form(
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


def _reference_detections(data: Any, index: int) -> dict[str, np.ndarray]:
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


def _reference_anchors(data: Any, index: int, meta: dict[str, Any], canvas: tuple[int, int]) -> np.ndarray:
    anchors = np.asarray(data[f"anchors_{index}"], dtype=np.float64).reshape(-1, 4)
    if meta.get("anchors", {}).get("normalized", True):
        return anchors
    height, width = canvas
    return anchors / np.array([height, width, height, width])


@torch.no_grad()
def compare_with_reference(
    reference_dir: str | Path, tolerances: Tolerances = Tolerances(), name: str | None = None
) -> ParityResult:
    """Import ``reference_dir``'s checkpoint into objdet's model of its config; measure each
    level on every image of ``reference.npz`` (the worst image counts)."""
    from objdet.models import build_model
    from objdet.models.meta_arch.ssd import SSD, FeatureExtractor

    directory = Path(reference_dir)
    config = objdet.config.load(directory / "pipeline.config")
    meta = json.loads((directory / "meta.json").read_text())
    model = cast(SSD, build_model(config.model)).eval()
    load_tf2_checkpoint(model, directory / "checkpoint" / "ckpt-0", "full")
    data = np.load(directory / "reference.npz")
    indices = sorted(int(key.rsplit("_", 1)[1]) for key in data.files if key.startswith("image_"))
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
        worst["boxes"] = max(worst["boxes"], _relative_max_abs(predictions["box_encodings"], reference_boxes))
        worst["classes"] = max(worst["classes"], _relative_max_abs(predictions["class_logits"], reference_classes))
        expected = _reference_detections(data, index)
        image_size = (int(image.shape[1]), int(image.shape[2]))
        fed = {
            "box_encodings": torch.from_numpy(reference_boxes).float(),
            "class_logits": torch.from_numpy(reference_classes).float(),
            "anchors": predictions["anchors"],
        }
        post = model.postprocess(fed, batch.resized_sizes, batch.original_sizes)[0]
        worst["post"] = min(worst["post"], matched_share(expected, _detections_to_reference_form(post, image_size)))
        own = cast(list[dict[str, Tensor]], model([image]))[0]
        worst["e2e"] = min(worst["e2e"], matched_share(expected, _detections_to_reference_form(own, image_size)))
    pre_tolerance = max(tolerances.preprocessed,
                        2 * float(np.spacing(np.float32(worst["pre_scale"]))))
    ok = (
        worst["pre"] <= pre_tolerance and worst["anchors"] <= tolerances.anchors
        and worst["boxes"] <= tolerances.raw and worst["classes"] <= tolerances.raw
        and worst["post"] >= tolerances.postprocess_matched
        and worst["e2e"] >= tolerances.end_to_end_matched
    )
    return ParityResult(
        config=name or str(meta.get("config", directory.name)),
        preprocessed_max_abs=worst["pre"], preprocessed_tolerance=pre_tolerance,
        anchors_max_abs=worst["anchors"],
        raw_boxes_max_abs=worst["boxes"], raw_classes_max_abs=worst["classes"],
        postprocess_matched=worst["post"], end_to_end_matched=worst["e2e"], ok=bool(ok),
    )
