"""Mask R-CNN (ResNet-50 Keras, mask head) against the OD API, level by level, on a tiny
fixture the OD API made itself (tests/fixtures/odapi_mask_rcnn/make_fixture.py, run in the
reference env): its TF2 checkpoint (mask head included) is imported by name, then proposals,
second-stage outputs, detections, the third stage's mask logits, the detection masks and the
masks reframed to the image are compared, each stage also from the OD API's own inputs; and
the five training losses (mask loss included) of one step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from objdet import config as cfg
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.faster_rcnn_masks import (
    reframe_box_masks_to_image_masks,
    select_class_masks,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
MASK_FIXTURE = FIXTURES / "odapi_mask_rcnn"
RESNET_DEPTH_MULTIPLIER = 0.0625  # make_fixture.py's
RELATIVE_TOLERANCE = 1e-4
MASK_TOLERANCE = 1e-3  # mean |Δ| of mask probabilities
NUM_IMAGES = 2

Arrays = dict[str, np.ndarray]


def xyxy(boxes: np.ndarray) -> torch.Tensor:
    """OD API (ymin, xmin, ymax, xmax) -> (x1, y1, x2, y2)."""
    return torch.from_numpy(np.asarray(boxes, dtype=np.float32)[..., [1, 0, 3, 2]])


def relative_error(actual: torch.Tensor, expected: np.ndarray) -> float:
    reference = torch.from_numpy(np.asarray(expected, dtype=np.float32))
    assert actual.shape == reference.shape
    return float((actual.float() - reference).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def tiny() -> tuple[FasterRCNN, Arrays]:
    config = cfg.load(MASK_FIXTURE / "pipeline.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    report = load_tf2_checkpoint(model, MASK_FIXTURE / "checkpoint" / "ckpt-0")
    assert any(name.startswith("mask_head.") for name in report.loaded)
    arrays = dict(np.load(MASK_FIXTURE / "reference.npz"))
    images = np.load(FIXTURES / "odapi_faster_rcnn" / "reference.npz")  # the same inputs
    arrays.update({f"image_{index}": images[f"image_{index}"] for index in range(NUM_IMAGES)})
    return model.eval(), arrays


def image_tensor(arrays: Arrays, index: int) -> torch.Tensor:
    return torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0


def od_api_detections(arrays: Arrays, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The OD API's detection boxes (fractions of the image window, x1y1x2y2), labels 1..K
    and their count."""
    count = int(arrays[f"num_detections_{index}"][0])
    boxes = xyxy(arrays[f"detection_boxes_{index}"][0, :count])
    labels = torch.from_numpy(arrays[f"detection_classes_{index}"][0, :count]).long() + 1
    return boxes, labels, count


