"""YOLO txt labels: reader and writer.

One ``LABELS_DIR/<image stem>.txt`` per image in ``IMAGES_DIR``; each line is
``class_index cx cy w h`` with the box centre and size normalized to [0, 1]. An image without
a label file has no objects (YOLO's convention for background images). Class index i is
the i-th name of the names file (one name per line); with a label map, that name is looked
up in it; with only a label map, index i is its i-th item in id order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from objdet.atomic import atomic_directory
from objdet.data.formats.annotation import AnnotatedObject, build_sample
from objdet.data.formats.image_file import read_image_file
from objdet.data.formats.output_layout import image_file_names
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
NAMES_FILE = "classes.txt"


def read_names_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names, one per line (blank lines ignored); line i is class index i."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise LabelMapError(f"{path}: cannot read names file: {error}") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise LabelMapError(f"{path}: names file has no class names")
    return names


class YoloReader(AnnotationReader):
    """``reader[i]``: the i-th image (sorted by name) in ``images_dir``."""

    format_name = "yolo"

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        labels_dir: str | os.PathLike[str],
        *,
        label_map: LabelMap | None = None,
        class_names: Sequence[str] | None = None,
        skip_invalid: bool = False,
    ) -> None:
        if label_map is None and class_names is None:
            raise LabelMapError("YOLO needs class names (a names file) or a label map")
        if label_map is None:
            label_map = LabelMap.from_names(class_names or [], source="<YOLO names>")
        super().__init__(label_map, skip_invalid=skip_invalid)
        if class_names is None:
            self._index_to_id = [item.id for item in sorted(label_map.items, key=lambda i: i.id)]
        else:
            self._index_to_id = [
                label_map.id_for(name, context="YOLO names") for name in class_names
            ]
        self.images_dir = Path(images_dir)
        self.labels_dir = Path(labels_dir)
        if not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: images directory not found")
        self.image_names = sorted(
            p.name for p in self.images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
        )

    def __len__(self) -> int:
        return len(self.image_names)

    def describe(self, index: int) -> str:
        return str(self.images_dir / self.image_names[index])

    def _read(self, index: int) -> Sample:
        name = self.image_names[index]
        label_path = self.labels_dir / f"{Path(name).stem}.txt"
        image = read_image_file(self.images_dir / name, str(label_path))
        objects = self._read_label_file(label_path, image.height, image.width)
        return build_sample(
            image, objects, self.label_map, filename=name, source_id=name, skip_log=self.skip_log
        )

    def _read_label_file(self, path: Path, height: int, width: int) -> list[AnnotatedObject]:
        if not path.is_file():
            return []
        objects = []
        for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            values = line.split()
            if not values:
                continue
            where = f"{path}:{line_number}"
            if len(values) != 5:
                raise DataError(
                    f"{where}: expected 5 values 'class cx cy w h', found {len(values)}"
                )
            try:
                class_index = int(values[0])
                cx, cy, box_width, box_height = (float(v) for v in values[1:])
            except ValueError:
                raise DataError(
                    f"{where}: expected 'class cx cy w h' numbers, found {line!r}"
                ) from None
            if not 0 <= class_index < len(self._index_to_id):
                raise LabelMapError(
                    f"{where}: class index {class_index} is out of range: "
                    f"{len(self._index_to_id)} classes (0..{len(self._index_to_id) - 1})"
                )
            label_id = self._index_to_id[class_index]
            box = (
                (cx - box_width / 2) * width,
                (cy - box_height / 2) * height,
                (cx + box_width / 2) * width,
                (cy + box_height / 2) * height,
            )
            label_text = self.label_map.item(label_id).name
            objects.append(AnnotatedObject(box, label_text, where, label_id=label_id))
        return objects


def write_yolo(
    samples: Iterable[Sample], output_dir: str | os.PathLike[str], label_map: LabelMap
) -> int:
    """Write ``images/``, ``labels/<stem>.txt`` and ``classes.txt`` under ``output_dir``.

    Class index i is the label map's i-th item in id order (``classes.txt`` lists their
    names). Read it back with ``YoloReader(OUT/images, OUT/labels, class_names=...)``.
    Returns the number of images. The directory is replaced atomically.
    """
    items = sorted(label_map.items, key=lambda item: item.id)
    index_of = {item.id: index for index, item in enumerate(items)}
    count = 0
    with atomic_directory(output_dir) as staging:
        (staging / "images").mkdir()
        (staging / "labels").mkdir()
        (staging / NAMES_FILE).write_text("".join(f"{item.name}\n" for item in items))
        for sample, filename in image_file_names(samples):
            lines = []
            for (x1, y1, x2, y2), label in zip(
                sample.boxes.double().tolist(), sample.labels.tolist()
            ):
                if label not in index_of:
                    raise LabelMapError(
                        f"{filename}: label id {label} is not in {label_map.source}"
                    )
                cx, cy = (x1 + x2) / 2 / sample.width, (y1 + y2) / 2 / sample.height
                w, h = (x2 - x1) / sample.width, (y2 - y1) / sample.height
                lines.append(f"{index_of[label]} {cx!r} {cy!r} {w!r} {h!r}\n")
            (staging / "labels" / f"{Path(filename).stem}.txt").write_text("".join(lines))
            if sample.encoded_image is not None:
                (staging / "images" / filename).write_bytes(sample.encoded_image)
            count += 1
    return count
