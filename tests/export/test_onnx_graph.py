"""model.onnx: pre-processing, network and NMS in one graph, run by ONNX Runtime.

Each part is checked against the eager code it replaces: the pre-processing graph against
``model.resize_batch``, the post-processing graph against ``BatchNonMaxSuppression`` on random
inputs (clip windows, caps, empty images; per class and class-agnostic), and the whole export
against the checkpoint model for batches of 1, 3 and 8 images (a whole class-agnostic SSD:
test_detector_program.py, which exports it once for both runtimes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper
from tiny_detector import TinyTraining, reference_detections, sample_image

from objdet import config as cfg
from objdet.errors import ConfigError, ObjdetError
from objdet.export.onnx_builder import RESIZED_SIZE
from objdet.export.onnx_graph import _preprocessing, export_onnx
from objdet.export.onnx_nms import postprocessing_graph
from objdet.export.onnx_trace import OPSET
from objdet.inference.predictor import OnnxPredictor, Predictor
from objdet.models import build_model
from objdet.models.image_resizers import FixedShapeResizer, KeepAspectRatioResizer
from objdet.models.postprocessing import BatchNonMaxSuppression
from objdet.protos import image_resizer_pb2

TOLERANCE = 1e-4


def _session(nodes, initializers, inputs, outputs) -> onnxruntime.InferenceSession:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "part", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _tiny_model(resizer: FixedShapeResizer | KeepAspectRatioResizer, tiny_config: Path):  # type: ignore[no-untyped-def]
    model = build_model(cfg.load(tiny_config).model).eval()
    model.image_resizer = resizer
    return model


@pytest.mark.parametrize("resizer, canvas", [
    (FixedShapeResizer(height=64, width=48), (64, 48)),
    (FixedShapeResizer(height=64, width=48, interpolation="nearest"), (64, 48)),
    (KeepAspectRatioResizer(min_dimension=40, max_dimension=64, pad_to_max_dimension=True), (64, 64)),
    (KeepAspectRatioResizer(min_dimension=37, max_dimension=37, pad_to_max_dimension=True), (37, 37)),
])
def test_preprocessing_graph_equals_resize_batch(resizer, canvas, tiny_config_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = _tiny_model(resizer, tiny_config_path)
    part = _preprocessing(model, canvas)
    session = _session(part.nodes, part.initializers,
                       [helper.make_tensor_value_info("input_tensor", TensorProto.UINT8, [None, None, None, 3])],
                       [helper.make_tensor_value_info("canvas", TensorProto.FLOAT, [None, 3, None, None]),
                        helper.make_tensor_value_info(RESIZED_SIZE, TensorProto.INT64, [2])])
    rng = np.random.default_rng(0)
    # up- and down-sampling, both aspect ratios, a size that rounds half way (75 * 40/50 = 60)
    for height, width in ((30, 50), (120, 90), (64, 48), (7, 200), (75, 50)):
        pixels = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        canvas_found, resized = session.run(None, {"input_tensor": pixels})
        expected = model.resize_batch([torch.from_numpy(p).permute(2, 0, 1).float() / 255 for p in pixels])
        assert tuple(resized) == expected.resized_sizes[0], (height, width)
        np.testing.assert_allclose(canvas_found, expected.images.numpy(), atol=1e-6,
                                   err_msg=f"{height}x{width}")


def _postprocess_session(nms: BatchNonMaxSuppression) -> onnxruntime.InferenceSession:
    part = postprocessing_graph(nms)
    inputs = [helper.make_tensor_value_info("decoded_boxes", TensorProto.FLOAT, [None, None, 4]),
              helper.make_tensor_value_info("class_scores", TensorProto.FLOAT, [None, None, None]),
              helper.make_tensor_value_info(RESIZED_SIZE, TensorProto.INT64, [2])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * (3 if name == "detection_boxes" else 2 if name != "num_detections" else 1)) for name in
               ("detection_boxes", "detection_scores", "detection_classes", "num_detections")]
    return _session(part.nodes, part.initializers, inputs, outputs)


@pytest.mark.parametrize("seed", range(6))
def test_postprocessing_graph_equals_batch_non_max_suppression(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, anchors, classes = int(rng.integers(1, 5)), int(rng.integers(1, 300)), int(rng.integers(1, 7))
    nms = BatchNonMaxSuppression(
        score_threshold=float(rng.choice([0.0, 0.3, 0.9])), iou_threshold=float(rng.uniform(0.3, 0.7)),
        max_detections_per_class=int(rng.integers(1, 40)), max_total_detections=int(rng.integers(1, 60)),
        background_column=False)
    window = (int(rng.integers(20, 65)), int(rng.integers(20, 81)))  # the resized image
    corner = rng.uniform(-20, 90, (batch, anchors, 2))  # some boxes outside the window
    size = rng.uniform(0, 40, (batch, anchors, 2))
    boxes = np.concatenate([corner, corner + size], axis=-1).astype(np.float32)  # x1, y1, x2, y2
    scores = rng.uniform(0, 1, (batch, anchors, classes)).astype(np.float32)  # distinct scores
    found = _postprocess_session(nms).run(None, {
        "decoded_boxes": boxes, "class_scores": scores, RESIZED_SIZE: np.array(window, np.int64)})
    expected = nms(torch.from_numpy(boxes), torch.from_numpy(scores), [window] * batch)
    _assert_graph_detections_equal(found, expected, window, nms.max_total_detections)


def _assert_graph_detections_equal(found: list[np.ndarray], expected: list[dict[str, torch.Tensor]],
                                   window: tuple[int, int], max_total_detections: int) -> None:
    """The post-processing graph's four outputs (normalized yxyx boxes, scores, classes,
    counts; zero rows past each count) against ``BatchNonMaxSuppression``'s detections."""
    assert found[0].shape == (len(expected), max_total_detections, 4)
    for index, detection in enumerate(expected):
        count = len(detection["scores"])
        assert int(found[3][index]) == count
        yxyx = detection["boxes"][:, [1, 0, 3, 2]].numpy() / np.array([*window, *window])
        np.testing.assert_allclose(found[0][index, :count], yxyx, atol=1e-6)
        np.testing.assert_allclose(found[1][index, :count], detection["scores"].numpy(), atol=0)
        np.testing.assert_array_equal(found[2][index, :count], detection["labels"].numpy())
        assert not found[0][index, count:].any() and not found[1][index, count:].any()
        assert not found[2][index, count:].any()


