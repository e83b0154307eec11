"""What each meta-architecture exports beyond SSD (tests/models/test_contract.py): Faster
R-CNN's program with its first-stage NMS inside and the window input it needs, and its
model.onnx (both stages, both NMS steps, any batch size); a format a family cannot go to yet
fails with one line naming it, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from objdet import config as cfg
from objdet.engine.checkpoint import CheckpointManager
from objdet.errors import ConfigError
from objdet.export.exporter import export_inference_graph
from objdet.export.graph import check_exportable, fixed_canvas_size
from objdet.export.onnx_graph import export_onnx, onnx_unsupported_reason
from objdet.inference.predictor import OnnxPredictor, Predictor
from objdet.models import build_model
from objdet.models.meta_arch.faster_rcnn import true_image_shapes
from objdet.structures.detections import Detections
from objdet.structures.label_map import LabelMap

FASTER_RCNN = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_faster_rcnn" / "pipeline.config"


@pytest.fixture(scope="module")
def faster_rcnn_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A Faster R-CNN (ResNet-50, 128x128 canvas, random weights) checkpoint, exported."""
    root = tmp_path_factory.mktemp("faster_rcnn")
    config = cfg.load(FASTER_RCNN)
    LabelMap.from_names(["raccoon", "fox"]).save(root / "label_map.pbtxt")
    config.train_input_reader.label_map_path = str(root / "label_map.pbtxt")
    config.eval_input_reader[0].label_map_path = str(root / "label_map.pbtxt")
    cfg.save(config, root / "pipeline.config")
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    CheckpointManager(root / "model_dir").save(1, {"model": model.state_dict()})
    export_inference_graph(pipeline_config_path=root / "pipeline.config",
                           trained_checkpoint_dir=root / "model_dir",
                           output_directory=root / "exported",
                           formats=("pt2", "onnx"))  # detector.pt2: test_faster_rcnn_program.py
    return model, root / "exported"


def test_faster_rcnn_export_detects_as_eval_mode(
    faster_rcnn_export: tuple[torch.nn.Module, Path],
) -> None:
    model, directory = faster_rcnn_export
    signature = json.loads((directory / "signature.json").read_text())
    assert list(signature["graph"]["inputs"]) == ["preprocessed_inputs", "true_image_shapes"]
    assert json.loads((directory / "export.json").read_text())["formats"] == ["pt2", "onnx"]
    predictor = Predictor.from_export(directory, runtime="torch")
    # a wide image: resized to 48x128 on the 128x128 canvas, so proposals are clipped to a
    # window the canvas alone does not give
    image = np.random.default_rng(0).integers(0, 256, (48, 128, 3), dtype=np.uint8)
    found = predictor.detect(image)
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        reference = model([pixels])[0]
    assert len(reference["scores"]) > 0 and len(found.scores) == len(reference["scores"])
    torch.testing.assert_close(torch.as_tensor(found.scores).float(), reference["scores"],
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.as_tensor(found.boxes).float(), reference["boxes"],
                               atol=1e-2, rtol=0)


def test_the_window_input_reaches_the_first_stage(
    faster_rcnn_export: tuple[torch.nn.Module, Path],
) -> None:
    """``true_image_shapes`` is a real input of model.pt2: a smaller window clips proposals."""
    _, directory = faster_rcnn_export
    graph = torch.export.load(directory / "model.pt2").module()
    canvas = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    outputs = {size: graph(canvas, true_image_shapes([size])) for size in ((128, 128), (48, 128))}
    whole, window = outputs[128, 128][3], outputs[48, 128][3]  # proposal_boxes [1, P, 4]
    assert float(whole[0, :, 3].max()) > 48 and float(window[0, :, 3].max()) <= 48


