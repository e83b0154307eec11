"""Open Images V2 and challenge protocols on a hand-computed case; hierarchy expansion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from objdet.errors import DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.open_images import (
    LabelHierarchy,
    OpenImagesDetectionChallengeEvaluator,
    OpenImagesDetectionEvaluator,
    OpenImagesInstanceSegmentationChallengeEvaluator,
    expand_annotations_csv,
)
from objdet.structures.detections import Detections

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}, {"id": 3, "name": "tree"}]


def feed(evaluator: object) -> None:
    """Image A: a person group-of box holding two detections (0.9, 0.8), a single person
    (0.7 TP) with a 0.75 FP, a car flagged difficult (read only by PASCAL).
    Image B: no boxes; car verified absent (0.95 car FP), person unverified (0.99 person)."""
    evaluator.add_ground_truth(
        "A",
        GroundTruth(  # type: ignore[attr-defined]
            boxes=[[0, 0, 100, 100], [200, 200, 300, 300], [0, 0, 10, 10]],
            labels=[1, 1, 2],
            group_of=[True, False, False],
            difficult=[False, False, True],
            image_labels=[1, 2],
        ),
    )
    evaluator.add_detections(
        "A",
        Detections(  # type: ignore[attr-defined]
            boxes=[
                [10, 10, 30, 30],
                [40, 40, 60, 60],
                [200, 200, 300, 300],
                [500, 500, 510, 510],
                [0, 0, 10, 10],
                [0, 0, 5, 5],
            ],
            scores=[0.9, 0.8, 0.7, 0.75, 0.5, 0.4],
            labels=[1, 1, 1, 1, 2, 3],
        ),
    )
    evaluator.add_ground_truth(
        "B",
        GroundTruth(  # type: ignore[attr-defined]
            boxes=np.zeros((0, 4)),
            labels=[],
            image_labels=[],
            negative_image_labels=[2],
        ),
    )
    evaluator.add_detections(
        "B",
        Detections(  # type: ignore[attr-defined]
            boxes=[[0, 0, 10, 10], [0, 0, 10, 10]],
            scores=[0.95, 0.99],
            labels=[2, 1],
        ),
    )


def test_oid_v2_ignores_detections_in_group_of_boxes() -> None:
    evaluator = OpenImagesDetectionEvaluator(CATEGORIES)
    feed(evaluator)
    metrics = evaluator.evaluate()
    # person: 1 object; .99 FP (B), .75 FP, .7 TP -> precision 1/3 at recall 1
    assert metrics["OpenImagesV2_PerformanceByCategory/AP@0.5IOU/person"] == pytest.approx(1 / 3)
    # car: difficult is not read; .95 FP (B), .5 TP -> 0.5
    assert metrics["OpenImagesV2_PerformanceByCategory/AP@0.5IOU/car"] == pytest.approx(0.5)
    assert math.isnan(metrics["OpenImagesV2_PerformanceByCategory/AP@0.5IOU/tree"])
    assert metrics["OpenImagesV2_Precision/mAP@0.5IOU"] == pytest.approx((1 / 3 + 0.5) / 2)


def test_oid_challenge_counts_group_of_and_verified_labels() -> None:
    evaluator = OpenImagesDetectionChallengeEvaluator(CATEGORIES)
    feed(evaluator)
    metrics = evaluator.evaluate()
    # person: 2 objects (the group-of box weighs 1); B's person is unverified: dropped.
    # entries .9 T (group), .75 F, .7 T -> 0.5 * 1 + 0.5 * 2/3
    person = metrics["OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/person"]
    assert person == pytest.approx(0.5 + 0.5 * 2 / 3)
    # car: verified absent in B, so its 0.95 detection is a FP: .95 F, .5 T -> 0.5
    car = metrics["OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/car"]
    assert car == pytest.approx(0.5)
    assert metrics["OpenImagesDetectionChallenge_Precision/mAP@0.5IOU"] == pytest.approx(
        (person + car) / 2
    )
    assert evaluator.num_unverified_detections == 2  # A's tree and B's person


def test_oid_challenge_segmentation_ignores_objects_without_masks() -> None:
    evaluator = OpenImagesInstanceSegmentationChallengeEvaluator(CATEGORIES)
    gt_masks = np.zeros((2, 10, 10), np.uint8)
    gt_masks[0, :, :5] = 1
    evaluator.add_ground_truth(
        "A",
        GroundTruth(
            boxes=[[0, 0, 5, 10], [5, 0, 10, 10]],
            labels=[1, 1],
            masks=gt_masks,
            image_labels=[1],
        ),
    )
    det_masks = np.zeros((3, 10, 10), np.uint8)
    det_masks[0, :, :5] = 1
    det_masks[1, :, 5:] = 1
    det_masks[2, :2, :2] = 1
    evaluator.add_detections(
        "A",
        Detections(
            boxes=[[0, 0, 5, 10], [5, 0, 10, 10], [0, 0, 2, 2]],
            scores=[0.9, 0.8, 0.95],
            labels=[1, 1, 1],
            masks=det_masks,
        ),
    )
    metrics = evaluator.evaluate()
    # 1 counted object; .95 F, .9 T; the .8 detection of the mask-less object is dropped.
    name = "OpenImagesInstanceSegmentationChallenge_Precision/mAP@0.5IOU"
    assert metrics[name] == pytest.approx(0.5)


HIERARCHY = {
    "LabelName": "/m/root",
    "Subcategory": [
        {
            "LabelName": "/m/animal",
            "Subcategory": [
                {"LabelName": "/m/cat"},
                {"LabelName": "/m/dog", "Subcategory": [{"LabelName": "/m/puppy"}]},
            ],
        },
        {"LabelName": "/m/pet", "Subcategory": [{"LabelName": "/m/dog"}]},
    ],
}


def test_hierarchy_ancestors_and_descendants() -> None:
    hierarchy = LabelHierarchy.from_json(HIERARCHY)
    assert hierarchy.ancestors["/m/dog"] == {"/m/animal", "/m/pet"}
    # As in the OD API, a node's ancestors come from the occurrences that list it: /m/dog
    # under /m/pet has no Subcategory, so /m/puppy is not under /m/pet.
    assert hierarchy.ancestors["/m/puppy"] == {"/m/dog", "/m/animal"}
    assert hierarchy.descendants["/m/animal"] == {"/m/cat", "/m/dog", "/m/puppy"}
    assert "/m/root" not in hierarchy.ancestors  # the virtual root is skipped
    with pytest.raises(DataError, match="not in the label hierarchy"):
        hierarchy.expand("/m/car", True, "file.csv:3")


def test_expand_csv_files(tmp_path: Path) -> None:
    hierarchy_path = tmp_path / "hierarchy.json"
    hierarchy_path.write_text(json.dumps(HIERARCHY))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\nimg,/m/dog,0,1,0,1,0\n")
    out = tmp_path / "out.csv"
    assert expand_annotations_csv(hierarchy_path, boxes, out, 1) == (1, 3)
    assert out.read_text().splitlines() == [
        "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf",
        "img,/m/dog,0,1,0,1,0",
        "img,/m/animal,0,1,0,1,0",
        "img,/m/pet,0,1,0,1,0",
    ]
    labels = tmp_path / "labels.csv"
    labels.write_text("ImageID,Source,LabelName,Confidence\na,h,/m/animal,0\na,h,/m/cat,1\n")
    assert expand_annotations_csv(hierarchy_path, labels, out, 2) == (2, 6)
    assert out.read_text().splitlines()[1:] == [
        "a,h,/m/animal,0",
        "a,h,/m/cat,0",
        "a,h,/m/dog,0",
        "a,h,/m/puppy,0",
        "a,h,/m/cat,1",
        "a,h,/m/animal,1",
    ]


def test_expand_rejects_unknown_labels_with_line(tmp_path: Path) -> None:
    hierarchy_path = tmp_path / "hierarchy.json"
    hierarchy_path.write_text(json.dumps(HIERARCHY))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("ImageID,LabelName\nimg,/m/dog\nimg,/m/car\n")
    with pytest.raises(DataError, match=r"boxes.csv:3: label '/m/car'"):
        expand_annotations_csv(hierarchy_path, boxes, tmp_path / "out.csv", 1)
    assert not (tmp_path / "out.csv").exists()  # atomic: nothing half-written
