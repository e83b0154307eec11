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
