"""``Detections``: one image's detections, the type evaluation and inference share."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from objdet.errors import DataError
from objdet.structures.detections import Detections
from objdet.structures.label_map import LabelMap
from objdet.structures.sample import Sample

LABEL_MAP = LabelMap.from_names(["raccoon", "fox"])


def two_detections() -> Detections:
    return Detections(
        boxes=[[10, 20, 30, 60], [0, 0, 100, 50]], scores=[0.9, 0.3], labels=[2, 7],
        masks=np.ones((2, 50, 100), np.uint8), image_size=(50, 100),
    )


def test_array_likes_are_coerced_to_the_documented_dtypes() -> None:
    detections = Detections(
        boxes=torch.tensor([[1.0, 2.0, 3.0, 4.0]]), scores=torch.tensor([0.5]),
        labels=np.array([1.0]),  # whole-number floats are ids
    )
    assert detections.boxes.dtype == np.float64 and detections.boxes.shape == (1, 4)
    assert detections.scores.dtype == np.float64 and detections.labels.dtype == np.int64
    assert len(detections) == 1 and detections.image_size is None
    empty = Detections(boxes=[], scores=[], labels=[])
    assert empty.boxes.shape == (0, 4) and len(empty) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"boxes": [[5, 0, 1, 1]], "scores": [0.5], "labels": [1]}, "box 0 is inverted"),
        ({"boxes": [[0, 0, 1, 1]], "scores": [float("nan")], "labels": [1]}, "score 0 is nan"),
        ({"boxes": [[0, 0, 1, 1]], "scores": [0.5, 0.4], "labels": [1]}, "1 boxes but 2 scores"),
        ({"boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [1.5]}, "integer label-map ids"),
        ({"boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [1], "image_size": (0, 4)},
         "image_size must be positive"),
    ],
)
def test_invariants_are_checked(fields: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Detections(**fields)


def test_above_and_select_keep_every_field() -> None:
    strong = two_detections().above(0.5)
    assert strong.labels.tolist() == [2] and strong.masks is not None and strong.masks.shape == (1, 50, 100)
    assert strong.image_size == (50, 100)


def test_normalized_layouts_at_the_edges() -> None:
    detections = two_detections()
    np.testing.assert_allclose(detections.normalized_boxes(),
                               [[0.4, 0.1, 1.2, 0.3], [0.0, 0.0, 1.0, 1.0]], rtol=1e-6)
    assert detections.normalized_boxes().dtype == np.float32
    outputs = detections.to_outputs(max_detections=3)
    assert outputs["detection_boxes"].shape == (1, 3, 4) and outputs["num_detections"].tolist() == [2]
    assert outputs["detection_classes"][0].tolist() == [2, 7, 0]  # zero-padded
    with pytest.raises(DataError, match="need the image size"):
        Detections(boxes=[[0, 0, 1, 1]], scores=[1], labels=[1]).to_outputs(1)


def test_json_names_classes_through_the_label_map() -> None:
    document = two_detections().to_json(LABEL_MAP)
    assert (document["image_height"], document["image_width"], document["num_detections"]) == (50, 100, 2)
    first, second = document["detections"]
    assert first == {"box_normalized_yxyx": [0.4, 0.1, 1.2, 0.3], "box_xyxy": [10.0, 20.0, 30.0, 60.0],
                     "score": 0.9, "class": 2, "class_name": "fox"}
    assert second["class_name"] == "class 7"  # not in the label map
    assert two_detections().class_names(None) == ["class 2", "class 7"]


def test_from_model_output_thresholds_masks_and_drops_keypoint_visibility() -> None:
    output = {
        "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "scores": torch.tensor([0.8]),
        "labels": torch.tensor([1]), "masks": torch.tensor([[[[0.2, 0.7], [0.5, 0.1]]]]),
        "keypoints": torch.tensor([[[1.0, 2.0, 1.0]]]),
    }
    detections = Detections.from_model_output(output, image_size=(2, 2))
    assert detections.masks is not None and detections.masks.tolist() == [[[0, 1], [1, 0]]]
    assert detections.keypoints is not None and detections.keypoints.tolist() == [[[1.0, 2.0]]]
    with pytest.raises(DataError, match=r"model output lacks \['scores'\]"):
        Detections.from_model_output({"boxes": output["boxes"], "labels": output["labels"]})


def test_from_sample_reads_stored_detections() -> None:
    sample = Sample(height=50, width=100, source_id="a")
    with pytest.raises(DataError, match="'a' has no detection_boxes"):
        Detections.from_sample(sample)
    sample.detection_boxes = torch.zeros((0, 4))
    sample.detection_scores = torch.zeros(0)
    sample.detection_labels = torch.zeros(0, dtype=torch.int64)
    detections = Detections.from_sample(sample)  # stored but empty: zero detections
    assert len(detections) == 0 and detections.image_size == (50, 100)


def test_evaluation_does_not_import_torch() -> None:
    """Detections and the evaluators are numpy-only: eval-coco starts without torch."""
    code = (
        "import sys, objdet.structures.detections, objdet.evaluation.coco, "
        "objdet.evaluation.registry, objdet.evaluation.offline; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
