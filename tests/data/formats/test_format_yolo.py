"""YOLO reader and writer: names file / label map order, background images, bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from format_files import write_image

from objdet.data.formats import YoloReader, read_names_file, write_yolo
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap


def make_yolo(root: Path) -> Path:
    write_image(root / "images" / "a.jpg", 40, 20)
    write_image(root / "images" / "b.png", 10, 10, "PNG")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n\n0 0.25 0.75 0.5 0.5\n")
    (root / "names.txt").write_text("cat\ndog\n")
    return root


def test_names_file_and_label_map_order(tmp_path: Path, animals_label_map: LabelMap) -> None:
    root = make_yolo(tmp_path)
    names = read_names_file(root / "names.txt")
    reader = YoloReader(root / "images", root / "labels", class_names=names)
    sample = reader[0]
    assert sample.boxes.tolist() == [[10.0, 5.0, 30.0, 15.0], [0.0, 10.0, 20.0, 20.0]]
    assert sample.labels.tolist() == [2, 1] and sample.label_texts == ["dog", "cat"]
    assert reader[1].num_objects == 0  # no label file: a background image
    with_map = YoloReader(
        root / "images", root / "labels", label_map=animals_label_map, class_names=names
    )
    assert with_map[0].labels.tolist() == [2, 1]
    by_map_order = YoloReader(root / "images", root / "labels", label_map=animals_label_map)
    assert by_map_order[0].labels.tolist() == [2, 1]


def test_writer_round_trip(tmp_path: Path, animals_label_map: LabelMap) -> None:
    root = make_yolo(tmp_path / "in")
    original = list(YoloReader(root / "images", root / "labels", label_map=animals_label_map))
    write_yolo(original, tmp_path / "out", animals_label_map)
    assert read_names_file(tmp_path / "out" / "classes.txt") == ["cat", "dog", "bird"]
    back = YoloReader(
        tmp_path / "out" / "images", tmp_path / "out" / "labels", class_names=["cat", "dog", "bird"]
    )
    for before, after in zip(original, back):
        assert after.boxes.tolist() == before.boxes.tolist()
        assert after.label_texts == before.label_texts
        assert after.encoded_image == before.encoded_image


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        ("7 0.5 0.5 0.1 0.1", LabelMapError, r"a\.txt:1: class index 7 is out of range"),
        ("0 0.5 0.5 0.1", DataError, r"a\.txt:1: expected 5 values"),
        ("0 0.95 0.5 0.2 0.1", DataError, r"a\.txt:1: .*outside the 40x20 image"),
    ],
)
def test_bad_lines(tmp_path: Path, line: str, error: type, message: str) -> None:
    root = make_yolo(tmp_path)
    (root / "labels" / "a.txt").write_text(line + "\n")
    with pytest.raises(error, match=message):
        YoloReader(root / "images", root / "labels", class_names=["cat", "dog"])[0]
