"""The TF1 SSD slim ResNet v1 FPN extractors: pyramid levels and widths, the base's
hyperparameters, refused fields, and the builder choosing them from the OD API's TF1
sample configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models.backbones.resnet_v1_slim import Bottleneck
from objdet.models.feature_extractors.registry import SSD_FEATURE_EXTRACTORS
from objdet.models.feature_extractors.ssd_resnet_fpn_slim import (
    SSDResNetV1FpnSlimFeatureExtractor,
)
from objdet.models.meta_arch.ssd_builder import build_ssd_feature_extractor
from objdet.models.necks.slim_fpn import SlimFpnTopDown
from objdet.protos import ssd_pb2

TF1_CONFIGS = Path(__file__).parents[4] / "shared" / "data" / "odapi" / "configs" / "tf1_samples"
RESNET50_CONFIG = TF1_CONFIGS / "ssd_resnet50_v1_fpn_shared_box_predictor_640x640_coco14_sync.config"
RESNET101_CONFIG = TF1_CONFIGS / "ssd_resnet101_v1_fpn_shared_box_predictor_oid_512x512_sync.config"
PATH = "model.ssd.feature_extractor"


def _config(path: Path = RESNET50_CONFIG, edit: str = "") -> ssd_pb2.SsdFeatureExtractor:
    """The config's feature_extractor at depth multiplier 1/16 (min_depth 16 stays)."""
    config = cfg.load(path).model.ssd.feature_extractor
    text_format.Merge("depth_multiplier: 0.0625 " + edit, config)
    return config


def _build(config: ssd_pb2.SsdFeatureExtractor) -> SSDResNetV1FpnSlimFeatureExtractor:
    torch.manual_seed(0)
    extractor, _ = build_ssd_feature_extractor(config, PATH)
    assert isinstance(extractor, SSDResNetV1FpnSlimFeatureExtractor)
    return extractor


def test_every_depth_is_registered() -> None:
    for depth in (50, 101, 152):
        assert f"ssd_resnet{depth}_v1_fpn" in SSD_FEATURE_EXTRACTORS


@pytest.mark.parametrize(("path", "block3_units", "sizes"), [
    (RESNET50_CONFIG, 6, [(20, 24), (10, 12), (5, 6), (3, 3), (2, 2)]),  # levels 3..7
    (RESNET101_CONFIG, 23, [(40, 48), (20, 24), (10, 12), (5, 6), (3, 3), (2, 2)]),  # 2..7
])
def test_tf1_configs_build_their_fpn_levels(path: Path, block3_units: int,
                                            sizes: list[tuple[int, int]]) -> None:
    extractor = _build(_config(path))
    base = extractor.classification_backbone
    assert len(base.blocks[2]) == block3_units
    # min_base_depth is the config's min_depth (16): base depths 16, 16, 16, 32
    assert base.out_channels == [64, 64, 64, 128]
    assert extractor.out_channels == [16] * len(sizes)  # max(int(256 / 16), 16)
    assert isinstance(extractor.fpn, SlimFpnTopDown)  # TF1's top-down: unsmoothed sums go up
    # store_non_strided_activations: every unit at stride 1, the blocks subsampled after
    assert base.subsamples == [2, 2, 2, 1]
    assert all(unit.conv2.conv.stride == (1, 1) for block in base.blocks for unit in block)
    with torch.no_grad():
        maps = extractor.eval()(extractor.preprocess(torch.rand(1, 3, 160, 192)))
    assert [tuple(level.shape) for level in maps] == [(1, 16, *size) for size in sizes]


def test_override_base_hyperparams_builds_the_base_from_conv_hyperparams() -> None:
    overridden = _build(_config()).classification_backbone
    default = _build(_config(edit="override_base_feature_extractor_hyperparams: false")
                     ).classification_backbone
    unit = overridden.blocks[0][0]
    assert isinstance(unit, Bottleneck)
    # the config's batch norm (epsilon 0.001) and RELU_6; the unit's sum stays a ReLU
    assert unit.conv1.norm.eps == pytest.approx(0.001)
    assert isinstance(unit.conv1.activation, torch.nn.ReLU6)
    assert overridden.weight_decay == pytest.approx(0.0004)
    default_unit = default.blocks[0][0]
    assert isinstance(default_unit, Bottleneck)
    assert default_unit.conv1.norm.eps == pytest.approx(1e-5)  # resnet_arg_scope()
    assert isinstance(default_unit.conv1.activation, torch.nn.ReLU)
    assert default.weight_decay == pytest.approx(0.0001)


def test_fpn_levels_and_depth_are_honoured() -> None:
    extractor = _build(_config(edit="fpn { min_level: 2 max_level: 5 "
                                    "additional_layer_depth: 512 }"))
    assert extractor.out_channels == [32] * 4 and len(extractor.coarse_layers) == 0
    with torch.no_grad():
        maps = extractor.eval()(torch.zeros(1, 3, 160, 160))
    assert [tuple(level.shape[-2:]) for level in maps] == [(40, 40), (20, 20), (10, 10), (5, 5)]


def test_small_images_are_refused() -> None:
    extractor = _build(_config())
    with pytest.raises(ValueError, match="129"):
        extractor(torch.zeros(1, 3, 128, 160))


@pytest.mark.parametrize(("edit", "field"), [
    ("use_explicit_padding: true", "use_explicit_padding"),
    ("use_depthwise: true", "use_depthwise"),
    ("fpn { min_level: 6 }", "fpn.min_level"),
    ("conv_hyperparams { force_use_bias: true }", "force_use_bias"),
])
def test_settings_it_cannot_honour_are_refused_by_name(edit: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"{PATH}.*{field}"):
        _build(_config(edit=edit))


def test_a_missing_fpn_block_is_refused() -> None:
    config = _config()
    config.ClearField("fpn")
    with pytest.raises(ConfigError, match="needs an fpn"):
        _build(config)
