"""TFRecords as ``--images``, end to end through a real server: the images are served from
the records, answers are written with record keys, a damaged record is skipped and counted
with its file and record number, and a file that is not TFRecords is a one-line error."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from annotate_server import LABEL_MAP, TEST_RECORD, AnnotateServer, ProjectFiles, make_project

from objdet.cli.main import main
from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.protos import example_pb2


def write_records(path: Path) -> list[bytes]:
    """Three raccoon records, then one whose payload is damaged (its CRC no longer matches)
    and one tf.Example without image/encoded; returns the three records' JPEGs."""
    records = [bytes(record) for _, record in zip(range(3), read_records(str(TEST_RECORD)))]
    jpegs = []
    for record in records:
        example = example_pb2.Example()
        example.ParseFromString(record)
        jpegs.append(bytes(example.features.feature["image/encoded"].bytes_list.value[0]))
    no_image = example_pb2.Example()
    no_image.features.feature["image/filename"].bytes_list.value.append(b"nothing.jpg")
    with TFRecordWriter(path) as writer:
        for record in [*records, records[0], no_image.SerializeToString()]:
            writer.write(record)
    data = bytearray(path.read_bytes())
    damaged_at = 3 * 16 + sum(len(r) for r in records) + 12 + 100  # inside the 4th payload
    data[damaged_at] ^= 0xFF
    path.write_bytes(bytes(data))
    return jpegs


def test_tfrecords_are_served_answered_and_bad_records_skipped(tmp_path: Path) -> None:
    record = tmp_path / "mixed.record"
    jpegs = write_records(record)
    files = make_project(tmp_path / "project", num_images=0)
    project = ProjectFiles(record, files.config, LABEL_MAP, files.model_dir, [])
    server = AnnotateServer(project, "--no_train", "--order", "file")
    try:
        keys = []
        while (task := server.next_task("rec")) is not None:
            status, image = server.request("GET", task["image"])
            assert status == 200 and image == jpegs[len(keys)]  # the record's bytes, unchanged
            server.answer(task, "accept", "rec", [{"box_xyxy": [10, 20, 110, 120], "label": "raccoon"}])
            keys.append(task["key"])
        assert keys == ["mixed.record#0", "mixed.record#1", "mixed.record#2"]
        _, status = server.request("GET", "/api/status")
        assert (status["answered"], status["total"], status["bad_images"]) == (3, 3, 2)
        problems = "\n".join(status["bad_examples"])
        assert "mixed.record" in problems and "record 3" in problems and "crc" in problems.lower()
        assert "no single image/encoded" in problems
        with sqlite3.connect(project.model_dir / "annotate" / "answers.sqlite") as connection:
            rows = connection.execute("SELECT i.key, a.answer, a.boxes FROM answers a "
                                      "JOIN images i ON i.id = a.image_id ORDER BY a.id").fetchall()
        assert rows == [(key, "accept", "[[10.0, 20.0, 110.0, 120.0]]") for key in keys]
        _, exported = server.request("GET", "/api/export?format=jsonl")
        assert [json.loads(line)["spans"][0]["label"] for line in exported.decode().splitlines()] == ["raccoon"] * 3
    finally:
        assert server.stop() == 0, server.log()


def test_a_file_that_is_not_tfrecords_is_a_one_line_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    files = make_project(tmp_path, num_images=0)
    broken = tmp_path / "broken.record"
    broken.write_bytes(TEST_RECORD.read_bytes()[:5000] + b"\x00" * 7)  # cut inside a record
    code = main(["annotate", "--images", str(broken), "--label_map_path", str(LABEL_MAP),
                 "--pipeline_config_path", str(files.config), "--model_dir", str(files.model_dir),
                 "--no_train", "--port", "0"])  # fails before it listens
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1, error
    assert "--images" in error and "broken.record: record 0" in error and "Traceback" not in error
