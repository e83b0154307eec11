"""CSV box tables in the raccoon layout: ``filename,width,height,class,xmin,ymin,xmax,ymax``.

One row per box, absolute pixel coordinates; rows of one image are grouped by ``filename``
(they need not be adjacent). Images are looked up in ``images_dir``. The ``width`` and
``height`` columns must match the image file: a mismatch means the boxes were drawn on a
different image.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from objdet.data.formats.annotation import AnnotatedObject, build_sample
from objdet.data.formats.image_file import read_image_file
from objdet.data.formats.reader import AnnotationReader
from objdet.errors import DataError
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")
REQUIRED_COLUMNS = ("filename", "width", "height", "class", *BOX_COLUMNS)


@dataclass
class _CsvImage:
    filename: str
    first_line: int
    declared_size: tuple[int, int]  # (width, height) from the CSV
    objects: list[AnnotatedObject] = field(default_factory=list)


class CsvReader(AnnotationReader):
    """Reads a raccoon-layout CSV; ``reader[i]`` is the i-th distinct filename in the file."""

    format_name = "csv"

    def __init__(
        self,
        csv_path: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        label_map: LabelMap,
        *,
        skip_invalid: bool = False,
    ) -> None:
        super().__init__(label_map, skip_invalid=skip_invalid)
        self.csv_path = Path(csv_path)
        self.images_dir = Path(images_dir)
        self._images = _parse_csv(self.csv_path)

    def __len__(self) -> int:
        return len(self._images)

    def describe(self, index: int) -> str:
        entry = self._images[index]
        return f"{self.csv_path}:{entry.first_line} ({entry.filename})"

    def _read(self, index: int) -> Sample:
        entry = self._images[index]
        where = f"{self.csv_path}:{entry.first_line}"
        image = read_image_file(self.images_dir / entry.filename, where)
        if (image.width, image.height) != entry.declared_size:
            raise DataError(
                f"{where}: width,height columns say {entry.declared_size[0]}x"
                f"{entry.declared_size[1]} but image {entry.filename} is "
                f"{image.width}x{image.height}"
            )
        return build_sample(
            image,
            entry.objects,
            self.label_map,
            filename=entry.filename,
            source_id=entry.filename,
            skip_log=self.skip_log,
        )


def _parse_csv(csv_path: Path) -> list[_CsvImage]:
    """Group the rows by filename, in order of first appearance."""
    try:
        handle = csv_path.open(newline="", encoding="utf-8-sig")  # -sig: a BOM is not a column name
    except OSError as error:
        raise DataError(f"{csv_path}: cannot read CSV file: {error}") from None
    images: dict[str, _CsvImage] = {}
    with handle:
        rows = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (rows.fieldnames or [])]
        if missing:
            raise DataError(
                f"{csv_path}:1: missing columns {missing}; expected header "
                f"{','.join(REQUIRED_COLUMNS)}, found {','.join(rows.fieldnames or [])}"
            )
        for row in rows:
            line = rows.line_num
            where = f"{csv_path}:{line}"
            filename = (row["filename"] or "").strip()
            if not filename:
                raise DataError(f"{where}: empty filename")
            width, height = (
                int(_number(row, "width", where, int)),
                int(_number(row, "height", where, int)),
            )
            entry = images.setdefault(filename, _CsvImage(filename, line, (width, height)))
            if entry.declared_size != (width, height):
                raise DataError(
                    f"{where}: {filename} is {width}x{height} here but "
                    f"{entry.declared_size[0]}x{entry.declared_size[1]} on line {entry.first_line}"
                )
            x1, y1, x2, y2 = (float(_number(row, k, where, float)) for k in BOX_COLUMNS)
            label_text = (row["class"] or "").strip()
            entry.objects.append(AnnotatedObject((x1, y1, x2, y2), label_text, where))
    return list(images.values())


def _number(row: dict[str, str], column: str, where: str, kind: type[int | float]) -> float:
    text = (row.get(column) or "").strip()
    try:
        return kind(float(text))
    except ValueError:
        raise DataError(f"{where}: column {column!r} must be a number, found {text!r}") from None
