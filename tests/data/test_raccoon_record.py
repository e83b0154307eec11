"""The TensorFlow-written raccoon test.record decodes to exactly the boxes of its CSV."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import torch

from objdet.data.example import ExampleDecoder
from objdet.data.tfrecord import read_records_with_source
from objdet.data.tfrecord_index import count_records
from objdet.structures.label_map import load_label_map


def csv_boxes(path: Path) -> dict[str, list[list[float]]]:
    """filename -> sorted [x1, y1, x2, y2] boxes (pixels) from the OD API tutorial's CSV."""
    boxes: dict[str, list[list[float]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            assert row["class"] == "raccoon"
            boxes[row["filename"]].append([float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    return {name: sorted(found) for name, found in boxes.items()}


def test_raccoon_record_matches_its_csv(raccoon_dir: Path) -> None:
    record = raccoon_dir / "tfrecord" / "test.record"
    expected = csv_boxes(raccoon_dir / "test_labels.csv")
    decoder = ExampleDecoder(load_label_map(raccoon_dir / "object-detection.pbtxt"))
    assert count_records(record) == 40
    seen: dict[str, list[list[float]]] = {}
    for source, data in read_records_with_source(record):
        sample = decoder(data, source)
        assert sample.image is not None
        assert tuple(sample.image.shape) == (3, sample.height, sample.width), source
        assert sample.labels.tolist() == [1] * sample.num_objects
        assert sample.label_texts == ["raccoon"] * sample.num_objects
        seen[sample.filename] = sorted(sample.boxes.tolist())
    assert len(seen) == 40 and set(seen) == set(expected)
    assert sum(len(boxes) for boxes in seen.values()) == 44
    for filename, boxes in seen.items():
        torch.testing.assert_close(
            torch.tensor(boxes, dtype=torch.float64),
            torch.tensor(expected[filename], dtype=torch.float64),
            atol=1e-4,
            rtol=0,
            msg=lambda text, name=filename: f"{name}: {text}",
        )
