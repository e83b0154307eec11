"""Contract tests over the format registries: every reader is a Sequence of Samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from test_format_coco import make_coco
from test_format_kitti import make_kitti
from test_format_open_images import make_oid
from test_format_voc import make_devkit
from test_format_yolo import make_yolo

from objdet.data.formats import (
    READERS,
    WRITERS,
    AnnotationReader,
    CocoReader,
    KittiReader,
    OpenImagesReader,
    VocReader,
    YoloReader,
)
from objdet.structures.label_map import LabelMap, LabelMapItem
from objdet.structures.sample import Sample


def build_reader(name: str, root: Path) -> AnnotationReader:
    """A small real dataset of format ``name`` in ``root`` and its reader."""
    animals = LabelMap([LabelMapItem(1, "cat"), LabelMapItem(2, "dog"), LabelMapItem(5, "bird")])
    if name == "csv":
        from test_format_csv import write_csv

        return READERS["csv"](
            write_csv(root, ["a.jpg,40,30,cat,1,1,5,5"]), root / "images", animals
        )  # type: ignore[call-arg]
    if name == "voc":
        return VocReader.from_devkit(make_devkit(root), "VOC2007", "train", animals)
    if name == "coco":
        return CocoReader(make_coco(root), root / "images")
    if name == "oid":
        boxes, _ = make_oid(root)
        return OpenImagesReader(
            boxes, root / "images", LabelMap.from_names(["/m/01g317", "/m/0k4j"])
        )
    if name == "kitti":
        return KittiReader(make_kitti(root), LabelMap.from_names(["car", "pedestrian"]))
    make_yolo(root)
    return YoloReader(root / "images", root / "labels", class_names=["cat", "dog"])


@pytest.mark.parametrize("name", sorted(READERS))
def test_reader_is_a_sequence_of_samples(name: str, tmp_path: Path) -> None:
    reader = build_reader(name, tmp_path)
    assert isinstance(reader, READERS[name]) and isinstance(reader, Sequence)
    assert len(reader) >= 1
    samples = list(reader)
    assert len(samples) == len(reader)
    for index, sample in enumerate(samples):
        assert isinstance(sample, Sample) and sample.encoded_image
        assert sample.boxes.dtype.is_floating_point and sample.boxes.shape[1] == 4
        assert sample.label_texts is not None and len(sample.label_texts) == sample.num_objects
        assert all(int(label) in reader.label_map for label in sample.labels)
        assert reader.describe(index)
    with pytest.raises(IndexError):
        reader[len(reader)]


def test_writers_registry() -> None:
    assert sorted(WRITERS) == ["coco", "voc", "yolo"]
