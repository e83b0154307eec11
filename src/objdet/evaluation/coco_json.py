"""COCO evaluation straight from JSON files: ``evaluate_coco_json(gt, dt, iou_type)``.

Columns are pulled out of the parsed JSON in one pass each (no per-annotation objects), so
loading 500k detections costs about what parsing them does. Rules, as pycocotools':

- Ground truth ``area`` decides the area range (not the box area); ``iscrowd`` makes an
  object ignored (missing ``iscrowd`` reads as 0, where pycocotools raises KeyError).
- A detection's area is taken from its ``bbox`` (``w * h``) when the *first* detection has a
  non-empty ``bbox``; otherwise from its mask (segm) or its keypoints' extent (keypoints),
  as pycocotools' ``loadRes`` does. Detections without ``segmentation`` are evaluated on
  their box as a polygon in segm mode, as pycocotools does.
- Detections with tied scores keep their file order (pycocotools' stable mergesort).

Detections of a category id the ground truth does not list are dropped, as pycocotools
drops them (a model with more classes than the file's categories predicts such ids), but
counted and reported in one warning.

Deliberate differences, all raising ``DataError`` where pycocotools crashes deep inside or
silently drops data: detections for an image id absent from the ground truth (pycocotools
asserts), ground truth of a category id absent from its categories (pycocotools drops
it), ground truth on an unknown image, a repeated image, category or annotation id (named with both positions;
pycocotools keeps one silently), NaN/infinite scores or boxes, negative box sizes,
masks whose size differs from the image's. An empty detection list is valid (every category
with ground truth then has AP 0; pycocotools crashes); no ground truth at all gives -1s.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from objdet.errors import DataError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

logger = logging.getLogger(__name__)

try:  # orjson parses ~3x faster than json; optional (pure speed, same result).
    import orjson

    _fast_parse: Callable[[bytes], Any] | None = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_parse = None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file, raising ``DataError`` naming the file on failure."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror or error}") from error
    if _fast_parse is not None:
        try:
            return _fast_parse(raw)
        except ValueError:
            pass  # e.g. NaN, which orjson rejects and json (like pycocotools) reads
    try:
        return json.loads(raw)
    except ValueError as error:
        raise DataError(f"{path}: not valid JSON: {error}") from error


def column(records: Sequence[Any], key: str, where: str) -> list[Any]:
    """``[record[key] for record in records]``, fast, naming the first bad record."""
    try:
        return list(map(itemgetter(key), records))
    except (KeyError, TypeError, IndexError):
        for index, record in enumerate(records):
            if not isinstance(record, dict) or key not in record:
                raise DataError(
                    f"{where}[{index}]: expected an object with {key!r}, got {str(record)[:100]}"
                ) from None
        raise


def float_column(values: list[Any], where: str, what: str) -> FloatArray:
    """float64 array of a list of numbers, naming the first non-number."""
    try:
        return np.fromiter(values, dtype=np.float64, count=len(values))
    except (TypeError, ValueError):
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{where}[{index}]: {what} must be a number, got {value!r}") from None
        raise


def box_column(values: list[Any], where: str) -> FloatArray:
    """``[N, 4]`` float64 COCO boxes ``[x, y, w, h]``: finite, with w, h >= 0."""
    if not values:
        return np.zeros((0, 4))
    try:
        boxes = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        boxes = np.zeros((0, 0))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        bad = next(i for i, v in enumerate(values) if not isinstance(v, list) or len(v) != 4)
        raise DataError(f"{where}[{bad}]: bbox must be [x, y, w, h], got {values[bad]!r}")
    invalid = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if invalid.any():
        bad = int(np.flatnonzero(invalid)[0])
        raise DataError(
            f"{where}[{bad}]: bbox must be finite [x, y, w, h] with w, h >= 0, "
            f"got {values[bad]!r}"
        )
    return boxes


def sorted_unique_ids(values: list[Any], path: str | os.PathLike[str], what: str) -> list[Any]:
    """The ids of ``what`` (``"images"``, ...) sorted; they must be distinct integers or
    strings (not both). A repeat is a ``DataError`` naming the id and both positions, e.g.
    ``gt.json: images[7]: id 42 repeats images[3]; ids must be unique``.
    """
    first: dict[Any, int] = {}
    for index, value in enumerate(values):
        if type(value) not in (int, str):
            raise DataError(
                f"{path}: {what}[{index}]: id must be an integer or a string, got {value!r}"
            )
        if first.setdefault(value, index) != index:
            raise DataError(
                f"{path}: {what}[{index}]: id {value!r} repeats {what}[{first[value]}]; "
                "ids must be unique"
            )
    try:
        return sorted(first)
    except TypeError:
        raise DataError(f"{path}: {what}: ids mix integers and strings") from None


def index_column(values: list[Any], lookup: dict[Any, int], where: str, what: str) -> IntArray:
    """Positions of ids in ``lookup``, naming the first unknown id."""
    try:
        return np.fromiter(map(lookup.__getitem__, values), dtype=np.int64, count=len(values))
    except (KeyError, TypeError):
        for index, value in enumerate(values):
            if not isinstance(value, (int, str)) or value not in lookup:
                known = sorted(lookup)[:5]
                raise DataError(
                    f"{where}[{index}]: {what} {value!r} is not in the ground truth "
                    f"(which has e.g. {known})"
                ) from None
        raise


@dataclass
class GroundTruthFile:
    """A COCO ground-truth JSON as columns.

    Attributes:
        image_ids: sorted unique image ids (pycocotools' evaluation order).
        image_sizes: image id -> (height, width), where the file gives them.
        category_ids: sorted category ids; category_names: id -> name.
        image_index, category_index: ``[G]`` int64 positions in the two lists above.
        boxes: ``[G, 4]`` float64 ``[x, y, w, h]``; areas: ``[G]`` float64; crowd: ``[G]`` bool.
        ids: ``[G]`` int64 annotation ids.
        annotations: the parsed annotation objects (segmentation / keypoints read lazily).
    """

    path: str
    image_ids: list[Any]
    image_sizes: dict[Any, tuple[int, int]]
    category_ids: list[int]
    category_names: dict[int, str]
    image_index: IntArray
    category_index: IntArray
    boxes: FloatArray
    areas: FloatArray
    crowd: NDArray[np.bool_]
    ids: IntArray
    annotations: list[dict[str, Any]]


def load_ground_truth(path: str | os.PathLike[str]) -> GroundTruthFile:
    """Read a COCO ground-truth file (``images``, ``annotations``, ``categories``)."""
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise DataError(f"{path}: expected a COCO object with 'images' and 'categories'")
    images, categories = data["images"], data["categories"]
    annotations = data.get("annotations", [])
    image_ids = sorted_unique_ids(column(images, "id", f"{path}: images"), path, "images")
    sizes = {
        image["id"]: (int(image["height"]), int(image["width"]))
        for image in images
        if "height" in image and "width" in image
    }
    category_ids = sorted_unique_ids(
        column(categories, "id", f"{path}: categories"), path, "categories")
    names = {c["id"]: str(c.get("name", c["id"])) for c in categories}
    where = f"{path}: annotations"
    annotation_ids = column(annotations, "id", where)
    if not all(type(value) is int for value in annotation_ids):
        bad = next(i for i, value in enumerate(annotation_ids) if type(value) is not int)
        raise DataError(f"{where}[{bad}]: id must be an integer, got {annotation_ids[bad]!r}")
    ids = np.asarray(annotation_ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        sorted_unique_ids(annotation_ids, path, "annotations")  # raises, naming the repeat
    crowd = [a.get("iscrowd", 0) for a in annotations]
    return GroundTruthFile(
        path=str(path),
        image_ids=image_ids,
        image_sizes=sizes,
        category_ids=category_ids,
        category_names=names,
        image_index=index_column(
            column(annotations, "image_id", where), {v: i for i, v in enumerate(image_ids)},
            where, "image_id"),
        category_index=index_column(
            column(annotations, "category_id", where),
            {v: i for i, v in enumerate(category_ids)}, where, "category_id"),
        boxes=box_column(column(annotations, "bbox", where), where),
        areas=float_column(column(annotations, "area", where), where, "area"),
        crowd=np.asarray(crowd, dtype=bool).reshape(-1),
        ids=ids,
        annotations=annotations,
    )


@dataclass
class DetectionFile:
    """A COCO results JSON (a list of detections) as columns.

    Attributes:
        image_index, category_index: ``[D]`` int64 positions in the ground truth's lists.
        scores: ``[D]`` float64; boxes: ``[D, 4]`` ``[x, y, w, h]`` or None if not given.
        box_areas: True when pycocotools would take areas from the boxes (see module doc).
        records: the parsed detection objects.
        unknown_categories: category id -> how many detections of it were dropped (ids the
            ground truth does not list; they are not among the ``D``).
    """

    image_index: IntArray
    category_index: IntArray
    scores: FloatArray
    boxes: FloatArray | None
    box_areas: bool
    records: list[dict[str, Any]]
    unknown_categories: dict[Any, int]


def load_detections(
    path: str | os.PathLike[str], ground_truth: GroundTruthFile, iou_type: str
) -> DetectionFile:
    """Read a COCO results file against its ground truth."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    where = f"{path}: detections"
    box_areas = bool(data) and isinstance(data[0], dict) and bool(data[0].get("bbox"))
    if iou_type == "bbox" and data and not box_areas:
        raise DataError(f"{where}[0]: bbox evaluation needs a non-empty 'bbox' in detections")
    scores = float_column(column(data, "score", where), where, "score")
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise DataError(f"{where}[{bad}]: score must be finite, got {scores[bad]}")
    images = {value: index for index, value in enumerate(ground_truth.image_ids)}
    categories = {value: index for index, value in enumerate(ground_truth.category_ids)}
    category_ids = column(data, "category_id", where)
    # Every column is checked whole (errors name positions in the file), then detections of
    # unknown categories (position -1) are dropped.
    unknown = {v for v in category_ids if type(v) in (int, str) and v not in categories}
    category_index = index_column(
        category_ids, {**categories, **dict.fromkeys(unknown, -1)}, where, "category_id")
    detections = DetectionFile(
        image_index=index_column(column(data, "image_id", where), images, where, "image_id"),
        category_index=category_index,
        scores=scores,
        boxes=box_column(column(data, "bbox", where), where) if box_areas else None,
        box_areas=box_areas,
        records=data,
        unknown_categories={},
    )
    if unknown:
        detections = _without_unknown_categories(detections, category_ids, path, ground_truth)
    return detections


def _without_unknown_categories(
    detections: DetectionFile, category_ids: list[Any], path: str | os.PathLike[str],
    ground_truth: GroundTruthFile,
) -> DetectionFile:
    """``detections`` without those of category position -1, which are counted and warned
    about (pycocotools drops them silently: it evaluates the ground truth's categories)."""
    keep = detections.category_index >= 0
    dropped: dict[Any, int] = {}
    for value in (category_ids[i] for i in np.flatnonzero(~keep)):
        dropped[value] = dropped.get(value, 0) + 1
    logger.warning(
        "%s: dropped %d detections of category ids %s, which are not among the %d categories "
        "of %s; they are not evaluated, as by pycocotools", path, int((~keep).sum()),
        sorted(dropped, key=lambda v: (type(v) is str, v))[:20], len(ground_truth.category_ids), ground_truth.path)
    return DetectionFile(
        image_index=detections.image_index[keep],
        category_index=detections.category_index[keep],
        scores=detections.scores[keep],
        boxes=None if detections.boxes is None else detections.boxes[keep],
        box_areas=detections.box_areas,
        records=[record for record, kept in zip(detections.records, keep, strict=True) if kept],
        unknown_categories=dropped,
    )
