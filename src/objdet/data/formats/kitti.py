"""KITTI object detection labels (``label_2/*.txt``), as the OD API's create_kitti_tf_record.

Each label line: ``type truncated occluded alpha left top right bottom h w l x y z rotation_y``
(15 values; a 16th, score, is allowed). Types are lowercased and kept only when they are in
``classes_to_use``. When 'dontcare' is one of them, every box that overlaps a DontCare region
(intersection > 0), the DontCare boxes included, is removed: DontCare marks regions that were
not labeled, so no box there can be trusted. Both removals are counted in
``reader.filtered``. Images with a number below ``validation_set_size`` form the validation
split (``kitti_train_val_split``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from objdet.data.formats.annotation import AnnotatedObject, build_sample
from objdet.data.formats.image_file import read_image_file
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

DEFAULT_CLASSES = ("car", "pedestrian", "dontcare")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def kitti_image_dir(data_dir: Path) -> Path:
    """The OD API's ``data_object_image_2/training/image_2``, else ``training/image_2``."""
    od_api_layout = data_dir / "data_object_image_2" / "training" / "image_2"
    return od_api_layout if od_api_layout.is_dir() else data_dir / "training" / "image_2"


def kitti_train_val_split(
    data_dir: str | os.PathLike[str], validation_set_size: int
) -> tuple[list[str], list[str]]:
    """Image file names (sorted) split as the OD API does: number < size -> validation."""
    image_dir = kitti_image_dir(Path(data_dir))
    if not image_dir.is_dir():
        raise DataError(f"{data_dir}: no KITTI image directory (expected {image_dir})")
    names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    train: list[str] = []
    validation: list[str] = []
    for name in names:
        try:
            number = int(Path(name).stem)
        except ValueError:
            raise DataError(
                f"{image_dir / name}: KITTI image names must be numbers like 000042.png"
            ) from None
        (validation if number < validation_set_size else train).append(name)
    return train, validation


class KittiReader(AnnotationReader):
    """``reader[i]``: image ``image_names[i]`` with labels from ``training/label_2``."""

    format_name = "kitti"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        label_map: LabelMap,
        *,
        image_names: Sequence[str] | None = None,
        classes_to_use: Sequence[str] = DEFAULT_CLASSES,
        skip_invalid: bool = False,
    ) -> None:
        super().__init__(label_map, skip_invalid=skip_invalid)
        self.data_dir = Path(data_dir)
        self.image_dir = kitti_image_dir(self.data_dir)
        self.label_dir = self.data_dir / "training" / "label_2"
        self.classes_to_use = tuple(c.strip().lower() for c in classes_to_use)
        if image_names is None:
            train, validation = kitti_train_val_split(self.data_dir, 0)
            image_names = train + validation
        self.image_names = list(image_names)

    def __len__(self) -> int:
        return len(self.image_names)

    def describe(self, index: int) -> str:
        return str(self._label_path(self.image_names[index]))

    def _label_path(self, image_name: str) -> Path:
        return self.label_dir / f"{int(Path(image_name).stem):06d}.txt"

    def _read(self, index: int) -> Sample:
        name = self.image_names[index]
        label_path = self._label_path(name)
        image = read_image_file(self.image_dir / name, str(label_path))
        objects = [o for o in _read_label_file(label_path) if self._class_is_used(o)]
        if "dontcare" in self.classes_to_use:
            objects = self._remove_dontcare_overlaps(objects)
        return build_sample(
            image,
            objects,
            self.label_map,
            filename=name,
            source_id=name,
            skip_log=self.skip_log,
        )

    def _class_is_used(self, obj: AnnotatedObject) -> bool:
        if obj.label_text in self.classes_to_use:
            return True
        self.filtered.add(obj.location, "class not in classes_to_use")
        return False

    def _remove_dontcare_overlaps(self, objects: list[AnnotatedObject]) -> list[AnnotatedObject]:
        dontcare = [o.box for o in objects if o.label_text == "dontcare"]
        kept = []
        for obj in objects:
            if obj.label_text == "dontcare" or any(_intersects(obj.box, d) for d in dontcare):
                self.filtered.add(obj.location, "DontCare region or overlaps one")
            else:
                kept.append(obj)
        return kept


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    overlap_width = min(a[2], b[2]) - max(a[0], b[0])
    overlap_height = min(a[3], b[3]) - max(a[1], b[1])
    return overlap_width > 0 and overlap_height > 0


def _read_label_file(path: Path) -> list[AnnotatedObject]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: KITTI label file not found") from None
    objects = []
    for line_number, line in enumerate(lines, start=1):
        values = line.split()
        if not values:
            continue
        where = f"{path}:{line_number}"
        if len(values) not in (15, 16):
            raise DataError(
                f"{where}: expected 15 values (type ... rotation_y), found {len(values)}"
            )
        try:
            left, top, right, bottom = (float(v) for v in values[4:8])
        except ValueError:
            raise DataError(f"{where}: bbox values must be numbers, found {values[4:8]}") from None
        objects.append(AnnotatedObject((left, top, right, bottom), values[0].lower(), where))
    return objects
