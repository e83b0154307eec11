"""Open Images reader: normalized boxes, group-of, image-level labels with confidence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from format_files import write_image

from objdet.data.formats import OpenImagesReader, convert_to_tfrecord
from objdet.data.formats.convert import read_tfrecord_samples
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap, LabelMapItem

BOX_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
LABEL_HEADER = "ImageID,Source,LabelName,Confidence\n"


@pytest.fixture
def oid_label_map() -> LabelMap:
    return LabelMap([LabelMapItem(1, "/m/01g317", "Person"), LabelMapItem(2, "/m/0k4j", "Car")])


def make_oid(root: Path, extra_box_rows: str = "") -> tuple[Path, Path]:
    write_image(root / "images" / "img1.jpg", 40, 20)
    write_image(root / "images" / "img2.jpg", 20, 10)
    boxes = root / "boxes.csv"
    boxes.write_text(
        BOX_HEADER
        + "img1,xclick,/m/01g317,1,0.1,0.5,0.2,0.9,0,0,1,0,0\n"
        + "img1,xclick,/m/0k4j,1,0.5,1.0,0.0,0.5,1,0,0,0,0\n"
        + extra_box_rows
    )
    labels = root / "labels.csv"
    labels.write_text(LABEL_HEADER + "img1,verification,/m/0k4j,1\nimg2,verification,/m/01g317,0\n")
    return boxes, labels


def test_boxes_group_of_and_image_labels(tmp_path: Path, oid_label_map: LabelMap) -> None:
    boxes, labels = make_oid(tmp_path)
    reader = OpenImagesReader(
        boxes, tmp_path / "images", oid_label_map, image_label_annotations_csv=labels
    )
    assert len(reader) == 2
    first, second = reader[0], reader[1]
    assert first.source_id == "img1" and first.filename == "img1.jpg"
    expected = torch.tensor([[4.0, 4.0, 20.0, 18.0], [20.0, 0.0, 40.0, 10.0]])
    assert torch.allclose(first.boxes, expected, atol=1e-5)
    assert first.labels.tolist() == [1, 2] and first.group_of.tolist() == [True, False]
    assert first.image_labels.tolist() == [2] and first.image_label_confidences.tolist() == [1.0]
    assert second.num_objects == 0
    assert second.image_labels.tolist() == [1] and second.image_label_confidences.tolist() == [0.0]
    convert_to_tfrecord(reader, tmp_path / "oid.record")
    decoded = list(read_tfrecord_samples(tmp_path / "oid.record", oid_label_map))
    assert decoded[0].group_of.tolist() == [True, False]
    assert decoded[1].image_labels.tolist() == [1]
    assert decoded[1].image_label_confidences.tolist() == [0.0]


def test_unknown_labels_error_or_counted_skip(tmp_path: Path, oid_label_map: LabelMap) -> None:
    boxes, _ = make_oid(tmp_path, "img1,xclick,/m/0bt9lr,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n")
    with pytest.raises(LabelMapError, match=r"boxes\.csv:4: label '/m/0bt9lr' is not in"):
        OpenImagesReader(boxes, tmp_path / "images", oid_label_map)[0]
    reader = OpenImagesReader(
        boxes, tmp_path / "images", oid_label_map, skip_labels_not_in_label_map=True
    )
    summary = convert_to_tfrecord(reader, tmp_path / "oid.record")
    assert summary.boxes == 2 and summary.filtered == {"label not in label map": 1}


def test_coordinates_outside_unit_range(tmp_path: Path, oid_label_map: LabelMap) -> None:
    boxes, _ = make_oid(tmp_path, "img1,xclick,/m/0k4j,1,0.1,1.2,0.1,0.2,0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"boxes\.csv:4: .*outside the 40x20 image"):
        OpenImagesReader(boxes, tmp_path / "images", oid_label_map)[0]
