"""The OD API's TF1 (slim) SSD MobileNet FPN extractors: ``ssd_mobilenet_v1_fpn`` and
``ssd_mobilenet_v2_fpn`` (FPNLite with ``use_depthwise``), as
``ssd_mobilenet_v1_fpn_feature_extractor.py`` / ``ssd_mobilenet_v2_fpn_feature_extractor.py``.

The base is tapped at levels 2..5: v1 ``Conv2d_3/5/11/13_pointwise``, v2 ``layer_4/7/14/19``.
``fpn_top_down_feature_maps`` (:class:`objdet.models.necks.slim_fpn.SlimFpnTopDown`) runs over
levels ``min_level..min(max_level, 5)``; each level above 5 is a ``bottom_up_Conv2d_N``: a
3x3 stride-2 conv (separable with ``use_depthwise``) on the previous map, with the config's
norm and activation. Depths are ``max(int(additional_layer_depth * depth_multiplier),
min_depth)``. With ``use_depthwise`` the bases get modified ``conv_defs``: v1's last two
separable blocks have 512 and 256 filters, v2's last conv 256.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from objdet.models.backbones.mobilenet_v1 import MobileNetV1
from objdet.models.backbones.slim_mobilenet_v2 import LAST_CONV_DEPTH, SlimMobileNetV2
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.slim_bases import (
    MobileNetV1Endpoints,
    check_slim_hyperparams,
    mobilenet_v1_hyperparams,
    mobilenet_v2_hyperparams,
    preprocess_minus_one_to_one,
    slim_scope,
)
from objdet.models.necks.slim_fpn import SlimFpnTopDown, slim_smoothing_unit

_BASE_MAX_LEVEL = 5  # the MobileNets' coarsest tap, stride 32
# MOBILENETV1_CONV_DEFS with the last two DepthSepConvs at 512 and 256 (FPNLite)
_V1_DEPTHWISE_SEPARABLE_DEPTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512,
                                  512, 256)
_FPNLITE_V2_LAST_CONV_DEPTH = 256

SlimMobileNet = MobileNetV1Endpoints | SlimMobileNetV2


class SSDMobileNetFpnSlimFeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, H, W]) -> list`` of ``max_level - min_level + 1`` maps
    (finest first, stride ``2**level``), each ``out_channels[i]`` deep."""

    def __init__(self, *, base: SlimMobileNet, fpn: SlimFpnTopDown,
                 coarse_layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.base = base
        self.fpn = fpn
        self.coarse_layers = nn.ModuleList(coarse_layers)
        self.num_fpn_levels = len(fpn.in_channels)
        # the bottom-up convs are in the FPN's conv_hyperparams scope (base and FPN carry
        # their own decay; objdet.models.regularization takes the nearest)
        self.weight_decay = fpn.weight_decay
        self.regularize_depthwise = fpn.regularize_depthwise
        self.out_channels: list[int] = list(fpn.out_channels) + [fpn.depth] * len(coarse_layers)

    preprocess = staticmethod(preprocess_minus_one_to_one)

    def forward(self, images: Tensor) -> list[Tensor]:
        taps = self.base(images)
        maps = self.fpn(taps[len(taps) - self.num_fpn_levels:])
        last = maps[-1]
        for layer in self.coarse_layers:
            last = layer(last)
            maps.append(last)
        return maps


def _check(params: FeatureExtractorParams) -> None:
    check_slim_hyperparams(params)
    if params.fpn is None:
        raise ValueError("this extractor needs an fpn { } block")
    if not 2 <= params.fpn.min_level <= _BASE_MAX_LEVEL:
        raise ValueError(f"fpn.min_level must be in 2..{_BASE_MAX_LEVEL} (MobileNet taps), "
                         f"got {params.fpn.min_level}")
    if params.bifpn is not None:
        raise ValueError("bifpn is not supported by this extractor")


def _assemble(base: SlimMobileNet, params: FeatureExtractorParams
              ) -> SSDMobileNetFpnSlimFeatureExtractor:
    assert params.fpn is not None
    base_max_level = min(params.fpn.max_level, _BASE_MAX_LEVEL)
    num_levels = base_max_level + 1 - params.fpn.min_level
    depth = max(int(params.fpn.additional_layer_depth * params.depth_multiplier),
                params.min_depth)
    hyperparams = slim_scope(params.hyperparams)
    fpn = SlimFpnTopDown(in_channels=base.out_channels[len(base.out_channels) - num_levels:],
                         depth=depth, hyperparams=hyperparams,
                         use_depthwise=params.use_depthwise, padding=params.padding)
    coarse = [slim_smoothing_unit(depth, hyperparams=hyperparams, stride=2,
                                  use_depthwise=params.use_depthwise, padding=params.padding)
              for _ in range(base_max_level + 1, params.fpn.max_level + 1)]
    return SSDMobileNetFpnSlimFeatureExtractor(base=base, fpn=fpn, coarse_layers=coarse)


def build_ssd_mobilenet_v1_fpn(params: FeatureExtractorParams
                               ) -> SSDMobileNetFpnSlimFeatureExtractor:
    """``ssd_mobilenet_v1_fpn``: taps ``Conv2d_3/5/11/13_pointwise``."""
    _check(params)
    network = MobileNetV1(
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=mobilenet_v1_hyperparams(params, regularize_depthwise=True),
        padding=params.padding,
        separable_depths=_V1_DEPTHWISE_SEPARABLE_DEPTHS if params.use_depthwise else None)
    names = ("Conv2d_3_pointwise", "Conv2d_5_pointwise", "Conv2d_11_pointwise",
             "Conv2d_13_pointwise")
    return _assemble(MobileNetV1Endpoints(network=network, names=names), params)


def build_ssd_mobilenet_v2_fpn(params: FeatureExtractorParams
                               ) -> SSDMobileNetFpnSlimFeatureExtractor:
    """``ssd_mobilenet_v2_fpn`` (FPNLite with ``use_depthwise``): taps ``layer_4``,
    ``layer_7``, ``layer_14`` and ``layer_19``."""
    _check(params)
    base = SlimMobileNetV2(
        endpoints=("layer_4", "layer_7", "layer_14", "layer_19"),
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=mobilenet_v2_hyperparams(params),
        regularize_depthwise=params.override_base_hyperparams, padding=params.padding,
        last_conv_depth=_FPNLITE_V2_LAST_CONV_DEPTH if params.use_depthwise else LAST_CONV_DEPTH)
    return _assemble(base, params)
