"""Open Images box and image-level label CSVs (the OD API's ``oid_tfrecord_creation``).

Box CSV columns: ``ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf`` (+ optional
``IsOccluded, IsTruncated, IsDepiction, IsInside, Confidence, Source``), coordinates
normalized to [0, 1]. Image-level label CSV: ``ImageID, LabelName, Confidence`` (1 = the
class is verified present, 0 = verified absent). Label names are the label map's ``name``s
(MIDs such as ``/m/01g317``). Images are ``IMAGES_DIR/<ImageID>.jpg``.

The OD API drops rows whose label is not in the label map (a challenge label map covers a
subset of the classes). Here that is an error unless ``skip_labels_not_in_label_map`` is set,
in which case the rows are counted in ``reader.filtered``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from objdet.data.formats.annotation import AnnotatedObject, build_sample
from objdet.data.formats.image_file import read_image_file
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")
IMAGE_LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")


@dataclass
class _NormalizedBox:
    label_name: str
    location: str
    xmin: float
    xmax: float
    ymin: float
    ymax: float
    group_of: bool


@dataclass
class _OidImage:
    boxes: list[_NormalizedBox] = field(default_factory=list)
    image_labels: list[tuple[str, float, str]] = field(
        default_factory=list
    )  # name, confidence, where


class OpenImagesReader(AnnotationReader):
    """``reader[i]``: the i-th ImageID (in order of first appearance, boxes CSV first)."""

    format_name = "oid"

    def __init__(
        self,
        box_annotations_csv: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        label_map: LabelMap,
        *,
        image_label_annotations_csv: str | os.PathLike[str] | None = None,
        skip_labels_not_in_label_map: bool = False,
        skip_invalid: bool = False,
    ) -> None:
        super().__init__(label_map, skip_invalid=skip_invalid)
        self.images_dir = Path(images_dir)
        self.skip_labels_not_in_label_map = skip_labels_not_in_label_map
        self._known_names = set(label_map.name_to_id())
        self._images: dict[str, _OidImage] = {}
        box_path = Path(box_annotations_csv)
        for row, where in _rows(box_path, BOX_COLUMNS):
            if self._keep_label(row["LabelName"], where):
                image = self._images.setdefault(row["ImageID"], _OidImage())
                image.boxes.append(_parse_box(row, where))
        if image_label_annotations_csv is not None:
            for row, where in _rows(Path(image_label_annotations_csv), IMAGE_LABEL_COLUMNS):
                if self._keep_label(row["LabelName"], where):
                    confidence = _float(row, "Confidence", where)
                    image = self._images.setdefault(row["ImageID"], _OidImage())
                    image.image_labels.append((row["LabelName"], confidence, where))
        self._image_ids = list(self._images)

    def _keep_label(self, label_name: str, where: str) -> bool:
        if self.skip_labels_not_in_label_map and label_name not in self._known_names:
            self.filtered.add(where, "label not in label map")
            return False
        return True  # an unknown label raises LabelMapError when its image is read

    def __len__(self) -> int:
        return len(self._image_ids)

    def describe(self, index: int) -> str:
        return f"ImageID {self._image_ids[index]}"

    def _read(self, index: int) -> Sample:
        image_id = self._image_ids[index]
        entry = self._images[image_id]
        first_location = entry.boxes[0].location if entry.boxes else entry.image_labels[0][2]
        image = read_image_file(self.images_dir / f"{image_id}.jpg", first_location)
        objects = [
            AnnotatedObject(
                box=(
                    b.xmin * image.width,
                    b.ymin * image.height,
                    b.xmax * image.width,
                    b.ymax * image.height,
                ),
                label_text=b.label_name,
                location=b.location,
                group_of=b.group_of,
            )
            for b in entry.boxes
        ]
        sample = build_sample(
            image,
            objects,
            self.label_map,
            filename=f"{image_id}.jpg",
            source_id=image_id,
            fields=("group_of",),
            skip_log=self.skip_log,
        )
        label_ids = [
            self.label_map.id_for(name, context=where) for name, _, where in entry.image_labels
        ]
        sample.image_labels = torch.tensor(label_ids, dtype=torch.int64)
        sample.image_label_confidences = torch.tensor(
            [confidence for _, confidence, _ in entry.image_labels], dtype=torch.float32
        )
        return sample


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[dict[str, str], str]]:
    """Each row of a CSV with its 'file:line' location; missing columns are an error."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # -sig: a BOM is not a column name
    except OSError as error:
        raise DataError(f"{path}: cannot read CSV file: {error}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: missing columns {missing}; found {reader.fieldnames}")
        for row in reader:
            yield (
                {key: (value or "").strip() for key, value in row.items() if key},
                f"{path}:{reader.line_num}",
            )


def _float(row: dict[str, str], column: str, where: str) -> float:
    try:
        return float(row[column])
    except ValueError:
        raise DataError(
            f"{where}: column {column!r} must be a number, found {row[column]!r}"
        ) from None


def _parse_box(row: dict[str, str], where: str) -> _NormalizedBox:
    return _NormalizedBox(
        label_name=row["LabelName"],
        location=where,
        xmin=_float(row, "XMin", where),
        xmax=_float(row, "XMax", where),
        ymin=_float(row, "YMin", where),
        ymax=_float(row, "YMax", where),
        # OID marks unknown flags with -1; only 1 means group-of.
        group_of=row["IsGroupOf"] == "1",
    )
