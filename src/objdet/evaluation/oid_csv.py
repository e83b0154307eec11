"""Open Images challenge evaluation from the challenge's CSV files (oid_challenge_evaluation.py).

Inputs, as published on the Open Images challenge site (coordinates normalized to [0, 1]):

- boxes: ``ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf, ...``
- image-level labels: ``ImageID, LabelName, Confidence`` (1 verified present, 0 absent)
- predictions: ``ImageID, LabelName, Score, XMin, XMax, YMin, YMax`` or, for instance
  segmentation, ``ImageID, LabelName, Score, ImageWidth, ImageHeight, Mask``
- optional segmentation ground truth: the box columns plus ``ImageWidth, ImageHeight, Mask``;
  joined to the boxes on (ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf), as the
  OD API's outer merge does. ``Mask`` is base64 of zlib-compressed COCO RLE.

Labels missing from the class label map are errors naming file and line (the OD API raised a
bare KeyError). Prediction images without any ground truth are skipped and counted (the OD
API silently dropped them too: such an image verifies no class).
"""

from __future__ import annotations

import base64
import csv
import os
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from objdet.errors import DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.open_images import OpenImagesChallengeEvaluator
from objdet.structures.detections import Detections

_BOX_KEYS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")


@dataclass
class ChallengeResult:
    metrics: dict[str, float] = field(default_factory=dict)
    num_images: int = 0
    num_prediction_images_without_ground_truth: int = 0