def test_mask_head_variables_map_from_the_checkpoint() -> None:
    config = cfg.load(MASK_FIXTURE / "pipeline.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    mask_keys = {key for key, target in model.tf2_variable_map().items()
                 if target.name.startswith("mask_head.")}
    assert mask_keys == {
        f"model/_mask_rcnn_box_predictor/_third_stage_heads/mask_predictions/"
        f"_mask_predictor_layers/{index}/{name}/.ATTRIBUTES/VARIABLE_VALUE"
        for index in (0, 3, 6) for name in ("kernel", "bias")}
    assert model.mask_head is not None and model.mask_head.num_masks == 2


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_third_stage_from_the_od_api_detections_matches(tiny: tuple[FasterRCNN, Arrays],
                                                        index: int) -> None:
    model, arrays = tiny
    assert model.mask_head is not None
    features = torch.from_numpy(arrays[f"rpn_features_{index}"].transpose(0, 3, 1, 2).copy())
    boxes, labels, count = od_api_detections(arrays, index)
    with torch.no_grad():
        logits = model.mask_head(model.box_classifier_features(features, boxes[None]))
        masks = model.predict_masks(features, boxes, labels)
    expected_logits = arrays[f"mask_predictions_{index}"][:count]  # [D, K, 14, 12]
    assert relative_error(logits, expected_logits) <= RELATIVE_TOLERANCE
    assert relative_error(masks, arrays[f"detection_masks_{index}"][0, :count]) <= (
        RELATIVE_TOLERANCE)
    assert torch.equal(select_class_masks(logits, labels).sigmoid(), masks)


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_reframing_of_the_od_api_masks_matches(tiny: tuple[FasterRCNN, Arrays],
                                               index: int) -> None:
    _, arrays = tiny
    expected = arrays[f"reframed_masks_{index}"].astype(np.float32) / 65535.0  # [S, H, W]
    shown = expected.shape[0]
    boxes, _, _ = od_api_detections(arrays, index)
    box_masks = torch.from_numpy(arrays[f"detection_masks_{index}"][0, :shown])
    reframed = reframe_box_masks_to_image_masks(box_masks, boxes[:shown], expected.shape[1:])
    assert float((reframed - torch.from_numpy(expected)).abs().max()) <= 1e-4
    assert float(torch.from_numpy(expected).amax()) > 0.5  # masks with foreground


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_end_to_end_masks_match(tiny: tuple[FasterRCNN, Arrays], index: int) -> None:
    """The whole eval path from the image: same detections, and masks over the input image
    within MASK_TOLERANCE (mean |Δ|) of the OD API's reframed ones."""
    model, arrays = tiny
    image = image_tensor(arrays, index)
    with torch.no_grad():
        detections = model([image])[0]
    assert isinstance(detections, dict)
    height, width = arrays[f"image_{index}"].shape[:2]
    boxes, labels, count = od_api_detections(arrays, index)
    assert detections["boxes"].shape[0] == count
    expected_boxes = boxes * torch.tensor([width, height, width, height], dtype=torch.float32)
    assert float(box_iou(expected_boxes, detections["boxes"]).diagonal().min()) >= 0.99
    assert torch.equal(detections["labels"], labels)
    assert detections["masks"].shape == (count, 1, height, width)
    expected = torch.from_numpy(arrays[f"reframed_masks_{index}"].astype(np.float32) / 65535.0)
    difference = (detections["masks"][: expected.shape[0], 0] - expected).abs()
    assert float(difference.mean()) <= MASK_TOLERANCE
    # A pixel on a box edge samples the mask exactly at its border: the OD API's boxes end
    # at 0.99999994 where objdet's reach 1.0, and ``crop_and_resize`` zeroes a sample just
    # outside. Such rows of edge pixels aside, the masks agree.
    assert float((difference > MASK_TOLERANCE).float().mean()) <= 1e-3


def test_training_losses_match() -> None:
    """The five losses of one training step (the mask loss on ellipse masks given in input
    pixels, which the model resizes to the canvas) against the OD API's."""
    arrays = dict(np.load(MASK_FIXTURE / "training.npz"))
    image_array = np.load(FIXTURES / "odapi_faster_rcnn" / "reference.npz")["image_1"]
    config = cfg.load(MASK_FIXTURE / "pipeline_training.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    load_tf2_checkpoint(model, MASK_FIXTURE / "checkpoint" / "ckpt-0")
    image = torch.from_numpy(image_array).permute(2, 0, 1).float() / 255.0
    batch = model.resize_batch([image])
    scale = batch.scales()[0].flip(0).repeat(2)  # (x, y, x, y) canvas pixels per input pixel
    targets = [{"boxes": torch.from_numpy(arrays["gt_boxes_canvas"]) / scale,
                "labels": torch.from_numpy(arrays["gt_labels"]),
                "masks": torch.from_numpy(arrays["gt_masks"])}]
    losses = model.train()([image], targets)
    assert isinstance(losses, dict)
    expected = {key[len("loss/"):]: float(value) for key, value in arrays.items()
                if key.startswith("loss/")}
    assert set(losses) == set(expected)
    assert expected["Loss/BoxClassifierLoss/mask_loss"] > 0
    for name, value in expected.items():
        assert abs(float(losses[name].detach()) - value) <= 1e-4 * max(abs(value), 1.0), name
