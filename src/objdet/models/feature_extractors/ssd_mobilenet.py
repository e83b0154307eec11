"""SSD MobileNet feature extractors (v1, v2, v3 large, v3 small) and their registry.

Each extractor taps its base at stride 16 and stride 32 (the OD API's ``from_layer``
endpoints) and appends the OD API's extra layers (:mod:`objdet.models.necks.ssd_extra_layers`). MobileNet v2/v3 come from torchvision (``weights=None``); their width
follows torchvision's ``width_mult`` rounding (multiples of 8), not slim's ``min_depth``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeAlias, cast

from torch import Tensor, nn
from torchvision.models import mobilenetv2, mobilenetv3

from objdet.models.backbones.mobilenet_v1 import MobileNetV1
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.ssd_feature_extractor import SSDFeatureExtractor
from objdet.models.hyperparams import (
    SlimBatchNorm2d,
    apply_to_base,
)
from objdet.models.necks.ssd_extra_layers import SSDExtraLayers

# torchvision's MobileNets are trained with L2 4e-5 in slim; keep that as their decay.
_BASE_WEIGHT_DECAY = 0.00004


class MobileNetV1Taps(nn.Module):
    """MobileNet v1 returning ``[Conv2d_11_pointwise (stride 16), Conv2d_13_pointwise (32)]``."""

    def __init__(self, *, network: MobileNetV1) -> None:
        super().__init__()
        self.network = network
        self.weight_decay: float = network.weight_decay
        self.regularize_depthwise: bool = network.regularize_depthwise
        self.out_channels: list[int] = [
            network.endpoint_channels("Conv2d_11_pointwise"),
            network.endpoint_channels("Conv2d_13_pointwise"),
        ]

    def forward(self, images: Tensor) -> list[Tensor]:
        endpoints = self.network(images)
        return [endpoints["Conv2d_11_pointwise"], endpoints["Conv2d_13_pointwise"]]


class TorchvisionMobileNetTaps(nn.Module):
    """A torchvision MobileNet ``features`` stack tapped like slim's ``layer_N/expansion_output``.

    ``tap_index`` is the stride-2 inverted-residual block whose expansion output (stride 16)
    is the first feature map; the last layer of ``features`` (stride 32) is the second.
    """

    def __init__(self, *, features: nn.Sequential, tap_index: int, weight_decay: float) -> None:
        super().__init__()
        tap_block = features[tap_index]
        # torchvision's MobileNetV2 blocks hold ``conv``, MobileNetV3's ``block``
        body = cast(nn.Sequential, getattr(tap_block, "conv", None) or tap_block.block)
        if getattr(tap_block, "use_res_connect", True):
            raise ValueError(f"block {tap_index} has a residual; it cannot be split")
        self.before_tap = features[:tap_index]
        self.expansion = body[0]
        self.after_tap = nn.Sequential(*body[1:], *features[tap_index + 1 :])
        self.weight_decay: float = weight_decay
        self.regularize_depthwise: bool = True  # slim's MobileNet scopes regularize depthwise
        self.out_channels: list[int] = [
            _last_conv(self.expansion).out_channels,
            _last_conv(features).out_channels,
        ]

    def forward(self, images: Tensor) -> list[Tensor]:
        expanded = self.expansion(self.before_tap(images))
        return [expanded, self.after_tap(expanded)]


def _last_conv(module: nn.Module) -> nn.Conv2d:
    convs = [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    return convs[-1]


BaseTaps: TypeAlias = MobileNetV1Taps | TorchvisionMobileNetTaps


def _assemble(base: BaseTaps, params: FeatureExtractorParams) -> SSDFeatureExtractor:
    if params.fpn is not None or params.bifpn is not None:
        raise ValueError("this extractor has no feature pyramid; remove fpn/bifpn or use its "
                         "_fpn_keras / _bifpn_keras type")
    if params.override_base_hyperparams:
        apply_to_base(base, params.hyperparams)
        base.weight_decay = params.hyperparams.weight_decay
        base.regularize_depthwise = params.hyperparams.regularize_depthwise
    extra = SSDExtraLayers(in_channels=base.out_channels[-1], params=params)
    return SSDFeatureExtractor(base=base, extra_layers=extra, num_layers=params.num_layers)


def build_ssd_mobilenet_v1(params: FeatureExtractorParams) -> SSDFeatureExtractor:
    """SSD MobileNet v1: taps ``Conv2d_11_pointwise`` and ``Conv2d_13_pointwise``."""
    network = MobileNetV1(depth_multiplier=params.depth_multiplier, min_depth=params.min_depth)
    return _assemble(MobileNetV1Taps(network=network), params)


def _torchvision_norm() -> Callable[..., nn.Module]:
    """Batch norm of the torchvision bases: epsilon 0.001 and momentum 0.03 (decay 0.97), as
    torchvision's SSDlite. (The OD API keeps slim's decay 0.997 for a pretrained base; from
    scratch, such slow averages still hold their initial statistics after thousands of steps
    and the eval-mode network collapses to one output for every image — benchmarks/RESULTS.md,
    "main job recipe search, part 2". ``override_base_feature_extractor_hyperparams`` sets
    the config's decay instead.)"""
    return partial(SlimBatchNorm2d, eps=0.001, momentum=0.03)


def build_ssd_mobilenet_v2(params: FeatureExtractorParams) -> SSDFeatureExtractor:
    """SSD MobileNet v2: taps ``layer_15/expansion_output`` (576 ch) and ``layer_19``."""
    network = mobilenetv2.MobileNetV2(
        width_mult=params.depth_multiplier, norm_layer=_torchvision_norm()
    )
    base = TorchvisionMobileNetTaps(
        features=network.features, tap_index=14, weight_decay=_BASE_WEIGHT_DECAY
    )
    return _assemble(base, params)


def _build_ssd_mobilenet_v3(
    arch: str, tap_index: int, params: FeatureExtractorParams
) -> SSDFeatureExtractor:
    setting, last_channel = mobilenetv3._mobilenet_v3_conf(arch, width_mult=params.depth_multiplier)
    network = mobilenetv3.MobileNetV3(setting, last_channel, norm_layer=_torchvision_norm())
    base = TorchvisionMobileNetTaps(
        features=network.features, tap_index=tap_index, weight_decay=_BASE_WEIGHT_DECAY
    )
    return _assemble(base, params)


def build_ssd_mobilenet_v3_large(params: FeatureExtractorParams) -> SSDFeatureExtractor:
    """SSD MobileNet v3 large: taps ``layer_14/expansion_output`` (672 ch) and ``layer_17``."""
    return _build_ssd_mobilenet_v3("mobilenet_v3_large", 13, params)


def build_ssd_mobilenet_v3_small(params: FeatureExtractorParams) -> SSDFeatureExtractor:
    """SSD MobileNet v3 small: taps ``layer_10/expansion_output`` (288 ch) and ``layer_13``."""
    return _build_ssd_mobilenet_v3("mobilenet_v3_small", 9, params)