@pytest.mark.parametrize("seed", range(6))
def test_class_agnostic_postprocessing_graph_equals_batch_non_max_suppression(seed: int) -> None:
    """use_class_agnostic_nms: one NonMaxSuppression over each box's best score, each
    survivor's max_classes_per_detection best classes above the threshold (the first image
    has none above a 0.95 threshold)."""
    rng = np.random.default_rng(seed)
    batch, anchors, classes = int(rng.integers(1, 5)), int(rng.integers(1, 200)), int(rng.integers(1, 5))
    nms = BatchNonMaxSuppression(
        score_threshold=float([0.0, 0.5, 0.95][seed % 3]), iou_threshold=float(rng.uniform(0.3, 0.7)),
        max_total_detections=int(rng.integers(5, 60)), use_class_agnostic_nms=True,
        max_classes_per_detection=int(rng.integers(1, 4)), background_column=False)
    window = (int(rng.integers(20, 65)), int(rng.integers(20, 81)))  # the resized image
    corner = rng.uniform(-20, 90, (batch, anchors, 2))  # some boxes outside the window
    boxes = np.concatenate([corner, corner + rng.uniform(0, 40, (batch, anchors, 2))],
                           axis=-1).astype(np.float32)  # [B, A, 4] x1, y1, x2, y2
    scores = rng.uniform(0, 1, (batch, anchors, classes)).astype(np.float32)  # [B, A, C]
    scores[0] *= 0.9
    found = _postprocess_session(nms).run(None, {
        "decoded_boxes": boxes, "class_scores": scores, RESIZED_SIZE: np.array(window, np.int64)})
    expected = nms(torch.from_numpy(boxes), torch.from_numpy(scores), [window] * batch)
    _assert_graph_detections_equal(found, expected, window, nms.max_total_detections)


