"""Faster R-CNN on a feature pyramid: level assignment, the packed pyramid, half-stride anchors,
the builder's refusals, and the contract (one train step, eval) on a tiny FPN model (parity with
the OD API: test_faster_rcnn_fpn_parity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models.anchor_generators import MultiscaleAnchorGenerator
from objdet.models.contract import check_detection_model
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, true_image_shapes
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.faster_rcnn_pyramid import (
    FirstStageMultiscaleAnchors,
    fpn_box_levels,
    pack_pyramid,
    unpack_pyramid,
)
from objdet.protos import faster_rcnn_pb2

TINY = Path(__file__).parents[1] / "fixtures" / "odapi_faster_rcnn_fpn" / "pipeline.config"
DEPTH_MULTIPLIER = 0.0625


def tiny_config() -> faster_rcnn_pb2.FasterRcnn:
    return cfg.load(TINY).model.faster_rcnn


def tiny_model() -> FasterRCNN:
    torch.manual_seed(0)
    return build_faster_rcnn(tiny_config(), backbone_depth_multiplier=DEPTH_MULTIPLIER)


def test_box_levels_follow_the_od_api_formula() -> None:
    """``floor(log2(sqrt(area) / 224)) + num_levels - 2``, clamped; a 224-pixel box picks
    index 3 of 5 whatever the canvas."""
    canvas = (448, 448)
    sides = [224.0, 223.0, 112.0, 56.0, 27.0, 448.0, 0.0]  # square boxes, pixels
    boxes = torch.tensor([[[0.0, 0.0, side / 448, side / 448] for side in sides]])
    assert fpn_box_levels(boxes, canvas, 5).tolist() == [[3, 2, 2, 1, 0, 4, 0]]
    assert fpn_box_levels(boxes, canvas, 3).tolist() == [[1, 0, 0, 0, 0, 2, 0]]


def test_pack_and_unpack_are_inverse() -> None:
    maps = [torch.rand(2, 4, 8, 6), torch.rand(2, 4, 4, 3), torch.rand(2, 4, 2, 2)]
    packed = pack_pyramid(maps)
    assert packed.shape == (2, 4, 48 + 12 + 4)
    for original, unpacked in zip(maps, unpack_pyramid(packed, [(8, 6), (4, 3), (2, 2)]),
                                  strict=True):
        assert torch.equal(original, unpacked)
    with pytest.raises(ValueError, match=r"does not hold levels \[\(8, 6\)\]"):
        unpack_pyramid(packed, [(8, 6)])


def test_first_stage_anchors_start_half_a_stride_in() -> None:
    """Faster R-CNN generates multiscale anchors without the image size: every level's first
    centre is half its stride in, even where the stride does not divide the canvas."""
    anchors = FirstStageMultiscaleAnchors(MultiscaleAnchorGenerator(
        min_level=2, max_level=3, anchor_scale=4.0, aspect_ratios=[1.0], scales_per_octave=1))
    boxes = anchors([(3, 3), (2, 2)], 96, 96)  # 8 does not divide 12 (the level-3 side)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert centres[0].tolist() == [2.0, 2.0]  # level 2: stride 4
    assert centres[9].tolist() == [4.0, 4.0]  # level 3: stride 8
    assert (boxes[9, 2:] - boxes[9, :2]).tolist() == [32.0, 32.0]  # anchor_scale * stride


@pytest.mark.parametrize(("edit", "field"), [
    (("number_of_stages: 3 second_stage_box_predictor { mask_rcnn_box_predictor { "
      "predict_instance_masks: true conv_hyperparams { op: CONV } } }"), "number_of_stages"),
    ("first_stage_anchor_generator { grid_anchor_generator { } }",
     "first_stage_anchor_generator: grid_anchor_generator"),
    ("first_stage_anchor_generator { multiscale_anchor_generator { normalize_coordinates: true } }",
     "normalize_coordinates"),
    ("first_stage_anchor_generator { multiscale_anchor_generator { max_level: 5 } }",
     "multiscale_anchor_generator: levels 2..5"),
    ("feature_extractor { pad_to_multiple: 64 }", "feature_extractor.pad_to_multiple"),
    ("feature_extractor { first_stage_features_stride: 32 }",
     "feature_extractor.first_stage_features_stride"),
    ("feature_extractor { fpn { min_level: 1 } }", "feature_extractor.fpn.min_level"),
])
def test_unsupported_settings_are_refused_by_name(edit: str, field: str) -> None:
    config = tiny_config()
    text_format.Merge(edit, config)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_faster_rcnn(config, backbone_depth_multiplier=DEPTH_MULTIPLIER)


def test_fpn_fields_are_refused_on_a_single_map_extractor() -> None:
    config = tiny_config()
    config.feature_extractor.type = "faster_rcnn_resnet50_keras"
    with pytest.raises(ConfigError, match=r"feature_extractor\.conv_hyperparams"):
        build_faster_rcnn(config, backbone_depth_multiplier=DEPTH_MULTIPLIER)
    config.feature_extractor.ClearField("conv_hyperparams")
    config.feature_extractor.ClearField("override_base_feature_extractor_hyperparams")
    config.feature_extractor.ClearField("fpn")
    with pytest.raises(ConfigError, match="multiscale_anchor_generator is not supported"):
        build_faster_rcnn(config, backbone_depth_multiplier=DEPTH_MULTIPLIER)


def test_one_training_step_trains_every_part() -> None:
    model = tiny_model().train()
    images = [torch.rand(3, 120, 128), torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0], [60.0, 5.0, 120.0, 60.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model(images, targets)
    assert isinstance(losses, dict) and len(losses) == 4
    assert all(bool(torch.isfinite(value)) for value in losses.values())
    sum(losses.values()).backward()  # type: ignore[union-attr]
    extractor = model.feature_extractor
    for module in (model.proposal_head, model.box_predictor, extractor.fpn,  # type: ignore[union-attr]
                   extractor.box_classifier, extractor.classification_backbone):  # type: ignore[union-attr]
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), module


def test_eval_mode_keeps_the_detection_contract() -> None:
    model = tiny_model()
    detector = check_detection_model(model)
    model.eval()
    images = [torch.rand(3, 120, 160), torch.rand(3, 128, 96)]
    with torch.no_grad():
        detections = model(images)
        batch = model.resize_batch(images)
        predictions = model.predict(batch.images, true_image_shapes(batch.resized_sizes))
        single = model([images[1]])
    assert set(predictions) == set(detector.graph_outputs)
    assert predictions["anchors"].shape[0] == 6 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
    assert isinstance(detections, list) and len(detections) == 2
    for detection, image in zip(detections, images, strict=True):
        boxes = detection["boxes"]
        assert 0 < len(boxes) <= detector.max_detections
        assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 2)).all()
    assert isinstance(single, list)  # batched == per image
    torch.testing.assert_close(single[0]["scores"], detections[1]["scores"], atol=1e-5, rtol=0)
