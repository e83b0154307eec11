"""The images of an annotation project: a folder of image files or TFRecords of tf.Examples.

Images are referenced by a stable ``key`` (the path relative to the folder, or
``<record file name>#<record number>``), never copied: the store keeps keys, and the bytes are
read from the source when an image is shown, trained on or exported. Only images listed here
are ever served, so a request can name an image only by its task id (no path traversal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from objdet.errors import DataError, ObjdetError

if TYPE_CHECKING:
    from objdet.data.tfrecord_index import IndexedTFRecords

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class ImageBytes:
    """One image's encoded bytes as stored, and a filename to write it under."""

    encoded: bytes
    filename: str


class ImageSource:
    """The project's images in file order: ``keys`` and ``read(key)``."""

    def __init__(self, spec: str | os.PathLike[str]) -> None:
        """``spec``: a folder (image files found recursively, sorted by relative path) or a
        TFRecord path / glob / comma list (as ``input_path`` accepts)."""
        self.spec = os.fspath(spec)
        self._folder: Path | None = None
        self._records: IndexedTFRecords | None = None
        self._record_keys: dict[str, int] = {}
        path = Path(self.spec)
        if path.is_dir():
            self._folder = path.resolve()
            self.keys = sorted(
                child.relative_to(self._folder).as_posix() for child in self._folder.rglob("*")
                if child.suffix.lower() in IMAGE_SUFFIXES and child.is_file()
                and not any(part.startswith(".") for part in child.relative_to(self._folder).parts)
            )
            if not self.keys:
                raise ObjdetError(f"--images {self.spec}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        else:
            self.keys = self._index_records()

    def _index_records(self) -> list[str]:
        from objdet.data.tfrecord_index import IndexedTFRecords

        try:
            records = IndexedTFRecords(self.spec)
        except DataError as error:
            raise ObjdetError(f"--images {self.spec}: neither a folder nor readable TFRecords ({error})") from None
        if len(records) == 0:
            raise ObjdetError(f"--images {self.spec}: no records")
        self._records = records
        keys: list[str] = []
        for index in records.indexes:
            name = Path(index.path).name
            keys.extend(f"{name}#{number}" for number in range(len(index)))
        self._record_keys = {key: position for position, key in enumerate(keys)}
        if len(self._record_keys) != len(keys):
            raise ObjdetError(f"--images {self.spec}: two TFRecord files share a file name; "
                              "keys must be unique")
        return keys

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, key: str) -> ImageBytes:
        """The encoded bytes of image ``key``; ``DataError`` when it cannot be read."""
        if self._folder is not None:
            relative = Path(key)
            if relative.is_absolute() or ".." in relative.parts:  # keys come from the listing: belt and braces
                raise DataError(f"{key}: outside the project folder {self._folder}")
            path = self._folder / relative  # a symlinked image file is served, as listed
            try:
                return ImageBytes(path.read_bytes(), key)
            except OSError as error:
                raise DataError(f"{path}: cannot read image file: {error.strerror}") from None
        return self._read_record(key)

    def _read_record(self, key: str) -> ImageBytes:
        from objdet.inference.inputs import parse_example

        assert self._records is not None
        position = self._record_keys.get(key)
        if position is None:
            raise DataError(f"{key}: not a record of {self.spec}")
        source = self._records.source(position)
        example = parse_example(self._records[position], source)
        feature = example.features.feature
        encoded = feature.get("image/encoded")
        if encoded is None or len(encoded.bytes_list.value) != 1:
            raise DataError(f"{source}: tf.Example has no single image/encoded bytes value")
        names = feature.get("image/filename")
        filename = names.bytes_list.value[0].decode("utf-8", "replace") if names and names.bytes_list.value else ""
        return ImageBytes(bytes(encoded.bytes_list.value[0]), filename or key.replace("#", "_"))

    def path_of(self, key: str) -> str:
        """Where image ``key`` lives, for messages and exports (a file, or file#record)."""
        if self._folder is not None:
            return os.fspath(self._folder / key)
        return f"{self.spec}:{key}"
