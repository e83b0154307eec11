"""detector.pt2: the whole detector (pre-processing, network, NMS) as one torch.export program.

The program is loaded the way a user without objdet loads it (``torch.export.load`` in a
process that cannot import objdet) and compared with the checkpoint model's eval-mode
detections and with model.onnx, for batches of 1, 3 and 8 images of two sizes; its
post-processing is compared with ``BatchNonMaxSuppression`` on random inputs (thresholds,
caps, clip windows, images without detections), per class and class-agnostic (a tiny SSD
with use_class_agnostic_nms, a score threshold and a keep_aspect_ratio_resizer is also
exported whole, to detector.pt2 and model.onnx, both compared with eval mode). Faster R-CNN and R-FCN: test_faster_rcnn_program.py; masks and
keypoints: test_export_masks_keypoints.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from tiny_detector import TinyTraining, png_bytes, reference_detections, sample_image

from objdet import config as cfg
from objdet.cli.main import main
from objdet.errors import ConfigError, ObjdetError
from objdet.export.onnx_graph import export_onnx
from objdet.export.program import DetectorProgram, batched_detections, export_program
from objdet.inference.predictor import OnnxPredictor, Predictor, ProgramPredictor
from objdet.models import build_model
from objdet.models.postprocessing import BatchNonMaxSuppression
from objdet.protos import image_resizer_pb2

TOLERANCE = 1e-4
BATCHES = (1, 3, 8)
SIZES = ((48, 80), (100, 37))  # down- and up-sampled onto the 64x64 canvas
# Runs detector.pt2 where objdet cannot be imported: torch and torchvision (its nms) only.
_RUN_ALONE = textwrap.dedent("""
    import importlib.abc, sys
    class NoObjdet(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "objdet":
                raise ImportError("objdet must not be needed to run detector.pt2")
    sys.meta_path.insert(0, NoObjdet())
    import numpy as np, torch, torchvision
    program = torch.export.load(sys.argv[1]).module()
    inputs = np.load(sys.argv[2])
    with torch.no_grad():
        outputs = {name: [o.numpy() for o in program(torch.from_numpy(inputs[name]))]
                   for name in inputs.files}
    np.savez(sys.argv[3], **{f"{name}/{index}": value for name, values in outputs.items()
                             for index, value in enumerate(values)})
""")


def _batch(batch: int, size: tuple[int, int]) -> np.ndarray:
    return np.stack([sample_image(*size, seed=seed) for seed in range(batch)])  # uint8 [B, H, W, 3]


@pytest.fixture(scope="module")
def standalone_outputs(exported: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
                       ) -> dict[tuple[int, tuple[int, int]], list[np.ndarray]]:
    """(batch, size) -> detector.pt2's four outputs, computed in a process without objdet."""
    root = tmp_path_factory.mktemp("standalone")
    inputs = {f"{batch}x{height}x{width}": _batch(batch, (height, width))
              for batch in BATCHES for height, width in SIZES}
    np.savez(root / "inputs.npz", **inputs)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    program = exported("image_tensor") / "detector.pt2"
    result = subprocess.run([sys.executable, "-c", _RUN_ALONE, str(program), str(root / "inputs.npz"),
                             str(root / "outputs.npz")], check=False, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    found = np.load(root / "outputs.npz")
    return {(batch, (height, width)): [found[f"{batch}x{height}x{width}/{index}"] for index in range(4)]
            for batch in BATCHES for height, width in SIZES}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("batch", BATCHES)
def test_program_alone_equals_the_checkpoint_model(
    standalone_outputs: dict[tuple[int, tuple[int, int]], list[np.ndarray]],
    tiny_training: TinyTraining, batch: int, size: tuple[int, int],
) -> None:
    boxes, scores, classes, counts = standalone_outputs[batch, size]
    assert boxes.shape == (batch, 20, 4) and scores.shape == classes.shape == (batch, 20)
    assert counts.shape == (batch,) and boxes.dtype == np.float32
    height, width = size
    for index, image in enumerate(_batch(batch, size)):
        expected = reference_detections(tiny_training.reference, image)
        count = int(counts[index])
        assert count == len(expected["scores"]) > 0
        np.testing.assert_allclose(scores[index, :count], expected["scores"].numpy(), atol=TOLERANCE)
        np.testing.assert_array_equal(classes[index, :count], expected["labels"].numpy())
        yxyx = expected["boxes"][:, [1, 0, 3, 2]].numpy() / np.array([height, width] * 2)
        np.testing.assert_allclose(boxes[index, :count], yxyx, atol=TOLERANCE)
        assert not boxes[index, count:].any() and not scores[index, count:].any()


@pytest.fixture(scope="module")
def runtimes(exported: Callable[[str], Path]) -> tuple[ProgramPredictor, OnnxPredictor]:
    directory = exported("image_tensor")
    program = Predictor.from_export(directory, runtime="program")
    onnx = Predictor.from_export(directory, runtime="onnxruntime")
    assert isinstance(program, ProgramPredictor) and isinstance(onnx, OnnxPredictor)
    return program, onnx


def test_export_lists_the_program(exported: Callable[[str], Path]) -> None:
    directory = exported("image_tensor")
    signature = json.loads((directory / "signature.json").read_text())
    assert signature["program"]["file"] == "detector.pt2"
    assert signature["program"]["inputs"]["input_tensor"] == {"dtype": "uint8", "shape": [-1, -1, -1, 3]}
    assert signature["program"]["outputs"]["detection_boxes"]["shape"] == [-1, 20, 4]
    assert json.loads((directory / "export.json").read_text())["formats"] == ["pt2", "onnx", "program"]


@pytest.mark.parametrize("size", SIZES)
def test_program_runtime_equals_onnxruntime(
    runtimes: tuple[ProgramPredictor, OnnxPredictor], size: tuple[int, int],
) -> None:
    program, onnx = runtimes
    images = _batch(3, size)
    for found, expected in zip(program.predict_batch(images), onnx.predict_batch(images), strict=True):
        assert len(found) == len(expected) > 0
        np.testing.assert_allclose(found.boxes, expected.boxes, atol=TOLERANCE * max(size))  # px
        np.testing.assert_allclose(found.scores, expected.scores, atol=TOLERANCE)
        np.testing.assert_array_equal(found.labels, expected.labels)
    single = program.predict_pixels(torch.from_numpy(images[0]).permute(2, 0, 1))
    np.testing.assert_allclose(single.scores, program.predict_batch(images[:1])[0].scores, atol=0)


@pytest.mark.parametrize("seed", range(5))
def test_post_processing_equals_batch_non_max_suppression(seed: int) -> None:
    """Random boxes (some outside the window) and scores, random thresholds and caps: the
    program's NMS keeps what the eager NMS keeps, zero rows after the count."""
    rng = np.random.default_rng(seed)
    batch, anchors, classes = int(rng.integers(1, 5)), int(rng.integers(1, 300)), int(rng.integers(1, 5))
    nms = BatchNonMaxSuppression(
        score_threshold=float(rng.choice([0.0, 0.5, 0.95])), iou_threshold=float(rng.uniform(0.3, 0.7)),
        max_detections_per_class=int(rng.integers(1, 40)), max_total_detections=int(rng.integers(5, 60)),
        background_column=False)
    window = (int(rng.integers(20, 65)), int(rng.integers(20, 81)))  # the resized image
    corner = rng.uniform(-20, 90, (batch, anchors, 2))
    boxes = torch.from_numpy(np.concatenate([corner, corner + rng.uniform(0, 40, (batch, anchors, 2))],
                                            axis=-1).astype(np.float32))  # x1, y1, x2, y2
    scores = torch.from_numpy(rng.uniform(0, 1, (batch, anchors, classes)).astype(np.float32))
    scores[0] *= 0.9  # the first image has nothing above 0.95
    found = batched_detections(boxes, scores, torch.tensor(window, dtype=torch.float64), nms)
    assert found[0].shape == (batch, nms.max_total_detections, 4)
    for index, detection in enumerate(nms(boxes, scores, [window] * batch)):
        count = len(detection["scores"])
        assert int(found[3][index]) == count
        yxyx = detection["boxes"][:, [1, 0, 3, 2]] / torch.tensor([*window, *window])
        torch.testing.assert_close(found[0][index, :count], yxyx, atol=1e-6, rtol=0)
        torch.testing.assert_close(found[1][index, :count], detection["scores"], atol=0, rtol=0)
        assert found[2][index, :count].tolist() == detection["labels"].tolist()
        assert not found[0][index, count:].any() and not found[1][index, count:].any()
        assert not found[2][index, count:].any()


def test_what_the_program_cannot_express_fails_in_one_line(tiny_config_path: Path) -> None:
    config = cfg.load(tiny_config_path)
    config.model.ssd.image_resizer.fixed_shape_resizer.resize_method = image_resizer_pb2.AREA
    with pytest.raises(ConfigError, match="^detector program: image_resizer interpolation 'area'[^\n]*$"):
        DetectorProgram(build_model(config.model).eval(), (64, 64))
    with pytest.raises(ConfigError, match="Linear meta-architecture has no detector program"):
        DetectorProgram(torch.nn.Linear(2, 2), (64, 64))


@pytest.mark.parametrize("seed", range(5))
def test_class_agnostic_post_processing_equals_batch_non_max_suppression(seed: int) -> None:
    """use_class_agnostic_nms: one NMS over each box's best score, each survivor reporting
    its max_classes_per_detection best classes above the threshold, as the eager NMS."""
    rng = np.random.default_rng(seed)
    batch, anchors, classes = int(rng.integers(1, 5)), int(rng.integers(1, 200)), int(rng.integers(1, 5))
    nms = BatchNonMaxSuppression(
        score_threshold=float(rng.choice([0.0, 0.5, 0.95])), iou_threshold=float(rng.uniform(0.3, 0.7)),
        max_total_detections=int(rng.integers(5, 60)), use_class_agnostic_nms=True,
        max_classes_per_detection=int(rng.integers(1, 4)), background_column=False)
    window = (int(rng.integers(20, 65)), int(rng.integers(20, 81)))
    corner = rng.uniform(-20, 90, (batch, anchors, 2))
    boxes = torch.from_numpy(np.concatenate([corner, corner + rng.uniform(0, 40, (batch, anchors, 2))],
                                            axis=-1).astype(np.float32))
    scores = torch.from_numpy(rng.uniform(0, 1, (batch, anchors, classes)).astype(np.float32))
    found = batched_detections(boxes, scores, torch.tensor(window, dtype=torch.float64), nms)
    for index, detection in enumerate(nms(boxes, scores, [window] * batch)):
        count = len(detection["scores"])
        assert int(found[3][index]) == count
        yxyx = detection["boxes"][:, [1, 0, 3, 2]] / torch.tensor([*window, *window])
        torch.testing.assert_close(found[0][index, :count], yxyx, atol=1e-6, rtol=0)
        torch.testing.assert_close(found[1][index, :count], detection["scores"], atol=0, rtol=0)
        assert found[2][index, :count].tolist() == detection["labels"].tolist()
        assert not found[0][index, count:].any() and not found[1][index, count:].any()


@pytest.fixture(scope="module")
def class_agnostic_program(tmp_path_factory: pytest.TempPathFactory
                           ) -> tuple[torch.nn.Module, torch.nn.Module, onnxruntime.InferenceSession]:
    """A tiny 3-class SSD with use_class_agnostic_nms, max_classes_per_detection 2, a score
    threshold that leaves fewer rows than max_total_detections and a keep_aspect_ratio_resizer
    (padded to its max dimension), its detector.pt2 loaded back from disk and its model.onnx
    (one export each for the module)."""
    config = cfg.load(Path(__file__).resolve().parents[1] / "fixtures" / "tiny_ssd.config").model
    config.ssd.num_classes = 3
    resizer = config.ssd.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension, resizer.max_dimension, resizer.pad_to_max_dimension = 40, 64, True
    nms = config.ssd.post_processing.batch_non_max_suppression
    nms.use_class_agnostic_nms, nms.max_classes_per_detection = True, 2
    nms.score_threshold, nms.max_total_detections = 0.65, 30
    torch.manual_seed(0)
    model = build_model(config).eval()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():  # spread-out scores, some above the threshold
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    session = onnxruntime.InferenceSession(export_onnx(model, (64, 64)).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    path = tmp_path_factory.mktemp("class_agnostic") / "detector.pt2"
    with warnings.catch_warnings():  # channels-last weights: see objdet.export.exporter
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(export_program(model, (64, 64)), path)
    return model, torch.export.load(path).module(), session


@pytest.mark.parametrize("runtime", ["program", "onnxruntime"])
@pytest.mark.parametrize("batch, size", [(1, (48, 80)), (3, (100, 37)), (8, (64, 20))])
def test_class_agnostic_export_equals_eval_mode(
    class_agnostic_program: tuple[torch.nn.Module, torch.nn.Module, onnxruntime.InferenceSession],
    runtime: str, batch: int, size: tuple[int, int],
) -> None:
    """detector.pt2 and model.onnx: the kept rows, then zero rows past num_detections
    (images without detections: the post-processing tests, here and in test_onnx_graph.py;
    this model's scores hardly depend on the image)."""
    model, program, session = class_agnostic_program
    images = _batch(batch, size)
    if runtime == "program":
        with torch.no_grad():
            boxes, scores, classes, counts = (o.numpy() for o in program(torch.from_numpy(images)))
    else:
        boxes, scores, classes, counts = session.run(None, {"input_tensor": images})
    assert boxes.shape == (batch, 30, 4) and counts.shape == (batch,)
    for index, image in enumerate(images):
        expected = reference_detections(model, image)
        count = int(counts[index])
        assert 0 < count == len(expected["scores"]) < 30
        assert len(set(expected["labels"].tolist())) > 1  # the classes are not all one
        assert len(torch.unique(expected["boxes"], dim=0)) < count  # a box with two classes
        np.testing.assert_allclose(scores[index, :count], expected["scores"].numpy(), atol=TOLERANCE)
        np.testing.assert_array_equal(classes[index, :count], expected["labels"].numpy())
        yxyx = expected["boxes"][:, [1, 0, 3, 2]].numpy() / np.array([*size, *size])
        np.testing.assert_allclose(boxes[index, :count], yxyx, atol=TOLERANCE)
        assert not boxes[index, count:].any() and not scores[index, count:].any()
        assert not classes[index, count:].any()


def test_program_runtime_needs_detector_pt2(exported: Callable[[str], Path], tmp_path: Path) -> None:
    broken = tmp_path / "export"
    broken.mkdir()
    for file in exported("image_tensor").iterdir():
        if file.name != "detector.pt2":
            (broken / file.name).write_bytes(file.read_bytes())
    with pytest.raises(ObjdetError, match="has no detector.pt2"):
        Predictor.from_export(broken, runtime="program")
    (broken / "detector.pt2").write_bytes(b"not a program")
    with pytest.raises(ObjdetError, match="cannot load the detector program"):
        Predictor.from_export(broken, runtime="program")


def test_center_net_program_equals_eval_mode() -> None:
    """CenterNet's program: pre-processing, network, peaks and boxes (no NMS), for a batch of
    3 images whose resized image is smaller than the canvas (the one CenterNet export: ~8 s)."""
    tiny = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_center_net" / "mobilenet_v2_fpn"
    config = cfg.load(tiny / "pipeline.config").model
    resizer = config.center_net.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = 64
    torch.manual_seed(0)
    model = build_model(config).eval()
    program = export_program(model, (64, 64)).module()
    images = _batch(3, (48, 80))
    with torch.no_grad():
        boxes, scores, classes, counts = program(torch.from_numpy(images))
    assert boxes.shape == (3, model.max_detections, 4)
    for index, image in enumerate(images):
        expected = reference_detections(model, image)
        count = int(counts[index])
        assert 0 < count == len(expected["scores"]) < model.max_detections
        torch.testing.assert_close(scores[index, :count], expected["scores"], atol=TOLERANCE, rtol=0)
        assert classes[index, :count].tolist() == expected["labels"].float().tolist()
        in_pixels = boxes[index, :count][:, [1, 0, 3, 2]] * torch.tensor([80, 48, 80, 48])
        torch.testing.assert_close(in_pixels, expected["boxes"], atol=1e-2, rtol=0)
        assert not scores[index, count:].any() and not boxes[index, count:].any()


def test_detect_cli_runs_the_program(exported: Callable[[str], Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    image_path = tmp_path / "a.png"
    image_path.write_bytes(png_bytes(sample_image()))
    results = {}
    for runtime in ("torch", "program"):
        assert main(["detect", "--model", str(exported("image_tensor")), "--image", str(image_path),
                     "--min_score", "0.3", "--runtime", runtime]) == 0
        [results[runtime]] = json.loads(capsys.readouterr().out)
    assert results["program"]["num_detections"] == results["torch"]["num_detections"] > 0
    for found, expected in zip(results["program"]["detections"], results["torch"]["detections"], strict=True):
        assert found["class_name"] == expected["class_name"]
        assert found["score"] == pytest.approx(expected["score"], abs=TOLERANCE)
        assert found["box_xyxy"] == pytest.approx(expected["box_xyxy"], abs=0.01)


def test_a_signature_that_disagrees_with_the_program_is_named(exported: Callable[[str], Path]) -> None:
    from objdet.errors import ObjdetError
    from objdet.inference.predictor import ProgramPredictor

    program_path = exported("image_tensor") / "detector.pt2"
    predictor = ProgramPredictor(program_path=program_path, max_detections=5,
                                 output_names=("detection_boxes", "detection_scores"))
    with pytest.raises(ObjdetError, match=rf"^{program_path}: the program gave 4 outputs, its "
                                          r"signature names 2 \(detection_boxes, detection_scores\)$"):
        predictor.predict_batch(np.zeros((1, 32, 32, 3), dtype=np.uint8))
