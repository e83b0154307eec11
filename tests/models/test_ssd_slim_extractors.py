"""The TF1 (slim) SSD extractors: MobileNet v1/v2 FPN, MobileNet v1 PPN, embedded MobileNet v1,
Inception v2/v3 -- their maps, padding and selection from a config."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models import build_model, parameter_groups
from objdet.models.feature_extractors.params import FeatureExtractorParams, FpnParams
from objdet.models.feature_extractors.registry import SSD_FEATURE_EXTRACTORS
from objdet.models.feature_extractors.ssd_inception import SSDInceptionFeatureExtractor
from objdet.models.feature_extractors.ssd_mobilenet_fpn_slim import (
    SSDMobileNetFpnSlimFeatureExtractor,
)
from objdet.models.feature_extractors.ssd_mobilenet_v1_slim_variants import (
    EmbeddedSSDMobileNetV1FeatureExtractor,
    SSDMobileNetV1PpnFeatureExtractor,
)
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.slim_conv import AvgPool2dSlim, FixedPadding, MaxPool2dSlim
from objdet.models.necks.fpn import nearest_upsample_2x
from objdet.models.necks.slim_fpn import SlimFpnTopDown

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / ".." / "shared" / "data" / "odapi" / "configs" / "tf1_samples"
HYPER = ConvHyperparams(weight_decay=0.00004)


def _params(**overrides: object) -> FeatureExtractorParams:
    values: dict[str, object] = {"depth_multiplier": 0.25, "min_depth": 8, "hyperparams": HYPER,
                                 "override_base_hyperparams": True}
    values.update(overrides)
    return FeatureExtractorParams(**values)  # type: ignore[arg-type]


def _shapes(extractor: nn.Module, size: int) -> list[tuple[int, ...]]:
    with torch.no_grad():
        maps = extractor.eval()(torch.rand(1, 3, size, size))
    assert [m.shape[1] for m in maps] == extractor.out_channels
    return [tuple(m.shape[1:]) for m in maps]


@pytest.mark.parametrize(("use_depthwise", "top_channels"), [(False, 256), (True, 64)])
def test_mobilenet_v1_fpn_maps(use_depthwise: bool, top_channels: int) -> None:
    params = _params(fpn=FpnParams(min_level=3, max_level=7, additional_layer_depth=128),
                     use_depthwise=use_depthwise)
    extractor = SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v1_fpn"](params)
    assert isinstance(extractor, SSDMobileNetFpnSlimFeatureExtractor)
    # FPN over Conv2d_5/11/13 (levels 3..5) + two bottom-up convs; depth 128 * 0.25
    assert _shapes(extractor, 64) == [(32, 8, 8), (32, 4, 4), (32, 2, 2), (32, 1, 1), (32, 1, 1)]
    # FPNLite's conv_defs: Conv2d_13_pointwise has 256 (not 1024) base filters
    assert extractor.fpn.in_channels[-1] == top_channels


def test_mobilenet_v2_fpnlite_maps_at_depth_multiplier_075() -> None:
    params = _params(depth_multiplier=0.75, min_depth=16, use_depthwise=True,
                     fpn=FpnParams(min_level=3, max_level=7, additional_layer_depth=128))
    extractor = SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v2_fpn"](params)
    assert isinstance(extractor, SSDMobileNetFpnSlimFeatureExtractor)
    # layer_7 (24 * .75 -> 24), layer_14 (96 * .75 = 72), layer_19 (256 * .75 = 192)
    assert extractor.fpn.in_channels == [24, 72, 192]
    assert _shapes(extractor, 96) == [(96, 12, 12), (96, 6, 6), (96, 3, 3), (96, 2, 2),
                                      (96, 1, 1)]


def test_mobilenet_v1_ppn_pools_the_stride_16_tap() -> None:
    extractor = SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v1_ppn"](_params())
    assert isinstance(extractor, SSDMobileNetV1PpnFeatureExtractor)
    # Conv2d_11_pointwise: 512 * 0.25 channels at stride 16; 'SAME' pools round up
    assert _shapes(extractor, 80) == [(128, 5, 5), (128, 3, 3), (128, 2, 2), (128, 1, 1),
                                      (128, 1, 1), (128, 1, 1)]
    with pytest.raises(ValueError, match="num_layers"):
        SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v1_ppn"](_params(num_layers=4))


def test_embedded_mobilenet_v1_maps_and_image_size() -> None:
    params = _params(depth_multiplier=0.125, min_depth=16, override_base_hyperparams=False)
    extractor = SSD_FEATURE_EXTRACTORS["embedded_ssd_mobilenet_v1"](params)
    assert isinstance(extractor, EmbeddedSSDMobileNetV1FeatureExtractor)
    # depths max(int(d / 8), 16): 64, 128 (base); 64, 32, 32 (extra, the last a 2x2 conv)
    assert _shapes(extractor, 256) == [(64, 16, 16), (128, 8, 8), (64, 4, 4), (32, 2, 2),
                                       (32, 1, 1)]
    with pytest.raises(ValueError, match="256x256"):
        extractor(torch.rand(1, 3, 128, 128))
    # without the override the base keeps slim's undecayed depthwise kernels and unscaled norm
    base_norms = [m for m in extractor.base.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(norm.weight.requires_grad for norm in base_norms)
    depthwise_decays = {group["weight_decay"] for group in parameter_groups(extractor.base)
                        for p in group["params"] if p.dim() == 4 and p.shape[1] == 1}
    assert depthwise_decays == {0.0}


def test_inception_v2_maps() -> None:
    extractor = SSD_FEATURE_EXTRACTORS["ssd_inception_v2"](_params(min_depth=16))
    assert isinstance(extractor, SSDInceptionFeatureExtractor)
    # Mixed_4c: (192 + 128 + 128 + 128) / 4; Mixed_5c: (352 + 320 + 224 + 128) / 4
    assert _shapes(extractor, 64) == [(144, 4, 4), (256, 2, 2), (128, 1, 1), (64, 1, 1),
                                      (64, 1, 1), (32, 1, 1)]
    truncated = SSD_FEATURE_EXTRACTORS["ssd_inception_v2"](_params(min_depth=16, num_layers=3))
    assert truncated.out_channels == [144, 256, 128]


def test_inception_v3_maps_and_valid_stem() -> None:
    extractor = SSD_FEATURE_EXTRACTORS["ssd_inception_v3"](_params(min_depth=16))
    # 75 -> 37 -> 35 -> 35 -> 17 -> 17 -> 15 -> 7 ('VALID' stem), Mixed_6a 3, Mixed_7a 1
    assert _shapes(extractor, 75) == [(72, 7, 7), (192, 3, 3), (512, 1, 1), (128, 1, 1),
                                      (64, 1, 1), (32, 1, 1)]


def test_inception_needs_the_base_hyperparams_override() -> None:
    for name in ("ssd_inception_v2", "ssd_inception_v3"):
        with pytest.raises(ValueError, match="override_base_feature_extractor_hyperparams"):
            SSD_FEATURE_EXTRACTORS[name](_params(override_base_hyperparams=False))


def test_slim_fpn_upsamples_the_unsmoothed_sum() -> None:
    torch.manual_seed(0)
    fpn = SlimFpnTopDown(in_channels=[4, 6, 8], depth=5, hyperparams=HYPER).eval()
    maps = [torch.rand(1, 4, 8, 8), torch.rand(1, 6, 4, 4), torch.rand(1, 8, 2, 2)]
    with torch.no_grad():
        outputs = fpn(maps)
        top = fpn.projections[2](maps[2])
        middle = nearest_upsample_2x(top) + fpn.projections[1](maps[1])
        fine = nearest_upsample_2x(middle) + fpn.projections[0](maps[0])  # not smoothed middle
        expected = [fpn.smoothing[0](fine), fpn.smoothing[1](middle), top]
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference)


def test_use_explicit_padding_reaches_the_mobilenet_base() -> None:
    same = SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v1_ppn"](_params())
    explicit = SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v1_ppn"](_params(padding="explicit"))
    explicit.load_state_dict(same.state_dict())
    stem_same = same.base.network.layers["Conv2d_0"][0]
    stem_explicit = explicit.base.network.layers["Conv2d_0"][0]
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        # TF 'SAME' pads a 3x3 stride-2 conv of an even size 0 before, 1 after;
        # fixed_padding 1 and 1
        same_reference = F.conv2d(F.pad(images, (0, 1, 0, 1)), stem_same.weight, stride=2)
        explicit_reference = F.conv2d(F.pad(images, (1, 1, 1, 1)), stem_same.weight, stride=2)
        torch.testing.assert_close(stem_same(images), same_reference)
        torch.testing.assert_close(stem_explicit(images), explicit_reference)


def test_slim_pools_and_fixed_padding_follow_tf() -> None:
    features = torch.arange(9.0).reshape(1, 1, 3, 3)
    # 'SAME' 3x3 stride 1 mean: the corner averages its 4 real neighbours only
    pooled = AvgPool2dSlim(3, 1, "same")(features)
    assert pooled[0, 0, 0, 0] == pytest.approx((0 + 1 + 3 + 4) / 4)
    assert pooled[0, 0, 1, 1] == pytest.approx(4.0)
    # 2x2 stride 2 'SAME' max pool of 3x3: pads one -inf row/column after
    assert MaxPool2dSlim(2, 2, "same")(-features).flatten().tolist() == [0.0, -2.0, -6.0, -8.0]
    # fixed_padding of an even kernel: (k - 1) // 2 = 0 before, 1 after
    assert FixedPadding(2)(features).shape == (1, 1, 4, 4)
    assert FixedPadding(2)(features)[0, 0, 0].tolist() == [0.0, 1.0, 2.0, 0.0]


def test_slim_factories_refuse_keras_only_force_use_bias() -> None:
    params = _params(hyperparams=replace(HYPER, force_use_bias=True))
    with pytest.raises(ValueError, match="force_use_bias"):
        SSD_FEATURE_EXTRACTORS["ssd_mobilenet_v1_ppn"](params)


@pytest.mark.parametrize(
    ("name", "extractor_class"),
    [
        ("ssd_mobilenet_v1_fpn_shared_box_predictor_640x640_coco14_sync",
         SSDMobileNetFpnSlimFeatureExtractor),
        ("ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync",
         SSDMobileNetV1PpnFeatureExtractor),
        ("embedded_ssd_mobilenet_v1_coco", EmbeddedSSDMobileNetV1FeatureExtractor),
        ("ssd_inception_v2_coco", SSDInceptionFeatureExtractor),
    ],
)
def test_the_builder_picks_the_slim_extractor_from_the_config(
        name: str, extractor_class: type) -> None:
    pipeline = cfg.load(SAMPLES / f"{name}.config")
    pipeline.model.ssd.feature_extractor.depth_multiplier = 0.125  # keep the test fast
    model = build_model(pipeline.model)
    assert isinstance(model.feature_extractor, extractor_class)


def test_the_builder_reports_a_refused_setting_as_a_config_error() -> None:
    pipeline = cfg.load(SAMPLES / "ssd_inception_v3_pets.config")
    pipeline.model.ssd.feature_extractor.override_base_feature_extractor_hyperparams = False
    with pytest.raises(ConfigError, match="ssd_inception_v3.*override_base"):
        build_model(pipeline.model)
