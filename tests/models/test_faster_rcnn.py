"""Faster R-CNN pieces: crop-and-resize sampling, grid anchors, the builder's allow-list, the
balanced sampler and one training step (parity with the OD API: test_faster_rcnn_parity.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models import build_model
from objdet.models.contract import check_detection_model
from objdet.models.grid_anchor_generator import GridAnchorGenerator
from objdet.models.layers.crop_and_resize import crop_and_resize
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, true_image_shapes
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.faster_rcnn_training import balanced_sample
from objdet.protos import faster_rcnn_pb2

CONFIGS = Path(__file__).parents[3] / "shared" / "data" / "odapi" / "configs" / "tf2"
TINY = Path(__file__).parents[1] / "fixtures" / "odapi_faster_rcnn" / "pipeline.config"


def tf_crop_and_resize(features: torch.Tensor, box: list[float], crop: int) -> torch.Tensor:
    """``tf.image.crop_and_resize`` for one box (y1, x1, y2, x2 normalized) of a [C, H, W] map,
    written from its documentation, one sample at a time."""
    _, height, width = features.shape
    y1, x1, y2, x2 = box
    out = torch.zeros(features.shape[0], crop, crop)
    for i in range(crop):
        y = (y1 * (height - 1) + i * (y2 - y1) * (height - 1) / (crop - 1) if crop > 1
             else 0.5 * (y1 + y2) * (height - 1))
        for j in range(crop):
            x = (x1 * (width - 1) + j * (x2 - x1) * (width - 1) / (crop - 1) if crop > 1
                 else 0.5 * (x1 + x2) * (width - 1))
            if not (0 <= y <= height - 1 and 0 <= x <= width - 1):
                continue  # extrapolation value 0
            top, left = math.floor(y), math.floor(x)
            bottom, right = min(top + 1, height - 1), min(left + 1, width - 1)
            dy, dx = y - top, x - left
            upper = features[:, top, left] * (1 - dx) + features[:, top, right] * dx
            lower = features[:, bottom, left] * (1 - dx) + features[:, bottom, right] * dx
            out[:, i, j] = upper * (1 - dy) + lower * dy
    return out


@pytest.mark.parametrize("crop", [1, 3, 14])
def test_crop_and_resize_samples_as_tensorflow(crop: int) -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 9, 7, generator=generator)
    # (x1, y1, x2, y2) fractions: a large box, a box under one feature pixel (where
    # roi_align's minimum RoI size would sample elsewhere), a flipped one, the full map.
    boxes = torch.tensor([[[0.1, 0.2, 0.9, 0.7], [0.31, 0.42, 0.33, 0.45]],
                          [[0.8, 0.6, 0.2, 0.1], [0.0, 0.0, 1.0, 1.0]]])
    crops = crop_and_resize(features, boxes, crop).reshape(2, 2, 5, crop, crop)
    for image in range(2):
        for index in range(2):
            x1, y1, x2, y2 = boxes[image, index].tolist()
            expected = tf_crop_and_resize(features[image], [y1, x1, y2, x2], crop)
            torch.testing.assert_close(crops[image, index], expected, atol=1e-5, rtol=1e-5)


def test_grid_anchors_follow_the_od_api_order() -> None:
    generator = GridAnchorGenerator(scales=[0.5, 1.0], aspect_ratios=[0.5, 2.0],
                                    base_anchor_size=(256, 256), stride=(16, 16), offset=(0, 0))
    anchors = generator([(2, 3)], 32, 48)
    assert anchors.shape == (2 * 3 * 4, 4)
    # location (row 1, column 2): centre (y, x) = (16, 32); anchor 1 = ratio 0.5, scale 1.0
    height, width = 1.0 / math.sqrt(0.5) * 256, math.sqrt(0.5) * 256
    expected = torch.tensor([32 - width / 2, 16 - height / 2, 32 + width / 2, 16 + height / 2])
    torch.testing.assert_close(anchors[(1 * 3 + 2) * 4 + 1], expected)


# Every TF2 zoo Faster R-CNN config with a Keras ResNet extractor (50/101/152; 640, 1024 and
# 800x1333; the FPN ones are refused by name, test_unsupported_fields_are_refused_by_name).
ZOO_CONFIGS = sorted(path.stem for path in CONFIGS.glob("faster_rcnn_resnet*_v1_*.config")
                     if "_fpn_" not in path.stem)


@pytest.mark.parametrize("name", ZOO_CONFIGS)
def test_zoo_configs_build(name: str) -> None:
    assert len(ZOO_CONFIGS) == 9
    model = build_model(cfg.load(CONFIGS / f"{name}.config").model)
    assert isinstance(model, FasterRCNN)
    check_detection_model(model)
    assert model.num_classes == 90
    assert model.first_stage_max_proposals == 300


def tiny_config() -> faster_rcnn_pb2.FasterRcnn:
    return cfg.load(TINY).model.faster_rcnn


@pytest.mark.parametrize(("edit", "field"), [
    ("number_of_stages: 1", "number_of_stages"),
    ("hard_example_miner { num_hard_examples: 8 }", "hard_example_miner"),
    ("use_static_shapes_for_eval: true", "use_static_shapes_for_eval"),
    ("output_final_box_features: true", "output_final_box_features"),
    ("feature_extractor { first_stage_features_stride: 8 }", "first_stage_features_stride"),
    ("feature_extractor { type: 'faster_rcnn_resnet50_fpn_keras' }",
     "feature_extractor.conv_hyperparams"),
    ("second_stage_box_predictor { mask_rcnn_box_predictor { predict_instance_masks: true } }",
     "predict_instance_masks"),
    ("first_stage_anchor_generator { ssd_anchor_generator { num_layers: 1 } }",
     "first_stage_anchor_generator.ssd_anchor_generator"),
    ("second_stage_post_processing { batch_non_max_suppression { use_class_agnostic_nms: true } }",
     "use_class_agnostic_nms"),
])
def test_unsupported_fields_are_refused_by_name(edit: str, field: str) -> None:
    config = tiny_config()
    text_format.Merge(edit, config)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_faster_rcnn(config, backbone_depth_multiplier=0.0625)


def test_second_stage_batch_size_over_the_proposals_is_refused_for_training_only() -> None:
    """As the OD API's builder: an eval/export config may sample more than it proposes."""
    config = tiny_config()
    config.second_stage_batch_size = config.first_stage_max_proposals + 1
    model = build_faster_rcnn(config, backbone_depth_multiplier=0.0625).eval()
    with torch.no_grad():
        (detections,) = model([torch.rand(3, 64, 64)])
    assert detections["boxes"].shape[1] == 4
    target = {"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]), "labels": torch.tensor([1])}
    with pytest.raises(ConfigError, match=r"second_stage_batch_size: \d+; expected <= "
                                          r"first_stage_max_proposals"):
        model.train()([torch.rand(3, 64, 64)], [target])


def test_balanced_sample_caps_positives() -> None:
    indicator = torch.ones(100, dtype=torch.bool)
    indicator[90:] = False  # ignored
    labels = torch.zeros(100, dtype=torch.bool)
    labels[:40] = True
    sampled = balanced_sample(indicator, labels, 32, 0.25)
    assert int(sampled.sum()) == 32
    assert int((sampled & labels).sum()) == 8
    assert not bool(sampled[90:].any())
    two_positives = torch.arange(100) < 2
    few = balanced_sample(indicator, two_positives, 32, 0.5)
    assert int((few & two_positives).sum()) == 2 and int(few.sum()) == 32  # negatives fill up


def test_one_training_step_gives_the_od_api_losses_and_gradients() -> None:
    torch.manual_seed(0)
    model = build_faster_rcnn(tiny_config(), backbone_depth_multiplier=0.0625).train()
    images = [torch.rand(3, 120, 160), torch.rand(3, 128, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0], [60.0, 5.0, 150.0, 60.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model(images, targets)
    assert isinstance(losses, dict)
    assert set(losses) == {"Loss/RPNLoss/localization_loss", "Loss/RPNLoss/objectness_loss",
                           "Loss/BoxClassifierLoss/localization_loss",
                           "Loss/BoxClassifierLoss/classification_loss"}
    assert all(bool(torch.isfinite(value)) for value in losses.values())
    assert float(losses["Loss/RPNLoss/localization_loss"].detach()) > 0
    sum(losses.values()).backward()  # type: ignore[union-attr]
    for module in (model.proposal_head, model.box_predictor, model.feature_extractor):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_eval_mode_keeps_the_detection_contract() -> None:
    """Eval mode: per-image detections in input pixels, sorted, inside the image, label ids
    1..num_classes, at most max_detections; ``predict`` gives every graph output."""
    torch.manual_seed(0)
    model = build_faster_rcnn(tiny_config(), backbone_depth_multiplier=0.0625)
    detector = check_detection_model(model)
    model.eval()
    images = [torch.rand(3, 120, 160), torch.rand(3, 128, 96)]
    with torch.no_grad():
        detections = model(images)
        batch = model.resize_batch(images)
        predictions = model.predict(batch.images, true_image_shapes(batch.resized_sizes))
    assert set(predictions) == set(detector.graph_outputs)
    assert isinstance(detections, list) and len(detections) == 2
    for detection, image in zip(detections, images):
        boxes = detection["boxes"]
        assert 0 < len(boxes) <= detector.max_detections
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
        assert (detection["scores"][:-1] >= detection["scores"][1:]).all()
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 2)).all()
