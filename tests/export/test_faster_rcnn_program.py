"""detector.pt2 for the two-stage detectors: a tiny Faster R-CNN exported once (saved and
loaded back) and a tiny R-FCN's program module, against their eval-mode detections for
batches of 1 and 3 images of two sizes; the program's batched proposal NMS against
``select_proposals`` and its second-stage NMS against ``SecondStageNonMaxSuppression`` on
random inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tiny_detector import reference_detections, sample_image

from objdet import config as cfg
from objdet.export.program import DetectorProgram, export_program
from objdet.export.program_nms import batched_detections, batched_proposals
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.faster_rcnn_postprocessing import (
    SecondStageNonMaxSuppression,
    select_proposals,
)
from objdet.models.meta_arch.rfcn import RFCN
from objdet.models.postprocessing import convert_scores

TOLERANCE = 1e-4
FASTER_RCNN = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_faster_rcnn" / "pipeline.config"
RFCN_PREDICTOR = """
  rfcn_box_predictor {
    conv_hyperparams { op: CONV regularizer { l2_regularizer { weight: 0.0 } }
                       initializer { truncated_normal_initializer { stddev: 0.01 } } }
    depth: 32 crop_height: 6 crop_width: 6 num_spatial_bins_height: 3 num_spatial_bins_width: 3
  }"""
CANVAS = (64, 64)
# kind -> (second-stage score_threshold, scale of the noise added to the box predictor's
# weights): each test image keeps some, not all, of its detections, their scores spread out
_SCORES = {"faster_rcnn": (0.07, 0.0), "rfcn": (0.4, 0.3)}


def _tiny_model(kind: str) -> FasterRCNN:
    """ResNet-50 at 1/16 width on a 64x64 canvas (keep_aspect_ratio_resizer, so a wide or a
    tall image leaves part of the canvas padded and proposals are clipped to the window),
    16 proposals, a score threshold and per-class cap that leave images fewer than 16
    detections."""
    config = cfg.load(FASTER_RCNN).model.faster_rcnn
    resizer = config.image_resizer.keep_aspect_ratio_resizer
    resizer.min_dimension = resizer.max_dimension = CANVAS[0]
    score_threshold, noise = _SCORES[kind]
    nms = config.second_stage_post_processing.batch_non_max_suppression
    nms.score_threshold, nms.max_detections_per_class = score_threshold, 5
    if kind == "rfcn":
        config.ClearField("second_stage_box_predictor")
        text_format.Parse(RFCN_PREDICTOR, config.second_stage_box_predictor)
        config.ClearField("initial_crop_size")
    torch.manual_seed(0)
    model = build_faster_rcnn(config, backbone_depth_multiplier=0.0625).eval()
    assert isinstance(model, RFCN) == (kind == "rfcn")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.box_predictor.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * noise)
    return model


@pytest.fixture(scope="module", params=["faster_rcnn", "rfcn"])
def two_stage_program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                      ) -> tuple[FasterRCNN, torch.nn.Module]:
    """The tiny model and its detector.pt2, saved and loaded back. R-FCN differs only in the
    second stage, which the program calls as it is: its ``DetectorProgram`` runs unexported
    (one torch.export of a ResNet-50 costs ~20 s of the suite's 10 minutes)."""
    model = _tiny_model(request.param)
    if request.param == "rfcn":
        return model, DetectorProgram(model, CANVAS).eval()
    path = tmp_path_factory.mktemp(request.param) / "detector.pt2"
    with warnings.catch_warnings():  # channels-last weights: see objdet.export.exporter
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(export_program(model, CANVAS), path)
    return model, torch.export.load(path).module()


@pytest.mark.parametrize("batch, size", [(1, (48, 80)), (3, (100, 37))])
def test_program_equals_eval_mode(two_stage_program: tuple[FasterRCNN, torch.nn.Module],
                                  batch: int, size: tuple[int, int]) -> None:
    model, program = two_stage_program
    height, width = size
    images = np.stack([sample_image(height, width, seed=seed) for seed in range(batch)])
    with torch.no_grad():
        boxes, scores, classes, counts = program(torch.from_numpy(images))
    assert boxes.shape == (batch, model.max_detections, 4) and counts.shape == (batch,)
    for index, image in enumerate(images):
        expected = reference_detections(model, image)
        count = int(counts[index])
        assert 0 < count == len(expected["scores"]) < model.max_detections
        torch.testing.assert_close(scores[index, :count], expected["scores"], atol=TOLERANCE, rtol=0)
        assert classes[index, :count].tolist() == expected["labels"].float().tolist()
        yxyx = expected["boxes"][:, [1, 0, 3, 2]] / torch.tensor([height, width] * 2)
        torch.testing.assert_close(boxes[index, :count], yxyx, atol=TOLERANCE, rtol=0)
        assert not boxes[index, count:].any() and not scores[index, count:].any()
        assert not classes[index, count:].any()


def _random_boxes(rng: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """``[*shape, 4]`` x1, y1, x2, y2, some reaching outside a 64x64 canvas."""
    corner = rng.uniform(-20, 70, (*shape, 2))
    size = rng.uniform(0, 40, (*shape, 2))
    return torch.from_numpy(np.concatenate([corner, corner + size], axis=-1).astype(np.float32))


@pytest.mark.parametrize("seed", range(4))
def test_batched_proposals_equal_select_proposals(seed: int) -> None:
    """Random RPN boxes and objectness, a window smaller than the canvas (survivors without
    area inside it dropped): the same padded proposals and counts, image by image."""
    rng = np.random.default_rng(seed)
    batch, anchors = int(rng.integers(1, 5)), int(rng.integers(1, 200))
    boxes = _random_boxes(rng, (batch, anchors))
    objectness = torch.from_numpy(rng.uniform(0, 1, (batch, anchors)).astype(np.float32))
    window = (int(rng.integers(20, 65)), int(rng.integers(20, 65)))
    score_threshold, iou_threshold = float(rng.choice([0.0, 0.6])), float(rng.uniform(0.3, 0.8))
    max_proposals = int(rng.integers(1, 40))
    found, found_counts = batched_proposals(
        boxes, objectness, torch.tensor(window, dtype=torch.float64), score_threshold=score_threshold,
        iou_threshold=iou_threshold, max_proposals=max_proposals)
    expected, expected_counts = select_proposals(
        boxes, objectness, torch.tensor([window] * batch), score_threshold=score_threshold,
        iou_threshold=iou_threshold, max_proposals=max_proposals)
    assert found_counts.tolist() == expected_counts.tolist()
    torch.testing.assert_close(found, expected, atol=0, rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_second_stage_nms_equals_second_stage_non_max_suppression(seed: int) -> None:
    """Random per-class (or shared) boxes and logits, rows past each image's num_proposals
    ignored, thresholds and caps: the eager NMS's detections, zero rows after the count."""
    rng = np.random.default_rng(seed)
    batch, rows, classes = int(rng.integers(1, 4)), int(rng.integers(1, 30)), int(rng.integers(1, 4))
    boxes = _random_boxes(rng, (batch, rows, classes if seed % 2 else 1))  # [B, P, C', 4]
    logits = torch.from_numpy(rng.normal(0, 2, (batch, rows, classes + 1)).astype(np.float32))
    num_valid = torch.from_numpy(rng.integers(0, rows + 1, batch))
    nms = SecondStageNonMaxSuppression(
        score_threshold=float(rng.choice([0.0, 0.3])), iou_threshold=float(rng.uniform(0.3, 0.7)),
        max_detections_per_class=int(rng.integers(1, 10)), max_total_detections=int(rng.integers(3, 20)),
        score_converter="SOFTMAX")
    window = (int(rng.integers(20, 65)), int(rng.integers(20, 65)))
    scores = convert_scores(logits, nms.score_converter)[..., 1:]
    valid_rows = torch.arange(rows)[None] < num_valid[:, None]
    found = batched_detections(boxes, scores, torch.tensor(window, dtype=torch.float64), nms, valid_rows)
    for index, detection in enumerate(nms(boxes, logits, num_valid, [window] * batch)):
        count = len(detection["scores"])
        assert int(found[3][index]) == count
        yxyx = detection["boxes"][:, [1, 0, 3, 2]] / torch.tensor([*window, *window])
        torch.testing.assert_close(found[0][index, :count], yxyx, atol=1e-6, rtol=0)
        torch.testing.assert_close(found[1][index, :count], detection["scores"], atol=0, rtol=0)
        assert found[2][index, :count].tolist() == detection["labels"].tolist()
        assert not found[0][index, count:].any() and not found[1][index, count:].any()
