"""COCO instance annotations (JSON): reader and writer.

Reading follows the OD API's ``create_coco_tf_record.py``: boxes are absolute ``x, y, w, h``;
``iscrowd`` objects are kept and flagged; ``area`` is kept; with ``include_masks`` polygon and
RLE segmentations become ``[N, H, W]`` masks; ``keypoints`` (x, y, v triples) become
``[N, K, 2]`` points, NaN where v = 0, visible where v = 2. ``source_id`` is the COCO image id.

Class ids: without a label map, the JSON's category ids are the label-map ids (as in the OD
API). With a label map, each category name is looked up in it (by name, else by display
name), and a category that is not there is a ``LabelMapError``.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from objdet.atomic import atomic_directory
from objdet.data.formats.annotation import AnnotatedObject, build_sample
from objdet.data.formats.image_file import read_image_file
from objdet.data.formats.masks import mask_to_rle, segmentation_to_mask
from objdet.data.formats.output_layout import image_file_names
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap, LabelMapItem
from objdet.structures.sample import Sample

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"


class CocoReader(AnnotationReader):
    """Reads a COCO JSON file; ``reader[i]`` is the i-th entry of its ``images`` list."""

    format_name = "coco"

    def __init__(
        self,
        annotations_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        label_map: LabelMap | None = None,
        *,
        include_masks: bool = False,
        skip_invalid: bool = False,
    ) -> None:
        self.annotations_file = Path(annotations_file)
        self.image_dir = Path(image_dir)
        self.include_masks = include_masks
        data = _load_json(self.annotations_file)
        categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
        if label_map is None:
            items = [LabelMapItem(id=i, name=n) for i, n in sorted(categories.items())]
            label_map = LabelMap(items, source=f"{self.annotations_file} categories")
        super().__init__(label_map, skip_invalid=skip_invalid)
        self._category_ids = {
            i: _label_id(name, label_map, self.annotations_file) for i, name in categories.items()
        }
        self._category_names = categories
        self._images: list[dict[str, Any]] = list(data.get("images", []))
        self._annotations = _group_by_image(data, self._images, self.annotations_file)

    def __len__(self) -> int:
        return len(self._images)

    def describe(self, index: int) -> str:
        return f"{self.annotations_file}: image id {self._images[index].get('id')}"

    def _read(self, index: int) -> Sample:
        entry = self._images[index]
        where = self.describe(index)
        image = read_image_file(self.image_dir / str(entry.get("file_name", "")), where)
        declared = (entry.get("width"), entry.get("height"))
        if None not in declared and declared != (image.width, image.height):
            raise DataError(
                f"{where}: width/height say {declared[0]}x{declared[1]} but "
                f"{entry.get('file_name')} is {image.width}x{image.height}"
            )
        objects = [
            self._parse_annotation(a, image.height, image.width)
            for a in self._annotations[entry["id"]]
        ]
        fields = ["is_crowd", "areas", "keypoints"] + (["masks"] if self.include_masks else [])
        return build_sample(
            image,
            objects,
            self.label_map,
            filename=str(entry["file_name"]),
            source_id=str(entry["id"]),
            fields=fields,
            skip_log=self.skip_log,
        )

    def _parse_annotation(
        self, annotation: dict[str, Any], height: int, width: int
    ) -> AnnotatedObject:
        where = f"{self.annotations_file}: annotation id {annotation.get('id')}"
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DataError(f"{where}: 'bbox' must be [x, y, width, height], found {bbox!r}")
        category_id = annotation.get("category_id")
        if category_id not in self._category_ids:
            raise LabelMapError(f"{where}: category_id {category_id!r} is not in 'categories'")
        # Add in float64: x + w then reads back to exactly the x2 a writer started from.
        x, y, box_width, box_height = (float(v) for v in bbox)
        mask = None
        if self.include_masks:
            segmentation = annotation.get("segmentation")
            if segmentation is None:
                raise DataError(f"{where}: include_masks is set but there is no 'segmentation'")
            mask = segmentation_to_mask(segmentation, height, width, where)
        return AnnotatedObject(
            box=(x, y, x + box_width, y + box_height),
            label_text=self._category_names[category_id],
            location=where,
            label_id=self._category_ids[category_id],
            is_crowd=bool(annotation.get("iscrowd", 0)),
            area=float(annotation["area"]) if "area" in annotation else None,
            mask=mask,
            keypoints=_keypoints(annotation.get("keypoints"), where),
        )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8-sig") as handle:  # -sig: a BOM is not content
            data = json.load(handle)
    except FileNotFoundError:
        raise DataError(f"{path}: annotations file not found") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: expected a COCO object with an 'images' list")
    return data


def _label_id(category_name: str, label_map: LabelMap, source: Path) -> int:
    by_name = label_map.name_to_id()
    if category_name in by_name:
        return by_name[category_name]
    return label_map.id_for(category_name, use_display_name=True, context=f"{source}: category")


def _group_by_image(
    data: dict[str, Any], images: list[dict[str, Any]], source: Path
) -> dict[Any, list[dict[str, Any]]]:
    """Annotations per image id. Duplicate image ids are an error (the annotations of both
    would be copied onto each), and so are duplicate annotation ids (COCO tools key on them).
    """
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    first_index: dict[Any, int] = {}
    for index, entry in enumerate(images):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DataError(f"{source}: image entry without 'id' or 'file_name': {entry!r:.120}")
        image_id = entry["id"]
        if not isinstance(image_id, (int, str)):
            raise DataError(
                f"{source}: images[{index}]: 'id' must be a number, found {image_id!r:.40}"
            )
        if image_id in first_index:
            raise DataError(
                f"{source}: duplicate image id {image_id!r}: images[{first_index[image_id]}] "
                f"({images[first_index[image_id]]['file_name']}) and images[{index}] "
                f"({entry['file_name']}); image ids must be unique"
            )
        first_index[image_id] = index
        grouped[image_id] = []
    annotation_index: dict[Any, int] = {}
    for index, annotation in enumerate(data.get("annotations", [])):
        if not isinstance(annotation, dict):
            raise DataError(f"{source}: annotations[{index}] is not an object: {annotation!r:.80}")
        annotation_id = annotation.get("id")
        if not isinstance(annotation_id, (int, str, type(None))):
            raise DataError(
                f"{source}: annotations[{index}]: 'id' must be a number, "
                f"found {annotation_id!r:.40}"
            )
        if annotation_id is not None:
            if annotation_id in annotation_index:
                raise DataError(
                    f"{source}: duplicate annotation id {annotation_id!r}: "
                    f"annotations[{annotation_index[annotation_id]}] and annotations[{index}]; "
                    "annotation ids must be unique"
                )
            annotation_index[annotation_id] = index
        image_id = annotation.get("image_id")
        if image_id not in grouped:
            raise DataError(
                f"{source}: annotation id {annotation.get('id')} refers to image_id {image_id!r}, "
                "which is not in 'images'"
            )
        grouped[image_id].append(annotation)
    return grouped


def _keypoints(values: object, where: str) -> np.ndarray | None:
    """COCO ``[x1, y1, v1, ...]`` -> ``[K, 3]`` (x, y, visible); NaN x, y where v = 0."""
    if not values:
        return None
    if not isinstance(values, list) or len(values) % 3:
        raise DataError(f"{where}: 'keypoints' must be x, y, v triples, found {values!r:.80}")
    points = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    labeled = points[:, 2] > 0
    result = np.empty_like(points)
    result[:, :2] = np.where(labeled[:, None], points[:, :2], np.nan)
    result[:, 2] = points[:, 2] == 2
    return result


def write_coco(
    samples: Iterable[Sample], output_dir: str | os.PathLike[str], label_map: LabelMap
) -> int:
    """Write ``OUTPUT_DIR/annotations.json`` and ``OUTPUT_DIR/images/`` (images with bytes).

    Categories are the label map's items (ids kept, names = label-map names). Masks are
    written as compressed RLE, keypoints as x, y, v (v = 0 unlabeled, 1 labeled and hidden,
    2 visible). COCO has no difficult / group-of fields; those flags are not written.
    Read it back with ``CocoReader(OUTPUT_DIR/annotations.json, OUTPUT_DIR/images)``.
    Returns the number of images. The directory is replaced atomically.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    with atomic_directory(output_dir) as staging:
        (staging / IMAGES_DIR).mkdir()
        for image_id, (sample, filename) in enumerate(image_file_names(samples), start=1):
            images.append(
                {
                    "id": image_id,
                    "file_name": filename,
                    "width": sample.width,
                    "height": sample.height,
                }
            )
            for label in sample.labels.tolist():
                label_map.item(label)  # a LabelMapError naming the id when it is not there
            annotations.extend(_annotations_of(sample, image_id, first_id=len(annotations) + 1))
            if sample.encoded_image is not None:
                (staging / IMAGES_DIR / filename).write_bytes(sample.encoded_image)
        document = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": item.id, "name": item.name} for item in label_map.items],
        }
        (staging / ANNOTATIONS_FILE).write_text(json.dumps(document), encoding="utf-8")
    return len(images)


