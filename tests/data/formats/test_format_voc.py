"""VOC reader and writer: the raccoon XML, a devkit round trip keeping boxes and difficult."""

from __future__ import annotations

from pathlib import Path

import pytest
from format_files import write_image

from objdet.data.formats import VocReader, convert_to_tfrecord, export_annotations
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap

OBJECT = (
    "<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
    "<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
)


def voc_xml(filename: str, size: tuple[int, int], objects: list[tuple[str, int, tuple]]) -> str:
    body = "".join(OBJECT.format(name=n, difficult=d, box=b) for n, d, b in objects)
    return (
        f"<annotation><folder>VOC2007</folder><filename>{filename}</filename><size>"
        f"<width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{body}</annotation>"
    )


def make_devkit(root: Path) -> Path:
    """data_dir/VOC2007 with two images; image 000002 has a difficult dog."""
    year = root / "VOC2007"
    annotations = {
        "000001": [("cat", 0, (1, 2, 30, 20))],
        "000002": [("dog", 1, (0.5, 1.25, 12.75, 9)), ("bird", 0, (3, 3, 40, 30))],
    }
    for example_id, objects in annotations.items():
        write_image(year / "JPEGImages" / f"{example_id}.jpg", 40, 30)
        (year / "Annotations").mkdir(parents=True, exist_ok=True)
        xml = voc_xml(f"{example_id}.jpg", (40, 30), objects)
        (year / "Annotations" / f"{example_id}.xml").write_text(xml)
    (year / "ImageSets" / "Main").mkdir(parents=True)
    (year / "ImageSets" / "Main" / "aeroplane_train.txt").write_text("000001 -1\n000002  1\n")
    return root


def test_raccoon_annotations(raccoon_dir: Path, raccoon_label_map: LabelMap) -> None:
    files = [raccoon_dir / "annotations" / f"raccoon-{i}.xml" for i in (1, 2, 3)]
    reader = VocReader(files, raccoon_label_map, images_dir=raccoon_dir / "images")
    sample = reader[0]
    assert (sample.filename, sample.width, sample.height) == ("raccoon-1.jpg", 650, 417)
    assert sample.boxes.tolist() == [[81.0, 88.0, 522.0, 408.0]]
    assert sample.difficult is not None and sample.difficult.tolist() == [False]
    assert sample.encoded_image == (raccoon_dir / "images" / "raccoon-1.jpg").read_bytes()


def test_devkit_round_trip_keeps_boxes_and_difficult(
    tmp_path: Path, animals_label_map: LabelMap
) -> None:
    data_dir = make_devkit(tmp_path / "data")
    reader = VocReader.from_devkit(data_dir, "VOC2007", "train", animals_label_map)
    original = list(reader)
    summary = convert_to_tfrecord(reader, tmp_path / "voc.record", num_shards=2)
    assert summary.boxes_per_class == {"cat": 1, "dog": 1, "bird": 1}
    export_annotations(
        tmp_path / "voc.record@2", "voc", tmp_path / "out" / "VOC2007", animals_label_map
    )
    back = VocReader.from_devkit(tmp_path / "out", "VOC2007", "trainval", animals_label_map)
    by_name = {s.filename: s for s in back}
    assert len(by_name) == 2
    for sample in original:
        again = by_name[sample.filename]
        assert (again.boxes.double() - sample.boxes.double()).abs().max() <= 1e-4
        assert again.difficult.tolist() == sample.difficult.tolist()
        assert again.labels.tolist() == sample.labels.tolist()
        assert again.encoded_image == sample.encoded_image
    assert by_name["000002.jpg"].difficult.tolist() == [True, False]


def test_ignore_difficult_instances_is_counted(tmp_path: Path, animals_label_map: LabelMap) -> None:
    data_dir = make_devkit(tmp_path / "data")
    reader = VocReader.from_devkit(
        data_dir, "VOC2007", "train", animals_label_map, ignore_difficult_instances=True
    )
    summary = convert_to_tfrecord(reader, tmp_path / "voc.record")
    assert summary.boxes_per_class == {"cat": 1, "bird": 1}
    assert summary.filtered == {"difficult (ignore_difficult_instances)": 1}


def test_bad_xml_and_labels(tmp_path: Path, animals_label_map: LabelMap) -> None:
    write_image(tmp_path / "images" / "a.jpg", 40, 30)
    xml_path = tmp_path / "ann" / "a.xml"
    xml_path.parent.mkdir()
    xml_path.write_text(voc_xml("a.jpg", (40, 30), [("horse", 0, (1, 1, 5, 5))]))
    reader = VocReader.from_directory(tmp_path / "ann", tmp_path / "images", animals_label_map)
    with pytest.raises(LabelMapError, match=r"a\.xml: object #1: label 'horse'"):
        reader[0]
    xml_path.write_text(voc_xml("a.jpg", (40, 30), [("cat", 0, (1, 1, 5, 55))]))
    with pytest.raises(DataError, match=r"a\.xml: object #1: .*outside the 40x30 image"):
        reader[0]
    xml_path.write_text("<annotation><filename>a.jpg</filename>")
    with pytest.raises(DataError, match=r"a\.xml:1:\d+: not well-formed XML"):
        reader[0]