def test_class_agnostic_postprocessing_graph_with_no_detections() -> None:
    """No score above the threshold in any image: empty NMS output, zero rows everywhere."""
    nms = BatchNonMaxSuppression(score_threshold=0.5, iou_threshold=0.5, max_total_detections=7,
                                 use_class_agnostic_nms=True, max_classes_per_detection=2,
                                 background_column=False)
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (3, 4, 1))
    found = _postprocess_session(nms).run(None, {
        "decoded_boxes": boxes, "class_scores": np.full((3, 4, 3), 0.1, np.float32),
        RESIZED_SIZE: np.array([20, 20], np.int64)})
    np.testing.assert_array_equal(found[3], [0, 0, 0])
    assert found[0].shape == (3, 7, 4) and not found[0].any() and not found[1].any()


def test_postprocessing_graph_with_no_detections() -> None:
    nms = BatchNonMaxSuppression(score_threshold=0.5, iou_threshold=0.5, max_detections_per_class=5,
                                 max_total_detections=7, background_column=False)
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (3, 4, 1))
    scores = np.full((3, 4, 2), 0.1, np.float32)
    scores[1, 2, 1] = 0.9  # only the middle image has a detection
    found = _postprocess_session(nms).run(None, {
        "decoded_boxes": boxes, "class_scores": scores, RESIZED_SIZE: np.array([20, 20], np.int64)})
    np.testing.assert_array_equal(found[3], [0, 1, 0])
    np.testing.assert_allclose(found[0][1, 0], [0, 0, 0.5, 0.5])
    assert found[1][1, 0] == pytest.approx(0.9) and found[2][1, 0] == 2
    assert not found[1][0].any() and not found[1][2].any()


@pytest.fixture(scope="module")
def onnx_predictor(exported: Callable[[str], Path]) -> Predictor:
    return Predictor.from_export(exported("image_tensor"), runtime="onnxruntime")