def _annotations_of(sample: Sample, image_id: int, first_id: int) -> list[dict[str, Any]]:
    boxes = sample.boxes.double().tolist()  # float64: w = x2 - x1 is exact
    result = []
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        annotation: dict[str, Any] = {
            "id": first_id + index,
            "image_id": image_id,
            "category_id": int(sample.labels[index]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": float(sample.areas[index])
            if sample.areas is not None
            else (x2 - x1) * (y2 - y1),
            "iscrowd": int(bool(sample.is_crowd[index])) if sample.is_crowd is not None else 0,
        }
        if sample.masks is not None:
            annotation["segmentation"] = mask_to_rle(sample.masks[index].numpy())
        if sample.keypoints is not None:
            annotation.update(_keypoints_json(sample, index))
        result.append(annotation)
    return result


def _keypoints_json(sample: Sample, index: int) -> dict[str, Any]:
    assert sample.keypoints is not None
    values: list[float] = []
    visible = sample.keypoint_visibilities
    for k, (x, y) in enumerate(sample.keypoints[index].double().tolist()):
        if math.isnan(x) or math.isnan(y):
            values.extend([0, 0, 0])
        else:
            values.extend([x, y, 2 if visible is not None and bool(visible[index, k]) else 1])
    return {"keypoints": values, "num_keypoints": sum(1 for v in values[2::3] if v > 0)}