def _rows(
    path: str | os.PathLike[str], required: tuple[str, ...]
) -> Iterator[tuple[str, dict[str, str]]]:
    """``(file:line, row)`` for each CSV row; the header must have ``required`` columns."""
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [name for name in required if name not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing columns {missing}; header is {reader.fieldnames}")
        for line_number, row in enumerate(reader, start=2):
            yield f"{path}:{line_number}", row


def _number(row: dict[str, str], column: str, where: str) -> float:
    try:
        return float(row[column])
    except (TypeError, ValueError):
        raise DataError(f"{where}: {column} must be a number, got {row[column]!r}") from None


def _class_id(class_ids: dict[str, int], label: str, where: str) -> int:
    if label not in class_ids:
        raise DataError(f"{where}: LabelName {label!r} is not in the class label map")
    return class_ids[label]


def decode_oid_mask(encoded: str, height: int, width: int, where: str) -> np.ndarray:
    """``uint8 [H, W]`` from base64(zlib(COCO compressed RLE counts))."""
    try:
        counts = zlib.decompress(base64.b64decode(encoded))
    except (ValueError, zlib.error) as error:
        raise DataError(f"{where}: Mask is not base64 zlib data: {error}") from None
    runs = _rle_counts(counts)
    if sum(runs) != height * width:
        raise DataError(f"{where}: Mask covers {sum(runs)} pixels, image is {height}x{width}")
    values = np.zeros(len(runs), dtype=np.uint8)
    values[1::2] = 1  # runs alternate background, foreground
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T.copy()  # COCO RLE is column-major


def _rle_counts(data: bytes) -> list[int]:
    """COCO's compressed RLE string (LEB128-like, 5 bits a char, deltas from run i-2)."""
    runs: list[int] = []
    position = 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            char = data[position] - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position, shift = position + 1, shift + 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _masks_by_box(
    path: str | os.PathLike[str] | None,
) -> dict[tuple[str, ...], tuple[str, int, int]]:
    if path is None:
        return {}
    masks = {}
    for where, row in _rows(path, (*_BOX_KEYS, "ImageWidth", "ImageHeight", "Mask")):
        size = (int(_number(row, "ImageHeight", where)), int(_number(row, "ImageWidth", where)))
        masks[tuple(row[key] for key in _BOX_KEYS)] = (row["Mask"], *size)
    return masks


def load_ground_truth(
    boxes_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    class_ids: dict[str, int],
    segmentation_path: str | os.PathLike[str] | None = None,
) -> dict[str, GroundTruth]:
    """Image id -> ground truth (boxes normalized xyxy, image-level labels, masks)."""
    masks = _masks_by_box(segmentation_path)
    objects: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for where, row in _rows(boxes_path, _BOX_KEYS):
        box = [_number(row, key, where) for key in ("XMin", "YMin", "XMax", "YMax")]
        # The OD API casts IsGroupOf to int then bool: any non-zero (also -1) is group-of.
        group_of = int(_number(row, "IsGroupOf", where)) != 0
        mask = masks.pop(tuple(row[key] for key in _BOX_KEYS), None)
        objects[row["ImageID"]].append(
            (box, _class_id(class_ids, row["LabelName"], where), group_of, mask, where)
        )
    if masks:
        raise DataError(
            f"{segmentation_path}: {len(masks)} masks match no box row (first: {next(iter(masks))})"
        )
    positive: dict[str, list[int]] = defaultdict(list)
    negative: dict[str, list[int]] = defaultdict(list)
    for where, row in _rows(labels_path, ("ImageID", "LabelName", "Confidence")):
        target = positive if _number(row, "Confidence", where) == 1.0 else negative
        target[row["ImageID"]].append(_class_id(class_ids, row["LabelName"], where))
    image_ids = sorted(set(objects) | set(positive) | set(negative))
    return {
        image_id: _image_ground_truth(
            objects.get(image_id, []),
            positive.get(image_id, []),
            negative.get(image_id, []),
            with_masks=segmentation_path is not None,
        )
        for image_id in image_ids
    }


def _image_ground_truth(
    objects: list[tuple[Any, ...]], positive: list[int], negative: list[int], with_masks: bool
) -> GroundTruth:
    masks = None
    if with_masks:
        sizes = {(m[1], m[2]) for _, _, _, m, _ in objects if m is not None}
        height, width = sizes.pop() if sizes else (1, 1)
        masks = (
            np.stack(
                [
                    decode_oid_mask(m[0], m[1], m[2], where)
                    if m is not None
                    else np.zeros((height, width), np.uint8)
                    for _, _, _, m, where in objects
                ]
            )
            if objects
            else np.zeros((0, height, width), np.uint8)
        )
    return GroundTruth(
        boxes=np.array([o[0] for o in objects], dtype=np.float64).reshape(-1, 4),
        labels=np.array([o[1] for o in objects], dtype=np.int64),
        group_of=np.array([o[2] for o in objects], dtype=bool),
        masks=masks,
        image_labels=np.array(positive, dtype=np.int64),
        negative_image_labels=np.array(negative, dtype=np.int64),
    )


def _mask_box(mask: np.ndarray) -> list[float]:
    """Normalized (x1, y1, x2, y2) of a mask's enclosing pixels; zeros when empty."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    height, width = mask.shape
    return [
        columns.min() / width,
        rows.min() / height,
        (columns.max() + 1) / width,
        (rows.max() + 1) / height,
    ]


def load_predictions(
    path: str | os.PathLike[str], class_ids: dict[str, int]
) -> dict[str, Detections]:
    """Image id -> detections; rows with a Mask column take their boxes from the mask."""
    per_image: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for where, row in _rows(path, ("ImageID", "LabelName", "Score")):
        mask = None
        if row.get("Mask"):
            height = int(_number(row, "ImageHeight", where))
            mask = decode_oid_mask(
                row["Mask"], height, int(_number(row, "ImageWidth", where)), where
            )
            box = _mask_box(mask)
        else:
            box = [_number(row, key, where) for key in ("XMin", "YMin", "XMax", "YMax")]
        label = _class_id(class_ids, row["LabelName"], where)
        per_image[row["ImageID"]].append((box, _number(row, "Score", where), label, mask))
    return {
        image_id: Detections(
            boxes=np.array([r[0] for r in rows], dtype=np.float64),
            scores=np.array([r[1] for r in rows], dtype=np.float64),
            labels=np.array([r[2] for r in rows], dtype=np.int64),
            masks=np.stack([r[3] for r in rows]) if rows[0][3] is not None else None,
        )
        for image_id, rows in sorted(per_image.items())
    }


def evaluate_challenge(
    boxes_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    class_labelmap_path: str | os.PathLike[str],
    predictions_path: str | os.PathLike[str],
    segmentation_path: str | os.PathLike[str] | None = None,
) -> ChallengeResult:
    """Open Images challenge metrics (detection, or instance segmentation with masks)."""
    from objdet.structures.label_map import load_label_map

    label_map = load_label_map(class_labelmap_path)
    class_ids = {item.name: item.id for item in label_map.items}
    categories = [{"id": item.id, "name": item.name} for item in label_map.items]
    evaluator = OpenImagesChallengeEvaluator(
        categories, evaluate_masks=segmentation_path is not None
    )
    ground_truth = load_ground_truth(boxes_path, labels_path, class_ids, segmentation_path)
    for image_id, image_ground_truth in ground_truth.items():
        evaluator.add_ground_truth(image_id, image_ground_truth)
    result = ChallengeResult(num_images=len(ground_truth))
    for image_id, detections in load_predictions(predictions_path, class_ids).items():
        if image_id not in ground_truth:
            result.num_prediction_images_without_ground_truth += 1
            continue
        evaluator.add_detections(image_id, detections)
    result.metrics = evaluator.evaluate()
    return result