def test_onnx_export_equals_the_checkpoint_model(
    onnx_predictor: Predictor, tiny_training: TinyTraining, exported: Callable[[str], Path],
) -> None:
    assert isinstance(onnx_predictor, OnnxPredictor)
    signature = json.loads((exported("image_tensor") / "signature.json").read_text())
    assert signature["onnx"]["file"] == "model.onnx"
    assert signature["onnx"]["inputs"]["input_tensor"]["shape"] == [-1, -1, -1, 3]
    for seed, (height, width) in enumerate(((48, 80), (64, 64), (100, 37))):
        image = sample_image(height, width, seed)
        found = onnx_predictor.predict_pixels(torch.from_numpy(image).permute(2, 0, 1))
        expected = reference_detections(tiny_training.reference, image)
        assert len(found) == len(expected["scores"]) > 0
        np.testing.assert_allclose(found.boxes, expected["boxes"].numpy(), atol=TOLERANCE * 100)  # px
        np.testing.assert_allclose(found.scores, expected["scores"].numpy(), atol=TOLERANCE)
        np.testing.assert_array_equal(found.labels, expected["labels"].numpy())


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_a_batch_gives_each_image_its_own_detections(onnx_predictor: OnnxPredictor, batch: int) -> None:
    images = np.stack([sample_image(48, 80, seed) for seed in range(batch)])
    together = onnx_predictor.predict_batch(images)
    assert len(together) == batch
    for image, found in zip(images, together):
        alone = onnx_predictor.predict_batch(image[None])[0]
        np.testing.assert_allclose(found.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(found.scores, alone.scores, atol=TOLERANCE)
        np.testing.assert_array_equal(found.labels, alone.labels)


def test_onnx_export_refuses_what_it_cannot_express(tiny_config_path: Path) -> None:
    config = cfg.load(tiny_config_path)
    config.model.ssd.image_resizer.fixed_shape_resizer.resize_method = image_resizer_pb2.AREA
    model = build_model(config.model).eval()
    with pytest.raises(ConfigError, match="^ONNX export: image_resizer interpolation 'area'[^\n]*$"):
        export_onnx(model, (64, 64))
    with pytest.raises(ConfigError, match="Linear meta-architecture has no ONNX graph"):
        export_onnx(torch.nn.Linear(2, 2), (64, 64))


def test_onnx_runtime_needs_model_onnx(exported: Callable[[str], Path], tmp_path: Path) -> None:
    broken = tmp_path / "export"
    broken.mkdir()
    for file in exported("image_tensor").iterdir():
        if file.name != "model.onnx":
            (broken / file.name).write_bytes(file.read_bytes())
    with pytest.raises(ObjdetError, match="has no model.onnx"):
        Predictor.from_export(broken, runtime="onnxruntime")
    (broken / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ObjdetError, match="cannot load the ONNX model"):
        Predictor.from_export(broken, runtime="onnxruntime")
    with pytest.raises(ObjdetError, match="runtime: 'tensorrt' unknown"):
        Predictor.from_export(broken, runtime="tensorrt")


def test_default_export_skips_onnx_where_the_graph_cannot_express_the_model(
    tiny_training: TinyTraining, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from objdet.export.exporter import export_inference_graph

    common = {"pipeline_config_path": tiny_training.config_path,
              "trained_checkpoint_dir": tiny_training.checkpoint_dir,
              "overrides": ["model.ssd.image_resizer.fixed_shape_resizer.resize_method=AREA"]}
    result = export_inference_graph(output_directory=tmp_path / "auto", **common)
    assert not (result.directory / "model.onnx").exists() and (result.directory / "model.pt2").exists()
    assert "no model.onnx: image_resizer interpolation 'area'" in caplog.text
    with pytest.raises(ConfigError, match="ONNX export: image_resizer interpolation 'area'"):
        export_inference_graph(output_directory=tmp_path / "asked", formats=("pt2", "onnx"), **common)
    assert not (tmp_path / "asked").exists()


def test_center_net_onnx_equals_eval_mode() -> None:
    """CenterNet's graph: pre-processing, network, peaks and boxes (no NMS), for a batch of
    3 images whose resized image is smaller than the canvas."""
    tiny = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_center_net" / "mobilenet_v2_fpn"
    config = cfg.load(tiny / "pipeline.config").model
    resizer = config.center_net.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = 64
    torch.manual_seed(0)
    model = build_model(config).eval()
    session = onnxruntime.InferenceSession(export_onnx(model, (64, 64)).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    images = np.stack([sample_image(48, 80, seed=seed) for seed in range(3)])  # uint8 [3, H, W, 3]
    boxes, scores, classes, counts = session.run(None, {"input_tensor": images})
    assert boxes.shape == (3, model.max_detections, 4)
    for index, image in enumerate(images):
        expected = reference_detections(model, image)
        count = int(counts[index])
        assert 0 < count == len(expected["scores"])
        np.testing.assert_allclose(scores[index, :count], expected["scores"].numpy(), atol=TOLERANCE)
        np.testing.assert_array_equal(classes[index, :count], expected["labels"].numpy())
        in_pixels = boxes[index, :count][:, [1, 0, 3, 2]] * np.array([80, 48, 80, 48])
        np.testing.assert_allclose(in_pixels, expected["boxes"].numpy(), atol=1e-2)
        assert not scores[index, count:].any() and not boxes[index, count:].any()
