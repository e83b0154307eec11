"""SSD MobileNet feature extractors (v1, v2, v3 large, v3 small) and their registry.

Each extractor taps its base at stride 16 and stride 32 (the OD API's ``from_layer``
endpoints) and appends the OD API's extra layers (``layer_depth [-1, -1, 512, 256, 256,
128]``): a 1x1 conv to half depth, then a 3x3 stride-2 conv (depthwise + 1x1 with
``use_depthwise``). MobileNet v2/v3 come from torchvision (``weights=None``); their width
follows torchvision's ``width_mult`` rounding (multiples of 8), not slim's ``min_depth``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias, cast

from torch import Tensor, nn
from torchvision.models import mobilenetv2, mobilenetv3

from objdet.models.backbones.mobilenet_v1 import MobileNetV1, scaled_depth
from objdet.models.hyperparams import (
    ConvHyperparams,
    SlimBatchNorm2d,
    apply_to_base,
    make_conv_block,
)

EXTRA_LAYER_DEPTHS = (-1, -1, 512, 256, 256, 128)
# torchvision's MobileNets are trained with L2 4e-5 in slim; keep that as their decay.
_BASE_WEIGHT_DECAY = 0.00004


@dataclass(frozen=True)
class FeatureExtractorParams:
    """The ``feature_extractor`` settings every SSD MobileNet extractor understands."""

    depth_multiplier: float
    min_depth: int
    hyperparams: ConvHyperparams
    num_layers: int = 6
    use_depthwise: bool = False
    override_base_hyperparams: bool = False


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


class SSDExtraLayers(nn.Module):
    """The OD API's ``multi_resolution_feature_maps`` layers after the two base taps.

    ``forward(last_base_map [B, C, H, W]) -> list`` of ``num_layers - 2`` maps, each
    half the size of the previous one (3x3 convs with stride 2, ``SAME``-style padding).
    """

    def __init__(self, *, in_channels: int, params: FeatureExtractorParams) -> None:
        super().__init__()
        self.weight_decay = params.hyperparams.weight_decay
        self.regularize_depthwise = params.hyperparams.regularize_depthwise
        self.blocks = nn.ModuleList()
        self.out_channels: list[int] = []
        for layer_depth in EXTRA_LAYER_DEPTHS[2 : params.num_layers]:
            middle = scaled_depth(layer_depth // 2, params.depth_multiplier, params.min_depth)
            out = scaled_depth(layer_depth, params.depth_multiplier, params.min_depth)
            hyper = params.hyperparams
            layers = [make_conv_block(in_channels, middle, 1, hyperparams=hyper)]
            if params.use_depthwise:
                layers.append(
                    make_conv_block(middle, middle, 3, stride=2, groups=middle, hyperparams=hyper)
                )
                layers.append(make_conv_block(middle, out, 1, hyperparams=hyper))
            else:
                layers.append(make_conv_block(middle, out, 3, stride=2, hyperparams=hyper))
            self.blocks.append(nn.Sequential(*layers))
            self.out_channels.append(out)
            in_channels = out

    def forward(self, features: Tensor) -> list[Tensor]:
        maps = []
        for block in self.blocks:
            features = block(features)
            maps.append(features)
        return maps


class SSDFeatureExtractor(nn.Module):
    """Base taps + extra layers. ``forward(preprocessed [B, 3, H, W]) -> list`` of maps.

    ``preprocess`` maps images in ``[0, 1]`` to the ``[-1, 1]`` range MobileNets expect.
    ``out_channels`` lists the channels of each returned map (at most 6 maps).
    """

    def __init__(self, *, base: BaseTaps, extra_layers: SSDExtraLayers, num_layers: int) -> None:
        super().__init__()
        if not 1 <= num_layers <= len(EXTRA_LAYER_DEPTHS):
            raise ValueError(f"num_layers must be in 1..6, got {num_layers}")
        self.base = base
        self.extra_layers = extra_layers
        self.num_layers = num_layers
        self.out_channels = (list(base.out_channels) + extra_layers.out_channels)[:num_layers]

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> [-1, 1] (the OD API's ``(2 / 255) * x - 1``)."""
        return images * 2.0 - 1.0

    def forward(self, images: Tensor) -> list[Tensor]:
        maps = list(self.base(images))
        maps.extend(self.extra_layers(maps[-1]))
        return maps[: self.num_layers]


def _assemble(base: BaseTaps, params: FeatureExtractorParams) -> SSDFeatureExtractor:
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


# The registry of SSD feature extractor types, as the OD API names them. The ``_keras``
# names are the OD API's TF2 variants of the same networks.
SSD_FEATURE_EXTRACTORS: dict[str, Callable[[FeatureExtractorParams], SSDFeatureExtractor]] = {
    "ssd_mobilenet_v1": build_ssd_mobilenet_v1,
    "ssd_mobilenet_v1_keras": build_ssd_mobilenet_v1,
    "ssd_mobilenet_v2": build_ssd_mobilenet_v2,
    "ssd_mobilenet_v2_keras": build_ssd_mobilenet_v2,
    "ssd_mobilenet_v3_large": build_ssd_mobilenet_v3_large,
    "ssd_mobilenet_v3_large_keras": build_ssd_mobilenet_v3_large,
    "ssd_mobilenet_v3_small": build_ssd_mobilenet_v3_small,
    "ssd_mobilenet_v3_small_keras": build_ssd_mobilenet_v3_small,
}
