"""Two TF1 (slim) SSD MobileNet v1 extractors of the OD API:

- ``ssd_mobilenet_v1_ppn`` (``ssd_mobilenet_v1_ppn_feature_extractor.py``): the pooling
  pyramid (``feature_map_generators.pooling_pyramid_feature_maps`` with
  ``base_feature_map_depth=0``, ``num_layers=6``): ``Conv2d_11_pointwise`` (stride 16), then
  five 2x2 stride-2 'SAME' max pools of it, each map as deep as the tap.
- ``embedded_ssd_mobilenet_v1`` (``embedded_ssd_mobilenet_v1_feature_extractor.py``):
  ``Conv2d_11_pointwise``, ``Conv2d_13_pointwise`` and three
  ``multi_resolution_feature_maps`` layers of depth 512, 256, 256 with kernels 3, 3, 2; for
  256x256 inputs only. Its base keeps slim's default of undecayed depthwise kernels.

Both have a fixed number of maps: ``num_layers`` other than the default 6 is refused (the OD
API's classes do not take it).
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.mobilenet_v1 import MobileNetV1
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.slim_bases import (
    MobileNetV1Endpoints,
    check_slim_hyperparams,
    mobilenet_v1_hyperparams,
    preprocess_minus_one_to_one,
    slim_scope,
)
from objdet.models.layers.slim_conv import MaxPool2dSlim
from objdet.models.necks.multi_resolution import MultiResolutionExtraLayers

_PPN_NUM_LAYERS = 6
EMBEDDED_IMAGE_SIZE = 256


def _check(params: FeatureExtractorParams) -> None:
    check_slim_hyperparams(params)
    if params.fpn is not None or params.bifpn is not None:
        raise ValueError("this extractor has no feature pyramid network; remove fpn/bifpn")
    if params.num_layers != _PPN_NUM_LAYERS:
        raise ValueError(f"num_layers is fixed for this extractor; got {params.num_layers}")


def _mobilenet_v1(params: FeatureExtractorParams, names: tuple[str, ...], *,
                  regularize_depthwise: bool) -> MobileNetV1Endpoints:
    network = MobileNetV1(
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=mobilenet_v1_hyperparams(params, regularize_depthwise=regularize_depthwise),
        padding=params.padding)
    return MobileNetV1Endpoints(network=network, names=names)


class SSDMobileNetV1PpnFeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, H, W]) -> list`` of 6 maps: the stride-16 tap and its
    max pools (strides 32 .. 512, ``ceil`` sizes), all ``out_channels[0]`` deep."""

    def __init__(self, *, base: MobileNetV1Endpoints, num_layers: int = _PPN_NUM_LAYERS) -> None:
        super().__init__()
        self.base = base
        self.pools = nn.ModuleList(MaxPool2dSlim(2, 2, "same") for _ in range(num_layers - 1))
        self.out_channels: list[int] = [base.out_channels[0]] * num_layers

    preprocess = staticmethod(preprocess_minus_one_to_one)

    def forward(self, images: Tensor) -> list[Tensor]:
        maps = list(self.base(images))
        for pool in self.pools:
            maps.append(pool(maps[-1]))
        return maps


class EmbeddedSSDMobileNetV1FeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, 256, 256]) -> list`` of 5 maps, 16x16 to 1x1."""

    def __init__(self, *, base: MobileNetV1Endpoints, extra_layers: MultiResolutionExtraLayers
                 ) -> None:
        super().__init__()
        self.base = base
        self.extra_layers = extra_layers
        self.out_channels: list[int] = list(base.out_channels) + extra_layers.out_channels

    preprocess = staticmethod(preprocess_minus_one_to_one)

    def forward(self, images: Tensor) -> list[Tensor]:
        height, width = images.shape[-2:]
        if (height, width) != (EMBEDDED_IMAGE_SIZE, EMBEDDED_IMAGE_SIZE):
            raise ValueError(f"embedded_ssd_mobilenet_v1 takes {EMBEDDED_IMAGE_SIZE}x"
                             f"{EMBEDDED_IMAGE_SIZE} images, got {height}x{width}")
        maps = list(self.base(images))
        maps.extend(self.extra_layers(maps[-1]))
        return maps


def build_ssd_mobilenet_v1_ppn(params: FeatureExtractorParams
                               ) -> SSDMobileNetV1PpnFeatureExtractor:
    """``ssd_mobilenet_v1_ppn``: ``Conv2d_11_pointwise`` and five max-pooled maps."""
    _check(params)
    # use_depthwise: the OD API stores it but the pooling pyramid has no conv to apply it to
    base = _mobilenet_v1(params, ("Conv2d_11_pointwise",), regularize_depthwise=True)
    return SSDMobileNetV1PpnFeatureExtractor(base=base)


def build_embedded_ssd_mobilenet_v1(params: FeatureExtractorParams
                                    ) -> EmbeddedSSDMobileNetV1FeatureExtractor:
    """``embedded_ssd_mobilenet_v1``: two MobileNet v1 taps and three extra layers."""
    _check(params)
    base = _mobilenet_v1(params, ("Conv2d_11_pointwise", "Conv2d_13_pointwise"),
                         regularize_depthwise=False)
    extra = MultiResolutionExtraLayers(
        in_channels=base.out_channels[-1], layer_depths=[512, 256, 256], kernel_sizes=[3, 3, 2],
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=slim_scope(params.hyperparams), use_depthwise=params.use_depthwise,
        padding=params.padding)
    return EmbeddedSSDMobileNetV1FeatureExtractor(base=base, extra_layers=extra)
