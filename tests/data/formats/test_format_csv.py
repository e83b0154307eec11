"""CSV reader: the raccoon dataset, round trips through TFRecords and COCO, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from format_files import write_image

from objdet.data.formats import CocoReader, CsvReader, convert_to_tfrecord, export_annotations
from objdet.data.formats.convert import read_tfrecord_samples
from objdet.errors import DataError, LabelMapError
from objdet.structures.label_map import LabelMap

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def csv_boxes(csv_path: Path) -> dict[str, list[list[float]]]:
    """filename -> boxes, straight from the CSV (the ground truth of the round trip)."""
    boxes: dict[str, list[list[float]]] = {}
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            box = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.setdefault(row["filename"], []).append(box)
    return boxes


def test_raccoon_test_split_reads_original_bytes(
    raccoon_dir: Path, raccoon_label_map: LabelMap
) -> None:
    reader = CsvReader(raccoon_dir / "test_labels.csv", raccoon_dir / "images", raccoon_label_map)
    expected = csv_boxes(raccoon_dir / "test_labels.csv")
    assert len(reader) == len(expected) == 40
    for sample in reader:
        assert sample.encoded_image == (raccoon_dir / "images" / sample.filename).read_bytes()
        assert sample.boxes.dtype == torch.float32
        assert sample.boxes.tolist() == expected[sample.filename]
        assert sample.labels.tolist() == [1] * len(expected[sample.filename])
        assert sample.label_texts == ["raccoon"] * len(expected[sample.filename])
    with pytest.raises(IndexError):
        reader[40]
    assert reader[-1].filename == reader[39].filename


def test_round_trip_csv_tfrecord_coco_tfrecord(
    raccoon_dir: Path, raccoon_label_map: LabelMap, tmp_path: Path
) -> None:
    csv_path = raccoon_dir / "test_labels.csv"
    reader = CsvReader(csv_path, raccoon_dir / "images", raccoon_label_map)
    first = convert_to_tfrecord(reader, tmp_path / "first.record", num_shards=3)
    assert first.images == 40 and first.boxes_per_class == {"raccoon": 44}
    assert [Path(p).name for p in first.output_paths] == [
        f"first.record-0000{i}-of-00003" for i in range(3)
    ]
    export_annotations(tmp_path / "first.record@3", "coco", tmp_path / "coco", raccoon_label_map)
    coco = CocoReader(
        tmp_path / "coco" / "annotations.json", tmp_path / "coco" / "images", raccoon_label_map
    )
    convert_to_tfrecord(coco, tmp_path / "second.record")

    first_samples = {
        s.filename: s for s in read_tfrecord_samples(tmp_path / "first.record@3", raccoon_label_map)
    }
    second_samples = {
        s.filename: s for s in read_tfrecord_samples(tmp_path / "second.record", raccoon_label_map)
    }
    expected = csv_boxes(csv_path)
    assert set(first_samples) == set(second_samples) == set(expected)
    for filename, boxes in expected.items():
        first_boxes, second_boxes = first_samples[filename].boxes, second_samples[filename].boxes
        # COCO hop and the second TFRecord change nothing: within 1e-6 absolute pixels.
        assert (first_boxes.double() - second_boxes.double()).abs().max() <= 1e-6
        # Against the CSV, float32 normalized storage limits precision to ~width * 2**-24.
        assert (
            second_boxes.double() - torch.tensor(boxes, dtype=torch.float64)
        ).abs().max() <= 1e-4
        assert (
            second_samples[filename].encoded_image
            == (raccoon_dir / "images" / filename).read_bytes()
        )
        assert second_samples[filename].labels.tolist() == [1] * len(boxes)


def write_csv(tmp_path: Path, rows: list[str], size: tuple[int, int] = (40, 30)) -> Path:
    write_image(tmp_path / "images" / "a.jpg", *size)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return csv_path


def read_all(csv_path: Path, label_map: LabelMap, **options: bool) -> list:
    return list(CsvReader(csv_path, csv_path.parent / "images", label_map, **options))


@pytest.mark.parametrize(
    ("row", "error", "message"),
    [
        ("a.jpg,40,30,horse,1,1,5,5", LabelMapError, r"labels\.csv:3: label 'horse' is not in"),
        ("a.jpg,40,30,cat,20,1,5,5", DataError, r"labels\.csv:3: box has x1 > x2"),
        ("a.jpg,40,30,cat,1,1,41,5", DataError, r"labels\.csv:3: .*outside the 40x30 image"),
        ("a.jpg,40,30,cat,-2,1,5,5", DataError, r"labels\.csv:3: .*outside"),
        ("a.jpg,40,30,cat,1,1,x,5", DataError, r"labels\.csv:3: column 'xmax' must be a number"),
    ],
)
def test_bad_rows_name_file_and_line(
    tmp_path: Path, animals_label_map: LabelMap, row: str, error: type, message: str
) -> None:
    csv_path = write_csv(tmp_path, ["a.jpg,40,30,cat,1,1,5,5", row])
    with pytest.raises(error, match=message):
        read_all(csv_path, animals_label_map)


def test_declared_size_must_match_the_image(tmp_path: Path, animals_label_map: LabelMap) -> None:
    csv_path = write_csv(tmp_path, ["a.jpg,50,30,cat,1,1,5,5"])
    with pytest.raises(DataError, match=r"labels\.csv:2: .*say 50x30 but image a\.jpg is 40x30"):
        read_all(csv_path, animals_label_map)


def test_missing_and_undecodable_images(tmp_path: Path, animals_label_map: LabelMap) -> None:
    csv_path = write_csv(tmp_path, ["a.jpg,40,30,cat,1,1,5,5", "b.jpg,40,30,cat,1,1,5,5"])
    with pytest.raises(DataError, match=r"labels\.csv:3: image file not found: .*b\.jpg"):
        read_all(csv_path, animals_label_map)
    (tmp_path / "images" / "b.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(
        DataError, match=r"labels\.csv:3: image .*b\.jpg: not an image file \(JPEG/PNG expected\)"
    ):
        read_all(csv_path, animals_label_map)
    truncated = (tmp_path / "images" / "a.jpg").read_bytes()[:-200]
    (tmp_path / "images" / "b.jpg").write_bytes(truncated)
    with pytest.raises(DataError, match=r"b\.jpg: JPEG data does not decode \(truncated"):
        read_all(csv_path, animals_label_map)


def test_skip_flag_counts_skipped_boxes_and_images(
    tmp_path: Path, animals_label_map: LabelMap
) -> None:
    csv_path = write_csv(
        tmp_path,
        ["a.jpg,40,30,cat,1,1,5,5", "a.jpg,40,30,dog,9,1,5,5", "b.jpg,40,30,cat,1,1,5,5"],
    )
    reader = CsvReader(csv_path, tmp_path / "images", animals_label_map, skip_invalid=True)
    summary = convert_to_tfrecord(reader, tmp_path / "out.record", skip_invalid_images=True)
    assert summary.images == 1 and summary.boxes_per_class == {"cat": 1}
    assert summary.skipped == {
        "invalid box": 1,
        "image skipped (missing, undecodable or invalid)": 1,
    }
    report = summary.format()
    assert "labels.csv:3: invalid box" in report and "b.jpg" in report
    assert len(list(read_tfrecord_samples(tmp_path / "out.record"))) == 1


def test_raccoon_train_split_indexes_every_row(
    raccoon_dir: Path, raccoon_label_map: LabelMap
) -> None:
    csv_path = raccoon_dir / "train_labels.csv"
    reader = CsvReader(csv_path, raccoon_dir / "images", raccoon_label_map)
    expected = csv_boxes(csv_path)
    assert len(reader) == len(expected) == 160
    for index in (0, 80, 159):  # reading every image is the test split's job; spot-check here
        sample = reader[index]
        assert sample.boxes.tolist() == expected[sample.filename]


def test_a_csv_saved_with_a_byte_order_mark_reads(
    tmp_path: Path, animals_label_map: LabelMap
) -> None:
    """Excel's "CSV UTF-8" starts the file with a BOM; it is not part of the first column."""
    csv_path = write_csv(tmp_path, ["a.jpg,40,30,cat,1,1,5,5"])
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    (sample,) = read_all(csv_path, animals_label_map)
    assert sample.filename == "a.jpg" and sample.labels.tolist() == [1]
