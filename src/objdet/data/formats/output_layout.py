"""How the writers lay samples out as files: unique image file names and exact numbers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from objdet.errors import DataError
from objdet.structures.sample import Sample

EXTENSIONS = {"jpeg": "jpg", "png": "png"}


def image_file_names(samples: Iterable[Sample]) -> Iterator[tuple[Sample, str]]:
    """Pair each sample with the bare file name its image is written under.

    The name is the basename of ``sample.filename``; a sample without one is named after its
    source_id (or its position) with the extension of its format. Two samples with the same
    name are an error: one image file would silently overwrite the other.
    """
    first_seen: dict[str, int] = {}
    for index, sample in enumerate(samples):
        name = Path(sample.filename).name
        if not name:
            stem = Path(sample.source_id).name or f"{index:06d}"
            name = f"{stem}.{EXTENSIONS.get(sample.image_format, sample.image_format)}"
        if name in first_seen:
            raise DataError(
                f"samples #{first_seen[name]} and #{index} both have the image file name "
                f"{name!r}; file names must be unique to write them into one directory"
            )
        first_seen[name] = index
        yield sample, name


def number_text(value: float) -> str:
    """A coordinate as text that reads back to the same float32: '81' or '81.30000305175781'."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
