"""``objdet annotate export``: accepted answers as TFRecords (byte-identical to ``objdet
convert`` of the same annotations), COCO, VOC, YOLO and Prodigy JSONL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from annotate_server import LABEL_MAP, RACCOON

from objdet.annotate.sources import ImageSource
from objdet.annotate.store import AnswerStore
from objdet.cli.main import main
from objdet.data.formats import CocoReader, CsvReader, VocReader, YoloReader, convert_to_tfrecord
from objdet.structures.label_map import load_label_map

NAMES = ["raccoon-1.jpg", "raccoon-10.jpg", "raccoon-100.jpg", "raccoon-101.jpg"]


def ground_truth() -> dict[str, list[list[float]]]:
    boxes: dict[str, list[list[float]]] = {}
    with open(RACCOON / "raccoon_labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["filename"] in NAMES:
                boxes.setdefault(row["filename"], []).append(
                    [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    return boxes


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    """A store in which raccoon-1/10/100 were accepted with their ground truth (raccoon-10
    first answered wrongly, then corrected) and raccoon-101 was rejected."""
    images = tmp_path / "images"
    images.mkdir()
    for name in NAMES:
        (images / name).write_bytes((RACCOON / "images" / name).read_bytes())
    store = AnswerStore(tmp_path / "model" / "annotate" / "answers.sqlite")
    store.set_meta("images", str(images))
    store.set_meta("label_map_path", str(LABEL_MAP))
    store.sync_images(ImageSource(images).keys)
    ids = {row.key: row.id for row in store.images()}
    truth = ground_truth()
    store.commit_answer(image_id=ids["raccoon-10.jpg"], session="s", answer="accept", boxes=[[1, 1, 9, 9]], label_ids=[1])
    for name in NAMES[:3]:
        store.commit_answer(image_id=ids[name], session="s", answer="accept", boxes=truth[name],
                            label_ids=[1] * len(truth[name]))
    store.commit_answer(image_id=ids["raccoon-101.jpg"], session="s", answer="reject", boxes=[], label_ids=[],
                        rejected_boxes=[[0, 0, 10, 10]])
    store.close()
    return tmp_path / "model"


def test_tfrecord_export_is_byte_identical_to_objdet_convert(model_dir: Path, tmp_path: Path) -> None:
    assert main(["annotate", "export", "--model_dir", str(model_dir), "--format", "tfrecord",
                 "--output", str(tmp_path / "annotated.record")]) == 0
    table = tmp_path / "labels.csv"
    with open(RACCOON / "raccoon_labels.csv", newline="") as source, open(table, "w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, reader.fieldnames or [])
        writer.writeheader()
        rows = [row for row in reader if row["filename"] in NAMES[:3]]
        # the export writes images in the order they were (last) accepted
        order = {"raccoon-1.jpg": 0, "raccoon-10.jpg": 1, "raccoon-100.jpg": 2}
        writer.writerows(sorted(rows, key=lambda row: order[row["filename"]]))
    converted = convert_to_tfrecord(CsvReader(table, RACCOON / "images", load_label_map(LABEL_MAP)),
                                    tmp_path / "converted.record")
    assert converted.images == 3
    assert (tmp_path / "annotated.record").read_bytes() == (tmp_path / "converted.record").read_bytes()


def test_coco_voc_yolo_exports_read_back(model_dir: Path, tmp_path: Path) -> None:
    label_map = load_label_map(LABEL_MAP)
    truth = ground_truth()
    expected = sum(len(truth[name]) for name in NAMES[:3])
    for format_name in ("coco", "voc", "yolo"):
        assert main(["annotate", "export", "--model_dir", str(model_dir), "--format", format_name,
                     "--output", str(tmp_path / format_name)]) == 0
    coco = CocoReader(tmp_path / "coco" / "annotations.json", tmp_path / "coco" / "images", label_map)
    voc = VocReader.from_directory(tmp_path / "voc" / "Annotations", tmp_path / "voc" / "JPEGImages", label_map)
    yolo = YoloReader(tmp_path / "yolo" / "images", tmp_path / "yolo" / "labels", label_map=label_map,
                      class_names=(tmp_path / "yolo" / "classes.txt").read_text().split())
    for reader in (coco, voc, yolo):
        assert len(reader) == 3
        assert sum(len(reader[i].boxes) for i in range(len(reader))) == expected


def test_jsonl_export_is_prodigy_tasks_of_every_answer(model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "answers.jsonl"
    assert main(["annotate", "export", "--model_dir", str(model_dir), "--format", "jsonl", "--output", str(output)]) == 0
    tasks = [json.loads(line) for line in output.read_text().splitlines()]
    assert [task["answer"] for task in tasks] == ["accept", "accept", "accept", "reject"]
    first = tasks[0]
    x1, y1, x2, y2 = ground_truth()["raccoon-1.jpg"][0]
    span = first["spans"][0]
    assert span["label"] == "raccoon" and span["points"] == [[x1, y1], [x1, y2], [x2, y2], [x2, y1]]
    assert first["image"].endswith("raccoon-1.jpg") and first["_annotator_id"] == "s"


def test_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotate", "export", "--model_dir", str(tmp_path), "--format", "coco", "--output", "x"]) == 2
    assert "no annotation store here" in capsys.readouterr().err
    assert main(["annotate", "export", "--model_dir", str(tmp_path), "--format", "pdf", "--output", "x"]) == 2
    assert "needs --format" in capsys.readouterr().err
    assert main(["annotate", "--model_dir", str(tmp_path)]) == 2
    assert "missing --images" in capsys.readouterr().err
