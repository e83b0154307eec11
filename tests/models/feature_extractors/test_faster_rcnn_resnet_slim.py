"""The TF1 Faster R-CNN slim ResNet extractors: outputs and strides, batch norm modes, the
registry's errors, and the builder choosing them from the OD API's TF1 sample configs
(parity with tf_slim: tests/models/backbones/test_resnet_v1_slim_parity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import CheckpointError, ConfigError
from objdet.models.feature_extractors.faster_rcnn_registry import (
    FASTER_RCNN_FEATURE_EXTRACTORS,
    FasterRcnnExtractorParams,
)
from objdet.models.feature_extractors.faster_rcnn_resnet_slim import (
    FasterRcnnResNetSlimFeatureExtractor,
)
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn

TF1_CONFIGS = Path(__file__).parents[4] / "shared" / "data" / "odapi" / "configs" / "tf1_samples"
TINY = 1 / 16  # backbone depth multiplier: base depths 8, 8, 16, 32


def _extractor(kind: str, stride: int, **options: object) -> FasterRcnnResNetSlimFeatureExtractor:
    torch.manual_seed(0)
    extractor = FASTER_RCNN_FEATURE_EXTRACTORS[kind](FasterRcnnExtractorParams(
        first_stage_features_stride=stride, depth_multiplier=TINY, **options))  # type: ignore[arg-type]
    assert isinstance(extractor, FasterRcnnResNetSlimFeatureExtractor)
    return extractor


@pytest.mark.parametrize(("kind", "block3_units"), [
    ("faster_rcnn_resnet50", 6), ("faster_rcnn_resnet101", 23), ("faster_rcnn_resnet152", 36)])
def test_each_depth_is_registered(kind: str, block3_units: int) -> None:
    extractor = _extractor(kind, 16)
    assert [len(block) for block in extractor.first_stage.blocks][-1] == block3_units
    assert len(extractor.second_stage) == 3
    assert (extractor.proposal_channels, extractor.box_classifier_channels) == (64, 128)


@pytest.mark.parametrize("stride", [8, 16])
def test_proposal_features_have_the_configured_stride(stride: int) -> None:
    extractor = _extractor("faster_rcnn_resnet50", stride).eval()
    images = extractor.preprocess(torch.rand(1, 3, 65, 97))
    with torch.no_grad():
        features = extractor.extract_proposal_features(images)
        # the second stage's block4 runs at stride 1: crops keep their size
        box_features = extractor.extract_box_classifier_features(torch.randn(5, 64, 7, 7))
    assert tuple(features.shape) == (1, 64, -(-65 // stride), -(-97 // stride))
    assert tuple(box_features.shape) == (5, 128, 7, 7)


def test_preprocessing_subtracts_the_vgg_means_on_0_255() -> None:
    images = torch.full((1, 3, 2, 2), 0.5)
    processed = FasterRcnnResNetSlimFeatureExtractor.preprocess(images)
    torch.testing.assert_close(processed[0, :, 0, 0],
                               torch.tensor([127.5 - 123.68, 127.5 - 116.779, 127.5 - 103.939]))


def test_small_images_are_refused() -> None:
    extractor = _extractor("faster_rcnn_resnet50", 16)
    with pytest.raises(ValueError, match="at least|>= 33"):
        extractor.extract_proposal_features(torch.zeros(1, 3, 32, 64))


@pytest.mark.parametrize("trainable", [False, True])
def test_batch_norm_trains_only_with_batch_norm_trainable(trainable: bool) -> None:
    extractor = _extractor("faster_rcnn_resnet50", 16, batch_norm_trainable=trainable).train()
    norms = [module for module in extractor.modules()
             if isinstance(module, torch.nn.BatchNorm2d)]
    assert norms and all(norm.training == trainable for norm in norms)
    assert all(norm.weight.requires_grad and norm.bias.requires_grad for norm in norms)
    assert extractor.weight_decay == 0.0  # the OD API's builder passes no weight decay


@pytest.mark.parametrize("stride", [4, 32])
def test_other_strides_are_refused_naming_the_field(stride: int) -> None:
    with pytest.raises(ValueError, match=r"^first_stage_features_stride must be 8 or 16"):
        _extractor("faster_rcnn_resnet101", stride)


def test_no_tf2_checkpoint_maps_exist_for_a_tf1_extractor() -> None:
    extractor = _extractor("faster_rcnn_resnet50", 16)
    with pytest.raises(CheckpointError, match="TF1"):
        extractor.tf2_variable_map()
    names = extractor.slim_variable_map()
    assert "FirstStageFeatureExtractor/resnet_v1_50/conv1/weights" in names
    assert ("SecondStageFeatureExtractor/resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/"
            "BatchNorm/moving_variance") in names


@pytest.mark.parametrize(("name", "stride", "block3_units"), [
    ("faster_rcnn_resnet101_atrous_coco", 8, 23),
    ("faster_rcnn_resnet50_coco", 16, 6),
])
def test_the_builder_picks_the_slim_extractor_from_tf1_configs(
        name: str, stride: int, block3_units: int) -> None:
    config = cfg.load(TF1_CONFIGS / f"{name}.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=TINY)
    extractor = model.feature_extractor
    assert isinstance(extractor, FasterRcnnResNetSlimFeatureExtractor)
    assert extractor.first_stage_features_stride == stride
    assert len(extractor.first_stage.blocks[2]) == block3_units


def test_the_builder_names_the_refused_stride() -> None:
    config = cfg.load(TF1_CONFIGS / "faster_rcnn_resnet50_pets.config").model.faster_rcnn
    text_format.Merge("feature_extractor { first_stage_features_stride: 32 }", config)
    with pytest.raises(ConfigError, match=r"model\.faster_rcnn\.feature_extractor\."
                                          r"first_stage_features_stride must be 8 or 16"):
        build_faster_rcnn(config, backbone_depth_multiplier=TINY)


def test_a_tiny_atrous_model_trains_a_step_and_detects() -> None:
    tiny = Path(__file__).parents[2] / "fixtures" / "odapi_faster_rcnn" / "pipeline.config"
    config = cfg.load(tiny).model.faster_rcnn
    text_format.Merge("feature_extractor { type: 'faster_rcnn_resnet50' "
                      "first_stage_features_stride: 8 } first_stage_anchor_generator { "
                      "grid_anchor_generator { height_stride: 8 width_stride: 8 } }", config)
    torch.manual_seed(0)
    model = build_faster_rcnn(config, backbone_depth_multiplier=TINY).train()
    images = [torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 80.0]]), "labels": torch.tensor([1])}]
    losses = model(images, targets)
    assert isinstance(losses, dict) and all(bool(torch.isfinite(v)) for v in losses.values())
    sum(losses.values()).backward()  # type: ignore[union-attr]
    first_conv = model.feature_extractor.first_stage.stem.conv.weight
    assert first_conv.grad is not None and bool(first_conv.grad.abs().sum() > 0)
    with torch.no_grad():
        detections = model.eval()(images)
    assert isinstance(detections, list) and detections[0]["boxes"].shape[1] == 4
