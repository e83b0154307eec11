"""``ImageSource``: a folder or TFRecords, images referenced by key and read on demand."""

from __future__ import annotations

from pathlib import Path

import pytest
from annotate_server import RACCOON, TEST_RECORD

from objdet.annotate.sources import ImageSource
from objdet.errors import DataError, ObjdetError


def test_a_folder_lists_images_recursively_and_reads_only_its_own(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.jpg").write_bytes(b"b")
    (tmp_path / "sub" / "a.PNG").write_bytes(b"a")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.jpg").write_bytes(b"c")
    source = ImageSource(tmp_path)
    assert source.keys == ["b.jpg", "sub/a.PNG"]
    assert source.read("sub/a.PNG").encoded == b"a"
    for key in ("../outside.jpg", "/etc/passwd", "sub/../../x.jpg"):
        with pytest.raises(DataError, match="outside the project folder"):
            source.read(key)


def test_tfrecords_are_images_by_record_number() -> None:
    source = ImageSource(TEST_RECORD)
    assert len(source) == 40 and source.keys[:2] == ["test.record#0", "test.record#1"]
    image = source.read("test.record#3")
    assert image.encoded.startswith(b"\xff\xd8")  # the record's JPEG, unchanged
    assert (RACCOON / "images" / image.filename).read_bytes() == image.encoded
    with pytest.raises(DataError, match="not a record"):
        source.read("test.record#40")


def test_a_spec_that_is_neither_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ObjdetError, match="no image files"):
        ImageSource(tmp_path)
    with pytest.raises(ObjdetError, match="neither a folder nor readable TFRecords"):
        ImageSource(tmp_path / "missing.record")
