"""``objdet convert``: real subprocess runs on the raccoon data, flag wiring per format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from objdet.cli.main import main
from objdet.data.formats.convert import read_tfrecord_samples
from objdet.structures.label_map import load_label_map


def objdet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "objdet", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_csv_to_sharded_tfrecords_and_back_to_yolo(raccoon_dir: Path, tmp_path: Path) -> None:
    label_map = str(raccoon_dir / "object-detection.pbtxt")
    result = objdet(
        "convert",
        "csv",
        "--csv_path",
        str(raccoon_dir / "test_labels.csv"),
        "--images_dir",
        str(raccoon_dir / "images"),
        "--label_map_path",
        label_map,
        "--output_path",
        str(tmp_path / "test.record"),
        "--num_shards",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 40 images, 44 boxes" in result.stdout and "raccoon: 44 boxes" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "test.record-00000-of-00002",
        "test.record-00001-of-00002",
    ]
    # In-process from here on: one subprocess proves the entry point; torch imports are slow.
    assert (
        main(
            [
                "convert",
                "tfrecord-to-yolo",
                "--input_path",
                str(tmp_path / "test.record@2"),
                "--label_map_path",
                label_map,
                "--output_path",
                str(tmp_path / "yolo"),
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "yolo" / "labels").glob("*.txt"))) == 40
    assert (tmp_path / "yolo" / "classes.txt").read_text() == "raccoon\n"


def test_bad_label_is_a_one_line_error(
    tmp_path: Path, raccoon_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\nraccoon-1.jpg,650,417,possum,81,88,522,408\n"
    )
    code = main(
        [
            "convert",
            "csv",
            "--csv_path",
            str(csv_path),
            "--images_dir",
            str(raccoon_dir / "images"),
            "--label_map_path",
            str(raccoon_dir / "object-detection.pbtxt"),
            "--output_path",
            str(tmp_path / "out.record"),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("objdet convert: error: ") and error.count("\n") == 1
    assert "labels.csv:2: label 'possum' is not in the label map" in error
    assert not (tmp_path / "out.record").exists()  # nothing half-written


def test_voc_flat_layout_and_export_coco(
    raccoon_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = tmp_path / "xml"
    annotations.mkdir()
    for number in (1, 2, 3):
        name = f"raccoon-{number}.xml"
        (annotations / name).write_bytes((raccoon_dir / "annotations" / name).read_bytes())
    label_map = str(raccoon_dir / "object-detection.pbtxt")
    assert (
        main(
            [
                "convert",
                "voc",
                "--data_dir",
                str(tmp_path),
                "--annotations_dir",
                "xml",
                "--images_dir",
                str(raccoon_dir / "images"),
                "--label_map_path",
                label_map,
                "--output_path",
                str(tmp_path / "voc.record"),
            ]
        )
        == 0
    )
    assert "wrote 3 images" in capsys.readouterr().out
    assert (
        main(
            [
                "convert",
                "tfrecord-to-coco",
                "--input_path",
                str(tmp_path / "voc.record"),
                "--label_map_path",
                label_map,
                "--output_path",
                str(tmp_path / "coco"),
            ]
        )
        == 0
    )
    document = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert [image["file_name"] for image in document["images"]] == [
        "raccoon-1.jpg",
        "raccoon-2.jpg",
        "raccoon-3.jpg",
    ]
    assert document["annotations"][0]["bbox"] == [81.0, 88.0, 441.0, 320.0]
    assert (
        main(
            [
                "convert",
                "coco",
                "--image_dir",
                str(tmp_path / "coco" / "images"),
                "--annotations_file",
                str(tmp_path / "coco" / "annotations.json"),
                "--label_map_path",
                label_map,
                "--output_path",
                str(tmp_path / "again.record"),
            ]
        )
        == 0
    )
    samples = list(read_tfrecord_samples(tmp_path / "again.record", load_label_map(label_map)))
    assert samples[0].boxes.tolist() == [[81.0, 88.0, 522.0, 408.0]]


def test_yolo_needs_names_or_label_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "convert",
            "yolo",
            "--images_dir",
            str(tmp_path),
            "--labels_dir",
            str(tmp_path),
            "--output_path",
            str(tmp_path / "out.record"),
        ]
    )
    assert code == 2
    assert "needs --names_file or --label_map_path" in capsys.readouterr().err


def write_raccoon_records(
    raccoon_dir: Path, path: Path, change: dict[int, dict[str, object]]
) -> None:
    """The first 4 raccoon records, with ``change[i]`` replacing features of record i."""
    from objdet.data.tfrecord import TFRecordWriter, read_records
    from objdet.protos import example_pb2

    with TFRecordWriter(path) as writer:
        for index, record in enumerate(
            list(read_records(raccoon_dir / "tfrecord" / "test.record"))[:4]
        ):
            example = example_pb2.Example.FromString(record)
            for key, value in change.get(index, {}).items():
                feature = example.features.feature[key]
                feature.Clear()
                if isinstance(value, bytes):
                    feature.bytes_list.value.append(value)
                else:
                    feature.int64_list.value.extend(value)  # type: ignore[arg-type]
            writer.write(example.SerializeToString())


def read_tfrecord_samples_at(raccoon_dir: Path, index: int):  # type: ignore[no-untyped-def]
    samples = read_tfrecord_samples(raccoon_dir / "tfrecord" / "test.record")
    return next(sample for number, sample in enumerate(samples) if number == index)


def writer_args(records: Path, label_map: Path, output: Path) -> list[str]:
    return [
        "convert", "tfrecord-to-coco", "--input_path", str(records),
        "--label_map_path", str(label_map), "--output_path", str(output),
    ]  # fmt: skip


def test_tfrecord_to_coco_refuses_an_undecodable_image_or_a_wrong_size(
    raccoon_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train would reject both records; the writer must not copy them out as a dataset."""
    label_map = raccoon_dir / "object-detection.pbtxt"
    image = (raccoon_dir / "images" / "raccoon-1.jpg").read_bytes()
    cases = {
        "truncated": (
            {2: {"image/encoded": image[: len(image) // 2]}},
            "JPEG data does not decode",
        ),
        "wrong size": (
            {2: {"image/height": [100]}},
            "image/height x image/width is 100x",
        ),
    }
    for name, (change, message) in cases.items():
        records = tmp_path / f"{name}.record"
        write_raccoon_records(raccoon_dir, records, change)
        output = tmp_path / f"{name} coco"
        assert main(writer_args(records, label_map, output)) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"objdet convert: error: {records}#2 (offset ") and message in error
        assert error.count("\n") == 1 and not output.exists()


def test_tfrecord_to_coco_counts_label_text_conflicts(
    raccoon_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    label_map = tmp_path / "two.pbtxt"
    label_map.write_text("item { id: 1 name: 'raccoon' } item { id: 2 name: 'fox' }")
    records = tmp_path / "conflicts.record"
    boxes = {i: len(read_tfrecord_samples_at(raccoon_dir, i).labels) for i in (1, 3)}
    write_raccoon_records(
        raccoon_dir, records, {i: {"image/object/class/label": [2] * n} for i, n in boxes.items()}
    )
    with caplog.at_level("WARNING"):
        assert main(writer_args(records, label_map, tmp_path / "coco")) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert (
        messages[0].startswith(f"{records}#1 (offset ") and "label 2 disagrees with" in messages[0]
    )
    assert messages[1].startswith(f"{records}: class/label disagreed with class/text in 2 records")
    document = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert {a["category_id"] for a in document["annotations"]} == {1}  # the text's id
