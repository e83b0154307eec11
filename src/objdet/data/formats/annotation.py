"""The one place where parsed annotations become a ``Sample``: label lookup and box checks.

Every format parses its files into ``AnnotatedObject``s (absolute x1, y1, x2, y2 pixels plus
the flags the format has) and hands them to ``build_sample``. So the rules are the same for
all formats: a label missing from the label map is a ``LabelMapError``; a box with x1 > x2 or
y1 > y2, or outside the image, is a ``DataError`` naming the file and line, unless the caller
asked to skip invalid boxes, in which case the skip is recorded in a ``SkipLog``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from objdet.data.formats.image_file import ImageFile
from objdet.errors import DataError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

# Boxes may exceed the image by this many pixels: float32 round trips through normalized
# coordinates (tf.Example) move an edge that sits exactly on the border by ~1e-5 pixels.
BORDER_TOLERANCE_PIXELS = 1e-3

# Optional per-object Sample fields; a reader lists the ones its format has.
OPTIONAL_FIELDS = ("difficult", "is_crowd", "group_of", "areas", "masks", "keypoints")


@dataclass
class AnnotatedObject:
    """One object as parsed from a source file, before label lookup and validation.

    ``box`` is (x1, y1, x2, y2) in absolute pixels. ``location`` ("file:line" or
    "file: annotation id 7") names where it came from, for error messages.
    ``mask`` is ``[H, W]`` uint8 0/1; ``keypoints`` is ``[K, 3]`` float (x, y, visible) with
    NaN coordinates where a keypoint is not labeled.
    """

    box: tuple[float, float, float, float]
    label_text: str
    location: str
    label_id: int | None = None
    difficult: bool = False
    is_crowd: bool = False
    group_of: bool = False
    area: float | None = None
    mask: np.ndarray | None = None
    keypoints: np.ndarray | None = None


class SkipLog:
    """Records each skipped annotation once (re-reading an image does not count it again)."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def add(self, location: str, reason: str) -> None:
        self._reasons.setdefault(location, reason)

    def __len__(self) -> int:
        return len(self._reasons)

    def counts(self) -> Counter[str]:
        """Number of skips per reason."""
        return Counter(self._reasons.values())

    def examples(self, limit: int = 5) -> list[str]:
        """The first few skips as 'location: reason' lines, for a report."""
        return [f"{loc}: {reason}" for loc, reason in list(self._reasons.items())[:limit]]


def box_problem(box: Sequence[float], height: int, width: int) -> str | None:
    """Why ``box`` (x1, y1, x2, y2) is invalid in a ``height`` x ``width`` image, or None."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return f"box ({x1}, {y1}, {x2}, {y2}) has a non-finite coordinate"
    if x1 > x2 or y1 > y2:
        return f"box has x1 > x2 or y1 > y2: (x1, y1, x2, y2) = ({x1}, {y1}, {x2}, {y2})"
    tol = BORDER_TOLERANCE_PIXELS
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return (
            f"box (x1, y1, x2, y2) = ({x1}, {y1}, {x2}, {y2}) lies outside the "
            f"{width}x{height} image"
        )
    return None


def resolve_label(obj: AnnotatedObject, label_map: LabelMap, use_display_name: bool) -> int:
    """The label-map id of ``obj``: its given id (checked) or the id of its label text."""
    if obj.label_id is not None:
        label_map.item(obj.label_id)  # raises LabelMapError naming the id
        return obj.label_id
    return label_map.id_for(obj.label_text, use_display_name, context=obj.location)


def build_sample(
    image: ImageFile,
    objects: Sequence[AnnotatedObject],
    label_map: LabelMap,
    *,
    filename: str,
    source_id: str,
    fields: Sequence[str] = (),
    skip_log: SkipLog | None = None,
    use_display_name: bool = False,
) -> Sample:
    """Validate ``objects`` against the label map and the image size; build the Sample.

    ``fields`` names the optional per-object fields (``OPTIONAL_FIELDS``) the source format
    has; the others stay None. With a ``skip_log`` invalid boxes are recorded and left out,
    without one they raise ``DataError``.
    """
    kept: list[AnnotatedObject] = []
    label_ids: list[int] = []
    for obj in objects:
        label_id = resolve_label(obj, label_map, use_display_name)
        problem = box_problem(obj.box, image.height, image.width)
        if problem is not None:
            if skip_log is None:
                raise DataError(f"{obj.location}: {problem} (pass the skip flag to skip it)")
            skip_log.add(obj.location, "invalid box")
            continue
        kept.append(obj)
        label_ids.append(label_id)
    sample = Sample(
        height=image.height,
        width=image.width,
        boxes=torch.tensor([o.box for o in kept], dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(label_ids, dtype=torch.int64),
        encoded_image=image.encoded,
        image_format=image.image_format,
        filename=filename,
        source_id=source_id,
        label_texts=[o.label_text for o in kept],
    )
    _fill_optional_fields(sample, kept, fields, image)
    return sample


def _fill_optional_fields(
    sample: Sample, kept: Sequence[AnnotatedObject], fields: Sequence[str], image: ImageFile
) -> None:
    unknown = set(fields) - set(OPTIONAL_FIELDS)
    if unknown:
        raise ValueError(f"unknown optional fields {sorted(unknown)}; known: {OPTIONAL_FIELDS}")
    if "difficult" in fields:
        sample.difficult = torch.tensor([o.difficult for o in kept], dtype=torch.bool)
    if "is_crowd" in fields:
        sample.is_crowd = torch.tensor([o.is_crowd for o in kept], dtype=torch.bool)
    if "group_of" in fields:
        sample.group_of = torch.tensor([o.group_of for o in kept], dtype=torch.bool)
    if "areas" in fields:
        areas = [o.area if o.area is not None else _box_area(o.box) for o in kept]
        sample.areas = torch.tensor(areas, dtype=torch.float32)
    if "masks" in fields:
        masks = np.zeros((len(kept), image.height, image.width), dtype=np.uint8)
        for index, obj in enumerate(kept):
            if obj.mask is not None:
                masks[index] = obj.mask
        sample.masks = torch.from_numpy(masks)  # [N, H, W] uint8
    if "keypoints" in fields and any(o.keypoints is not None for o in kept):
        _fill_keypoints(sample, kept)


def _fill_keypoints(sample: Sample, kept: Sequence[AnnotatedObject]) -> None:
    """``[N, K, 2]`` coordinates (NaN where unlabeled) and ``[N, K]`` visibilities."""
    num_keypoints = max(o.keypoints.shape[0] for o in kept if o.keypoints is not None)
    points = np.full((len(kept), num_keypoints, 3), np.nan, dtype=np.float32)
    points[:, :, 2] = 0
    for index, obj in enumerate(kept):
        if obj.keypoints is not None:
            points[index, : obj.keypoints.shape[0]] = obj.keypoints
    sample.keypoints = torch.from_numpy(np.ascontiguousarray(points[:, :, :2]))
    sample.keypoint_visibilities = torch.from_numpy(points[:, :, 2] > 0)


def _box_area(box: Sequence[float]) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))
