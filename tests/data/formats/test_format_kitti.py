"""KITTI reader: classes_to_use filtering, DontCare overlap removal, train/val split."""

from __future__ import annotations

from pathlib import Path

import pytest
from format_files import write_image

from objdet.data.formats import KittiReader, convert_to_tfrecord, kitti_train_val_split
from objdet.errors import DataError
from objdet.structures.label_map import LabelMap


def kitti_line(kind: str, box: tuple[float, float, float, float]) -> str:
    return f"{kind} 0.00 0 -1.57 {box[0]} {box[1]} {box[2]} {box[3]} 1.5 1.6 3.9 1.0 1.7 8.4 -1.5\n"


def make_kitti(root: Path) -> Path:
    for number in range(3):
        write_image(root / "training" / "image_2" / f"{number:06d}.png", 60, 20, "PNG")
    labels = root / "training" / "label_2"
    labels.mkdir(parents=True)
    (labels / "000000.txt").write_text(
        kitti_line("Car", (1, 1, 10, 10))
        + kitti_line("Pedestrian", (30, 2, 35, 15))
        + kitti_line("DontCare", (33, 0, 50, 5))  # overlaps the pedestrian
        + kitti_line("Cyclist", (40, 5, 55, 18))
    )
    (labels / "000001.txt").write_text(kitti_line("Car", (2.5, 3.5, 20.25, 19.0)))
    (labels / "000002.txt").write_text("")
    return root


@pytest.fixture
def kitti_label_map() -> LabelMap:
    return LabelMap.from_names(["car", "pedestrian"])


def test_filtering_matches_the_od_api(tmp_path: Path, kitti_label_map: LabelMap) -> None:
    data_dir = make_kitti(tmp_path / "kitti")
    reader = KittiReader(data_dir, kitti_label_map)
    sample = reader[0]
    assert sample.label_texts == ["car"] and sample.boxes.tolist() == [[1.0, 1.0, 10.0, 10.0]]
    assert reader.filtered.counts() == {
        "class not in classes_to_use": 1,
        "DontCare region or overlaps one": 2,
    }
    assert reader[1].boxes.tolist() == [[2.5, 3.5, 20.25, 19.0]]
    assert reader[2].num_objects == 0
    without_dontcare = KittiReader(data_dir, kitti_label_map, classes_to_use=["car", "pedestrian"])
    assert without_dontcare[0].label_texts == ["car", "pedestrian"]


def test_train_val_split_and_conversion(tmp_path: Path, kitti_label_map: LabelMap) -> None:
    data_dir = make_kitti(tmp_path / "kitti")
    train, validation = kitti_train_val_split(data_dir, 1)
    assert validation == ["000000.png"] and train == ["000001.png", "000002.png"]
    reader = KittiReader(data_dir, kitti_label_map, image_names=train)
    summary = convert_to_tfrecord(reader, tmp_path / "kitti_train.tfrecord")
    assert summary.images == 2 and summary.boxes_per_class == {"car": 1}


def test_bad_label_line(tmp_path: Path, kitti_label_map: LabelMap) -> None:
    data_dir = make_kitti(tmp_path / "kitti")
    (data_dir / "training" / "label_2" / "000001.txt").write_text("Car 0 0 1 2 3\n")
    with pytest.raises(DataError, match=r"000001\.txt:1: expected 15 values"):
        KittiReader(data_dir, kitti_label_map)[1]