def _assert_detections_equal(found: Detections, reference: dict[str, torch.Tensor]) -> None:
    assert len(found.scores) == len(reference["scores"]) > 0
    np.testing.assert_allclose(found.scores, reference["scores"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(found.labels, reference["labels"].numpy())
    np.testing.assert_allclose(found.boxes, reference["boxes"].numpy(), atol=1e-2, rtol=0)


def _eval_mode(model: torch.nn.Module, image: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0]


def test_faster_rcnn_onnx_detects_as_eval_mode_for_any_batch(
    faster_rcnn_export: tuple[torch.nn.Module, Path],
) -> None:
    """model.onnx (exported with a batch of 2) on batches of 1 and 3 wide images: proposals
    clipped to the 48x128 window, class-specific boxes, every image its own detections."""
    model, directory = faster_rcnn_export
    predictor = Predictor.from_export(directory, runtime="onnxruntime")
    assert isinstance(predictor, OnnxPredictor)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 48, 128, 3), dtype=np.uint8)
    together = predictor.predict_batch(images)
    for image, found in zip(images, together, strict=True):
        reference = _eval_mode(model, image)
        _assert_detections_equal(found, reference)
        _assert_detections_equal(predictor.predict_batch(image[None])[0], reference)


def test_faster_rcnn_onnx_with_shared_boxes_and_a_score_threshold() -> None:
    """share_box_across_classes (one box per proposal for every class), narrow images whose
    window leaves empty proposal slots (padded rows must not detect) and a score threshold
    that leaves each image fewer detections than max_total_detections."""
    config = cfg.load(FASTER_RCNN).model
    config.faster_rcnn.second_stage_box_predictor.mask_rcnn_box_predictor.share_box_across_classes = True
    nms = config.faster_rcnn.second_stage_post_processing.batch_non_max_suppression
    nms.score_threshold, nms.max_total_detections = 0.34, 40
    torch.manual_seed(1)
    model = build_model(config).eval()
    session = onnxruntime.InferenceSession(export_onnx(model, (128, 128)).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    images = np.random.default_rng(4).integers(0, 256, (2, 128, 24, 3), dtype=np.uint8)
    boxes, scores, classes, counts = session.run(None, {"input_tensor": images})
    canvas = model.resize_batch([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
                                 for image in images])
    with torch.no_grad():
        num_proposals = model.predict(canvas.images, true_image_shapes(canvas.resized_sizes))["num_proposals"]
    assert int(num_proposals.max()) < model.first_stage_max_proposals
    for index, image in enumerate(images):
        reference = _eval_mode(model, image)
        count = int(counts[index])
        assert 0 < count == len(reference["scores"]) < 40
        found = Detections(boxes=boxes[index, :count][:, [1, 0, 3, 2]] * np.array([24, 128, 24, 128]),
                           scores=scores[index, :count], labels=classes[index, :count].astype(np.int64),
                           image_size=(128, 24))
        _assert_detections_equal(found, reference)
        assert not scores[index, count:].any()


def test_a_family_without_an_onnx_graph_is_refused_before_writing(
    faster_rcnn_export: tuple[torch.nn.Module, Path],
) -> None:
    root = faster_rcnn_export[1].parent
    assert "Linear meta-architecture has no ONNX graph yet" in (
        onnx_unsupported_reason(torch.nn.Linear(2, 2)) or "")
    with pytest.raises(ConfigError, match="interpolation 'area' has no ONNX Resize mode"):
        export_inference_graph(
            pipeline_config_path=root / "pipeline.config", trained_checkpoint_dir=root / "model_dir",
            output_directory=root / "onnx", formats=("pt2", "onnx"),
            overrides=["model.faster_rcnn.image_resizer.keep_aspect_ratio_resizer.resize_method=AREA"])
    assert not (root / "onnx").exists()


def test_a_canvas_that_varies_is_refused_naming_the_field() -> None:
    config = cfg.load(FASTER_RCNN)
    config.model.faster_rcnn.image_resizer.keep_aspect_ratio_resizer.pad_to_max_dimension = False
    model = build_model(config.model)
    with pytest.raises(ConfigError, match=r"^model\.faster_rcnn\.image_resizer\.keep_aspect_ratio_"
                                          r"resizer\.pad_to_max_dimension: export needs a fixed"):
        fixed_canvas_size(check_exportable(model))
