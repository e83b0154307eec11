"""Export -> Predictor equals the checkpoint model in eval mode, for every input_type."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_detector import (
    MAX_DETECTIONS,
    TinyTraining,
    example_bytes,
    png_bytes,
    reference_detections,
    sample_image,
)

from objdet.export.signature import shape_matches
from objdet.inference.predictor import Predictor
from objdet.structures.boxes import xyxy_to_normalized_yxyx

TOLERANCE = 1e-4
IMAGE = sample_image()
INPUTS = {
    "image_tensor": IMAGE[None],  # uint8 [1, H, W, 3], the OD API's image_tensor
    "float_image_tensor": IMAGE[None].astype(np.float32),  # float32 0..255
    "encoded_image_string_tensor": [png_bytes(IMAGE)],
    "tf_example": [example_bytes(IMAGE)],
}


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("input_type", list(INPUTS))
def test_exported_outputs_equal_the_checkpoint_model(
    input_type: str, runtime: str, exported: Callable[[str], Path], tiny_training: TinyTraining,
    predictor_for: Callable[[str], Predictor],
) -> None:
    predictor = (predictor_for(input_type) if runtime == "torch"
                 else Predictor.from_export(exported(input_type), runtime=runtime))
    assert predictor.input_type == input_type
    outputs = predictor(INPUTS[input_type])
    expected = reference_detections(tiny_training.reference, IMAGE)
    count = len(expected["scores"])
    assert 0 < count <= MAX_DETECTIONS and int(outputs["num_detections"][0]) == count
    height, width = IMAGE.shape[:2]
    expected_boxes = xyxy_to_normalized_yxyx(expected["boxes"], height, width).numpy()
    np.testing.assert_allclose(outputs["detection_boxes"][0, :count], expected_boxes, atol=TOLERANCE)
    np.testing.assert_allclose(outputs["detection_scores"][0, :count], expected["scores"], atol=TOLERANCE)
    np.testing.assert_array_equal(outputs["detection_classes"][0, :count], expected["labels"].numpy())
    assert not outputs["detection_scores"][0, count:].any()  # padding rows are zero
    signature = json.loads((exported(input_type) / "signature.json").read_text())
    assert set(outputs) == set(signature["outputs"])
    for name, spec in signature["outputs"].items():
        assert shape_matches(spec["shape"], outputs[name].shape), name
        assert str(outputs[name].dtype) == spec["dtype"], name


def test_graph_and_eager_weights_and_checkpoint_agree(
    exported: Callable[[str], Path], tiny_training: TinyTraining,
    predictor_for: Callable[[str], Predictor],
) -> None:
    predictor = predictor_for("image_tensor")
    from_graph = predictor.detect(IMAGE)
    eager = Predictor.from_export(exported("image_tensor"), use_graph=False).detect(IMAGE)
    checkpoint = Predictor.from_checkpoint(
        tiny_training.config_path, tiny_training.checkpoint_dir).detect(Image.fromarray(IMAGE))
    for other in (eager, checkpoint):
        np.testing.assert_allclose(from_graph.boxes, other.boxes, atol=TOLERANCE * 100)  # pixels
        np.testing.assert_allclose(from_graph.scores, other.scores, atol=TOLERANCE)
        np.testing.assert_array_equal(from_graph.labels, other.labels)
    assert set(from_graph.class_names(predictor.label_map)) <= {"raccoon", "fox"}
    strong = from_graph.above(0.5)
    assert len(strong) and (strong.scores >= 0.5).all()


def test_detections_json_has_both_layouts(predictor_for: Callable[[str], Predictor]) -> None:
    predictor = predictor_for("image_tensor")
    document = predictor.detect(IMAGE, min_score=0.5).to_json(predictor.label_map)
    first = document["detections"][0]
    x1, _, _, y2 = first["box_xyxy"]
    _, xmin, ymax, _ = first["box_normalized_yxyx"]
    assert (document["image_height"], document["image_width"]) == IMAGE.shape[:2]
    assert x1 == pytest.approx(xmin * IMAGE.shape[1], abs=1e-3)
    assert y2 == pytest.approx(ymax * IMAGE.shape[0], abs=1e-3)
    assert first["class_name"] in {"raccoon", "fox"}


def test_from_export_of_a_non_export_directory(tmp_path: Path) -> None:
    from objdet.errors import ObjdetError

    with pytest.raises(ObjdetError, match="not an objdet export directory; missing model.pt2"):
        Predictor.from_export(tmp_path)
    with pytest.raises(ObjdetError, match="does not exist"):
        Predictor.from_export(tmp_path / "missing")
