"""infer-detections with instance outputs: a Mask R-CNN's masks (``image/detection/mask``, one
PNG per detection) and a keypoint CenterNet's keypoints (``image/detection/keypoint/*``)
written into the records, then read back by ``eval-offline`` for coco_mask_metrics.

The models are the parity fixtures' configs with random weights, run eagerly (no export: the
Predictor's detections are what infer-detections writes whatever the runtime; the runtimes'
equality is tests/export/test_export_masks_keypoints.py's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_detector import example_bytes, sample_image
from torchvision.io import encode_png

from objdet import config as cfg
from objdet.data.example import decode_example
from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.errors import DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.coco import CocoMaskEvaluator
from objdet.evaluation.offline import evaluate_records
from objdet.inference.predictor import Predictor
from objdet.inference.tfrecords import add_detections, infer_detections
from objdet.models import build_model
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.protos import example_pb2
from objdet.structures.detections import Detections

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KEYPOINTS = FIXTURES / "odapi_center_net_keypoints"
MASK_RCNN = FIXTURES / "odapi_mask_rcnn" / "pipeline.config"
HEIGHT, WIDTH = 48, 64  # one image: each model call costs ~0.3 s on this CPU


def _write_input(path: Path, with_masks: bool = False) -> None:
    """One record: a PNG image with one ground-truth box (and its mask if asked)."""
    example = example_pb2.Example.FromString(
        example_bytes(sample_image(HEIGHT, WIDTH), filename="0.png"))
    if with_masks:  # the ground-truth box [20, 10, 60, 35] as a mask
        mask = torch.zeros((1, HEIGHT, WIDTH), dtype=torch.uint8)
        mask[0, 10:35, 20:60] = 1
        example.features.feature["image/object/mask"].bytes_list.value.append(
            encode_png(mask).numpy().tobytes())
    with TFRecordWriter(path) as writer:
        writer.write(example.SerializeToString())


def _mask_rcnn_predictor() -> Predictor:
    """The Mask R-CNN parity fixture at 1/16 of ResNet-50's width on a 64x64 canvas."""
    config = cfg.load(MASK_RCNN)
    resizer = config.model.faster_rcnn.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = 64
    torch.manual_seed(0)
    model = build_faster_rcnn(config.model.faster_rcnn, backbone_depth_multiplier=0.0625).eval()
    for module in model.mask_head.modules():  # type: ignore[union-attr]
        if isinstance(module, torch.nn.Conv2d):  # masks that differ from ~0.5 everywhere
            torch.nn.init.kaiming_normal_(module.weight)
    return Predictor(model=model, network=model.predict)


