"""Masks and keypoints through export, as the OD API's exporter gives them: a Mask R-CNN's
``detection_masks`` (per-box probabilities) and a keypoint CenterNet's ``detection_keypoints``
/ ``detection_keypoint_scores`` from model.onnx (ONNX Runtime) and detector.pt2 (the program
runtime, batched) equal the eager Predictor's, and ``objdet serve`` answers with them (REST
and gRPC, output_filter applied). Tiny models with random weights (the parity fixtures'
configs)."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from objdet import config as cfg
from objdet.engine.checkpoint import CheckpointManager
from objdet.export.exporter import export_inference_graph
from objdet.export.graph import fixed_canvas_size
from objdet.export.onnx_graph import export_onnx
from objdet.export.program import export_program
from objdet.export.signature import build_signature
from objdet.inference.predictor import OnnxPredictor, Predictor, ProgramPredictor
from objdet.models import build_model
from objdet.models.contract import as_detection_model
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.serving.protos import model_pb2, predict_pb2, prediction_service_pb2_grpc, tensor_pb2
from objdet.structures.label_map import LabelMap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from server_process import ServerProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KEYPOINTS = FIXTURES / "odapi_center_net_keypoints"
MASK_RCNN = FIXTURES / "odapi_mask_rcnn" / "pipeline.config"
BOX_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def _image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [H, W, 3]: smooth blobs (not noise), so peaks and boxes are well separated."""
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for _ in range(6):
        y, x, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 14)
        blob = np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(60, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def keypoint_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The keypoint parity fixture's CenterNet (task "pose", 4 keypoints of class 1), random
    weights, exported with every format (pt2, onnx and program)."""
    root = tmp_path_factory.mktemp("keypoints")
    config = cfg.load(KEYPOINTS / "pipeline.config")
    center_net = config.model.center_net
    center_net.keypoint_label_map_path = str(KEYPOINTS / center_net.keypoint_label_map_path)
    LabelMap.from_names(["person", "dog"]).save(root / "label_map.pbtxt")
    config.train_input_reader.label_map_path = str(root / "label_map.pbtxt")
    cfg.save(config, root / "pipeline.config")
    torch.manual_seed(0)
    model = build_model(config.model)
    CheckpointManager(root / "model_dir").save(1, {"model": model.state_dict()})
    export_inference_graph(pipeline_config_path=root / "pipeline.config",
                           trained_checkpoint_dir=root / "model_dir",
                           output_directory=root / "exported" / "1")
    return root / "exported" / "1"


@pytest.fixture(scope="module")
def mask_rcnn() -> tuple[FasterRCNN, bytes]:
    """The Mask R-CNN parity fixture's model at 1/16 of ResNet-50's width (random weights)
    and its model.onnx."""
    config = cfg.load(MASK_RCNN)
    resizer = config.model.faster_rcnn.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = 64  # a 64x64 canvas: quicker to trace
    torch.manual_seed(0)
    model = build_faster_rcnn(config.model.faster_rcnn, backbone_depth_multiplier=0.0625).eval()
    for module in model.mask_head.modules():  # type: ignore[union-attr]
        if isinstance(module, torch.nn.Conv2d):  # the config's 0.01 stddev gives masks of ~0.5
            torch.nn.init.kaiming_normal_(module.weight)  # everywhere: make them differ
    proto = export_onnx(model, fixed_canvas_size(as_detection_model(model)))
    return model, proto.SerializeToString()


def _onnx_outputs(predictor: OnnxPredictor, image: np.ndarray) -> dict[str, np.ndarray]:
    names = [output.name for output in predictor.session.get_outputs()]
    return dict(zip(names, predictor.session.run(None, {"input_tensor": image[None]}), strict=True))


def test_keypoint_export_signature_names_the_od_api_outputs(keypoint_export: Path) -> None:
    signature = json.loads((keypoint_export / "signature.json").read_text())
    outputs = signature["outputs"]
    assert list(outputs) == [*BOX_OUTPUTS, "detection_keypoints", "detection_keypoint_scores"]
    assert outputs["detection_keypoints"]["shape"] == [1, 100, 4, 2]
    assert outputs["detection_keypoint_scores"]["shape"] == [1, 100, 4]
    for runtime in ("onnx", "program"):
        assert list(signature[runtime]["outputs"]) == list(outputs)
        assert signature[runtime]["outputs"]["detection_keypoints"]["shape"] == [-1, 100, 4, 2]
    assert "pose/keypoint/heatmap" in signature["graph"]["outputs"]  # model.pt2 returns the heads
    assert json.loads((keypoint_export / "export.json").read_text())["formats"] == ["pt2", "onnx", "program"]


def test_keypoint_onnx_equals_the_eager_predictor(keypoint_export: Path) -> None:
    image = _image(48, 64, seed=1)  # resized to 48x64 on the 64x64 canvas
    found = _onnx_outputs(OnnxPredictor.from_export(keypoint_export), image)
    for use_graph in (True, False):  # model.pt2 + eager post-processing, and all eager
        expected = Predictor.from_export(keypoint_export, use_graph=use_graph)(image)
        assert list(expected) == list(found)
        count = int(expected["num_detections"][0])
        assert count > 0 and int(found["num_detections"][0]) == count
        for name in ("detection_scores", "detection_keypoint_scores", "detection_keypoints",
                     "detection_boxes", "detection_classes"):
            assert found[name].shape == expected[name].shape, name
            error = float(np.abs(found[name] - expected[name]).max())
            assert error <= 1e-4, (name, error)
    keypoints = found["detection_keypoints"][0, :count]  # [D, 4, 2] normalized (y, x)
    assert np.abs(keypoints).sum() > 0 and (found["detection_keypoints"][0, count:] == 0).all()


def test_keypoint_program_equals_the_eager_predictor(keypoint_export: Path) -> None:
    """detector.pt2 through the program runtime, a batch of 2 (resized to 48x64 on the 64x64
    canvas): each image's keypoints and their scores as the eager Predictor's."""
    images = np.stack([_image(48, 64, seed=1), _image(48, 64, seed=4)])
    program = Predictor.from_export(keypoint_export, runtime="program")
    assert isinstance(program, ProgramPredictor)
    eager = Predictor.from_export(keypoint_export, use_graph=False)
    for image, detections in zip(images, program.predict_batch(images), strict=True):
        found = detections.to_outputs(program.max_detections)
        expected = eager(image)
        assert list(found) == list(expected)
        count = int(expected["num_detections"][0])
        assert count > 0 and int(found["num_detections"][0]) == count
        assert np.abs(found["detection_keypoints"][0, :count]).sum() > 0
        for name in ("detection_scores", "detection_keypoint_scores", "detection_keypoints",
                     "detection_boxes", "detection_classes"):
            assert found[name].shape == expected[name].shape, name
            error = float(np.abs(found[name] - expected[name]).max())
            assert error <= 1e-4, (name, error)


def _assert_box_masks_equal(found: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                            mask_error: Callable[[np.ndarray], np.floating]) -> int:
    """One image's outputs against the eager Predictor's: its detections, and its
    ``detection_masks`` (``mask_error`` of the difference <= 1e-4, zero rows past the count);
    returns the number of detections."""
    count = int(expected["num_detections"][0])
    assert count > 0 and int(found["num_detections"][0]) == count
    masks = found["detection_masks"]  # [1, max, 14, 12] probabilities over each box
    assert masks.shape == expected["detection_masks"].shape == (1, 16, 14, 12)
    assert float(mask_error(np.abs(masks - expected["detection_masks"]))) <= 1e-4
    assert (masks[0, count:] == 0).all() and masks[0, :count].std() > 0.1
    for name in BOX_OUTPUTS:
        assert float(np.abs(found[name] - expected[name]).max()) <= 1e-4, name
    return count


def test_mask_rcnn_onnx_equals_the_eager_predictor(mask_rcnn: tuple[FasterRCNN, bytes],
                                                   tmp_path: Path) -> None:
    model, onnx_bytes = mask_rcnn
    (tmp_path / "model.onnx").write_bytes(onnx_bytes)
    image = _image(48, 64, seed=2)  # resized to 48x64 on the 64x64 canvas: padded
    onnx_predictor = OnnxPredictor(model_path=tmp_path / "model.onnx")
    found = _onnx_outputs(onnx_predictor, image)
    predictor = Predictor(model=model, network=model.predict)  # eager
    expected = predictor(image)
    count = _assert_box_masks_equal(found, expected, mask_error=np.mean)
    # masks pasted into the image as the eager model pastes them
    pixels = torch.from_numpy(image).permute(2, 0, 1)
    eager = predictor.predict_pixels(pixels)
    onnx_detections = onnx_predictor.predict_pixels(pixels)
    assert eager.masks is not None and onnx_detections.masks is not None
    assert eager.masks.shape == (count, 48, 64)
    assert float((eager.masks != onnx_detections.masks).mean()) < 1e-3


@pytest.fixture(scope="module")
def mask_rcnn_program(mask_rcnn: tuple[FasterRCNN, bytes], tmp_path_factory: pytest.TempPathFactory
                      ) -> ProgramPredictor:
    """The width-reduced Mask R-CNN's detector.pt2 (saved and loaded back) as a Predictor."""
    model, _ = mask_rcnn
    path = tmp_path_factory.mktemp("mask_program") / "detector.pt2"
    torch.export.save(export_program(model, fixed_canvas_size(as_detection_model(model))), path)
    return ProgramPredictor(program_path=path, max_detections=model.max_detections,
                            output_names=(*BOX_OUTPUTS, "detection_masks"))


def test_mask_rcnn_program_equals_the_eager_predictor(mask_rcnn: tuple[FasterRCNN, bytes],
                                                      mask_rcnn_program: ProgramPredictor) -> None:
    """A batch of 2 through detector.pt2: each image's box masks (and the masks pasted into
    the image) as the eager Predictor's."""
    model, _ = mask_rcnn
    images = np.stack([_image(48, 64, seed=2), _image(48, 64, seed=5)])
    predictor = Predictor(model=model, network=model.predict)  # eager
    for image, detections in zip(images, mask_rcnn_program.predict_batch(images), strict=True):
        found = detections.to_outputs(mask_rcnn_program.max_detections)
        _assert_box_masks_equal(found, expected=predictor(image), mask_error=np.max)
        eager = predictor.predict_pixels(torch.from_numpy(image).permute(2, 0, 1))
        assert eager.masks is not None and detections.masks is not None
        assert float((eager.masks != detections.masks).mean()) < 1e-3


def _assemble_onnx_export(model: FasterRCNN, onnx_bytes: bytes, directory: Path) -> Path:
    """An export directory served by ONNX Runtime for the width-reduced Mask R-CNN (the
    exporter rebuilds models from their config, which has no width multiplier)."""
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(onnx_bytes)
    cfg.save(cfg.load(MASK_RCNN), directory / "pipeline.config")
    head = model.mask_head
    assert head is not None
    signature = build_signature("encoded_image_string_tensor", model.max_detections,
                                fixed_canvas_size(as_detection_model(model)),
                                {}, onnx_file="model.onnx",
                                instance_outputs={"detection_masks": (head.mask_height,
                                                                      head.mask_width)})
    (directory / "signature.json").write_text(json.dumps(signature))
    (directory / "export.json").write_text(json.dumps({"formats": ["onnx"]}))
    return directory


@pytest.fixture(scope="module")
def server(keypoint_export: Path, mask_rcnn: tuple[FasterRCNN, bytes],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("served")
    _assemble_onnx_export(*mask_rcnn, root / "masks" / "1")
    (root / "models.config").write_text(f"""model_config_list {{
  config {{ name: "keypoints" base_path: "{keypoint_export.parent}" model_platform: "tensorflow" }}
  config {{ name: "masks" base_path: "{root / 'masks'}" model_platform: "tensorflow" }}
}}
""")
    process = ServerProcess(["--model_config_file", str(root / "models.config")],
                            root / "server.log", start_timeout=180)
    yield process
    assert process.stop(timeout=120) == 0, process.log()


def test_serving_answers_with_masks_and_keypoints(server: ServerProcess,
                                                  mask_rcnn: tuple[FasterRCNN, bytes]) -> None:
    image = _image(48, 64, seed=3)
    status, body = server.post_json("/v1/models/keypoints:predict",
                                    {"instances": [image.tolist()]})
    assert status == 200, body
    [row] = body["predictions"]
    assert list(row) == [*BOX_OUTPUTS, "detection_keypoints", "detection_keypoint_scores"]
    assert np.asarray(row["detection_keypoints"]).shape == (100, 4, 2)
    status, metadata = server.request("GET", "/v1/models/masks/metadata")
    outputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
    assert [int(d["size"]) for d in outputs["detection_masks"]["tensor_shape"]["dim"]] == [-1, 16, 14, 12]
    encoded = io.BytesIO()
    Image.fromarray(_image(48, 64, seed=2)).save(encoded, format="PNG")
    b64 = {"b64": base64.b64encode(encoded.getvalue()).decode()}
    status, body = server.post_json("/v1/models/masks:predict", {
        "inputs": [b64], "output_filter": ["detection_masks", "num_detections"]})
    assert status == 200, body
    assert sorted(body["outputs"]) == ["detection_masks", "num_detections"]
    served = np.asarray(body["outputs"]["detection_masks"], np.float32)  # [1, 16, 14, 12]
    model, _ = mask_rcnn
    expected = Predictor(model=model, network=model.predict)(_image(48, 64, seed=2))
    assert float(np.abs(served - expected["detection_masks"]).mean()) <= 1e-4
    status, body = server.post_json("/v1/models/masks:predict", {
        "inputs": [b64], "output_filter": ["detection_keypoints"]})
    assert status == 400 and "detection_keypoints" in body["error"]

    # gRPC, as a tensorflow-serving-api client sends it, with output_filter
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="keypoints"),
                                         output_filter=["detection_keypoint_scores"])
    tensor = request.inputs["input_tensor"]
    tensor.dtype = tensor_pb2.DT_UINT8
    for size in (1, *image.shape):
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = image.tobytes()
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
    assert list(response.outputs) == ["detection_keypoint_scores"]
    scores = response.outputs["detection_keypoint_scores"]
    assert [d.size for d in scores.tensor_shape.dim] == [1, 100, 4]
    np.testing.assert_allclose(np.asarray(scores.float_val).reshape(100, 4),
                               np.asarray(row["detection_keypoint_scores"]), atol=1e-6)
