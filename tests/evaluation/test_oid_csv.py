"""Open Images challenge evaluation from CSV files, and the two OID commands."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from objdet.errors import DataError
from objdet.evaluation.oid_csv import decode_oid_mask, evaluate_challenge
from objdet.evaluation.reports import read_metrics_csv

LABEL_MAP = 'item { id: 1 name: "/m/person" }\nitem { id: 2 name: "/m/car" }\n'
BOXES = """ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside
A,h,/m/person,1,0.0,0.5,0.0,0.5,0,0,1,0,0
A,h,/m/person,1,0.6,0.8,0.6,0.8,0,0,0,0,0
A,h,/m/car,1,0.0,0.1,0.9,1.0,0,0,0,0,0
"""
LABELS = "ImageID,Source,LabelName,Confidence\nA,h,/m/person,1\nA,h,/m/car,1\nB,h,/m/car,0\n"
# Same protocol case as test_open_images: two detections in the group-of box, a TP, a FP,
# a car TP; in B a car FP (verified absent) and an unverified person (dropped); an image
# C without ground truth (skipped and counted).
PREDICTIONS = """ImageID,LabelName,Score,XMin,XMax,YMin,YMax
A,/m/person,0.9,0.05,0.15,0.05,0.15
A,/m/person,0.8,0.2,0.3,0.2,0.3
A,/m/person,0.7,0.6,0.8,0.6,0.8
A,/m/person,0.75,0.9,0.95,0.9,0.95
A,/m/car,0.5,0.0,0.1,0.9,1.0
B,/m/car,0.95,0.0,0.1,0.0,0.1
B,/m/person,0.99,0.0,0.1,0.0,0.1
C,/m/car,0.5,0.0,0.1,0.0,0.1
"""


def write_inputs(tmp_path: Path) -> dict[str, Path]:
    files = {"boxes": BOXES, "labels": LABELS, "labelmap": LABEL_MAP, "predictions": PREDICTIONS}
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def test_challenge_detection_metric_from_csv(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path)
    result = evaluate_challenge(
        paths["boxes"], paths["labels"], paths["labelmap"], paths["predictions"]
    )
    assert result.num_images == 2
    assert result.num_prediction_images_without_ground_truth == 1
    person = 0.5 + 0.5 * 2 / 3
    metrics = result.metrics
    name = "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/person"
    assert metrics[name] == pytest.approx(person)
    assert metrics["OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"] == pytest.approx(
        (person + 0.5) / 2
    )


def test_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path)
    paths["predictions"].write_text(PREDICTIONS + "A,/m/boat,0.5,0,0.1,0,0.1\n")
    with pytest.raises(DataError, match=r"predictions.csv:10: LabelName '/m/boat'"):
        evaluate_challenge(paths["boxes"], paths["labels"], paths["labelmap"], paths["predictions"])


def encode_mask(mask: np.ndarray) -> str:
    rle = coco_mask.encode(np.asfortranarray(mask))
    return base64.b64encode(zlib.compress(rle["counts"])).decode()


def test_mask_decoding_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    mask = (rng.random((13, 7)) > 0.6).astype(np.uint8)
    np.testing.assert_array_equal(decode_oid_mask(encode_mask(mask), 13, 7, "x"), mask)
    with pytest.raises(DataError, match="covers"):
        decode_oid_mask(encode_mask(mask), 7, 7, "row 3")


def test_challenge_segmentation_metric_from_csv(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path)
    person = np.zeros((10, 10), np.uint8)
    person[6:8, 6:8] = 1
    segm = tmp_path / "segm.csv"
    segm.write_text(
        "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf,ImageWidth,ImageHeight,Mask\n"
        f"A,/m/person,0.6,0.8,0.6,0.8,0,10,10,{encode_mask(person)}\n"
    )
    wrong = np.zeros((10, 10), np.uint8)
    wrong[9:10, 0:2] = 1
    in_group = np.zeros((10, 10), np.uint8)
    in_group[0:2, 0:2] = 1  # inside the mask-less group-of box: an ignore region
    paths["predictions"].write_text(
        "ImageID,LabelName,Score,ImageWidth,ImageHeight,Mask\n"
        f"A,/m/person,0.9,10,10,{encode_mask(person)}\n"
        f"A,/m/person,0.95,10,10,{encode_mask(wrong)}\n"
        f"A,/m/person,0.99,10,10,{encode_mask(in_group)}\n"
    )
    result = evaluate_challenge(
        paths["boxes"], paths["labels"], paths["labelmap"], paths["predictions"], segm
    )
    # 1 person with a mask (the group-of box has none: ignored); .95 FP, .9 TP -> 0.5.
    name = "OpenImagesInstanceSegmentationChallenge_PerformanceByCategory/AP@0.5IOU//m/person"
    assert result.metrics[name] == pytest.approx(0.5)


def test_oid_challenge_eval_command(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path)
    output = tmp_path / "metrics.csv"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "objdet",
            "oid-challenge-eval",
            f"--input_annotations_boxes={paths['boxes']}",
            f"--input_annotations_labels={paths['labels']}",
            f"--input_class_labelmap={paths['labelmap']}",
            f"--input_predictions={paths['predictions']}",
            f"--output_metrics={output}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "skipped 1 prediction images" in completed.stdout
    metrics = read_metrics_csv(output)
    assert metrics["OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"] == pytest.approx(
        (0.5 + 0.5 * 2 / 3 + 0.5) / 2
    )


def test_oid_expand_hierarchy_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from objdet.cli.main import main

    hierarchy = {
        "LabelName": "/m/root",
        "Subcategory": [{"LabelName": "/m/vehicle", "Subcategory": [{"LabelName": "/m/car"}]}],
    }
    (tmp_path / "h.json").write_text(json.dumps(hierarchy))
    (tmp_path / "in.csv").write_text(LABELS.replace("/m/person", "/m/vehicle"))
    args = [
        "oid-expand-hierarchy",
        f"--json_hierarchy_file={tmp_path / 'h.json'}",
        f"--input_annotations={tmp_path / 'in.csv'}",
        f"--output_annotations={tmp_path / 'out.csv'}",
        "--annotation_type=2",
    ]
    assert main(args) == 0
    assert "read 3 rows, wrote 4 rows" in capsys.readouterr().out
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == [
        "A,h,/m/vehicle,1",
        "A,h,/m/car,1",
        "A,h,/m/vehicle,1",
        "B,h,/m/car,0",
    ]
    (tmp_path / "in.csv").write_text("ImageID,Confidence\nA,1\n")
    assert main(args) == 2
    assert "no LabelName column" in capsys.readouterr().err