def test_mask_rcnn_masks_are_written_as_pngs_and_evaluated_offline(tmp_path: Path) -> None:
    predictor = _mask_rcnn_predictor()
    inputs = tmp_path / "in.record"
    _write_input(inputs, with_masks=True)
    infer_detections(inputs, tmp_path / "out.record", predictor)
    [record] = read_records(tmp_path / "out.record")
    sample = decode_example(record)
    expected = predictor.predict_pixels(sample.image)
    assert expected.masks is not None and len(expected) > 0
    assert 0 < expected.masks.mean() < 1
    written = example_pb2.Example.FromString(record)
    features = written.features.feature
    assert len(features["image/detection/mask"].bytes_list.value) == len(expected)
    # decoded as objdet decodes image/object/mask: the same 0/1 masks, of the image's size
    features["image/object/mask"].CopyFrom(features["image/detection/mask"])
    for name in ("ymin", "xmin", "ymax", "xmax"):
        features[f"image/object/bbox/{name}"].CopyFrom(features[f"image/detection/bbox/{name}"])
    features["image/object/class/label"].CopyFrom(features["image/detection/label"])
    del features["image/object/class/text"]
    decoded = decode_example(written.SerializeToString())
    assert decoded.masks is not None
    np.testing.assert_array_equal(decoded.masks.numpy(), expected.masks)
    # the detections as their own ground truth: eval-offline must find every mask again
    with TFRecordWriter(tmp_path / "self.record") as writer:
        writer.write(written.SerializeToString())
    categories = [{"id": 1, "name": "raccoon"}, {"id": 2, "name": "other"}]
    itself = evaluate_records(str(tmp_path / "self.record"), [CocoMaskEvaluator(categories)])
    assert itself.metrics["DetectionMasks_Precision/mAP"] > 0.9, itself.metrics

    # eval-offline reads them: the metrics of the same detections evaluated in memory
    offline = evaluate_records(str(tmp_path / "out.record"), [CocoMaskEvaluator(categories)])
    in_memory = CocoMaskEvaluator(categories)
    in_memory.add_ground_truth("0.png", GroundTruth.from_sample(sample))
    in_memory.add_detections("0.png", expected)
    expected_metrics = in_memory.evaluate()
    assert offline.num_images == 1 and offline.metrics.keys() == expected_metrics.keys()
    for name, value in expected_metrics.items():
        assert offline.metrics[name] == pytest.approx(value, abs=1e-9), name
    assert expected_metrics["DetectionMasks_Precision/mAP"] >= 0

    # masks that do not fit the detections: an error naming the record and the field
    broken = example_pb2.Example.FromString(record)
    del broken.features.feature["image/detection/mask"].bytes_list.value[0]
    with TFRecordWriter(tmp_path / "broken.record") as writer:
        writer.write(broken.SerializeToString())
    with pytest.raises(DataError, match=r"broken.record#0.*image/detection/mask has \d+ masks"):
        evaluate_records(str(tmp_path / "broken.record"), [CocoMaskEvaluator(categories)])


def test_keypoint_center_net_keypoints_are_written_normalized(tmp_path: Path) -> None:
    config = cfg.load(KEYPOINTS / "pipeline.config")
    center_net = config.model.center_net
    center_net.keypoint_label_map_path = str(KEYPOINTS / center_net.keypoint_label_map_path)
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    predictor = Predictor(model=model, network=model.predict)
    inputs = tmp_path / "in.record"
    _write_input(inputs)
    infer_detections(inputs, tmp_path / "out.record", predictor)
    [record] = read_records(tmp_path / "out.record")
    features = example_pb2.Example.FromString(record).features.feature
    expected = predictor.predict_pixels(decode_example(record).image)
    assert expected.keypoints is not None and expected.keypoint_scores is not None
    count, num_keypoints = expected.keypoint_scores.shape
    assert count > 0 and num_keypoints == 4
    assert "image/detection/mask" not in features

    def values(key: str) -> np.ndarray:
        return np.asarray(features[f"image/detection/keypoint/{key}"].float_list.value)

    assert values("y").shape == values("x").shape == (count * num_keypoints,)
    np.testing.assert_allclose(values("y"), expected.keypoints[..., 1].reshape(-1) / HEIGHT,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(values("x"), expected.keypoints[..., 0].reshape(-1) / WIDTH,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(values("score"), expected.keypoint_scores.reshape(-1), rtol=1e-6)


def test_no_detections_still_writes_present_empty_instance_lists() -> None:
    example = example_pb2.Example()
    example.features.feature["image/detection/keypoint/y"].float_list.value.append(0.5)  # stale
    add_detections(example, Detections(
        boxes=np.zeros((0, 4)), scores=np.zeros(0), labels=np.zeros(0, np.int64),
        masks=np.zeros((0, 4, 6), np.uint8), keypoints=np.zeros((0, 3, 2)),
        keypoint_scores=np.zeros((0, 3)), image_size=(4, 6)))
    features = example.features.feature
    assert features["image/detection/mask"].WhichOneof("kind") == "bytes_list"
    for key in ("y", "x", "score"):
        field = features[f"image/detection/keypoint/{key}"]
        assert field.WhichOneof("kind") == "float_list" and len(field.float_list.value) == 0
