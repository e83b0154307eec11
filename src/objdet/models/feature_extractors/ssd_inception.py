"""The OD API's TF1 (slim) ``ssd_inception_v2`` and ``ssd_inception_v3`` extractors
(``ssd_inception_v2_feature_extractor.py`` / ``ssd_inception_v3_feature_extractor.py``).

The whole network is built under the config's ``conv_hyperparams`` scope, so the OD API
requires ``override_base_feature_extractor_hyperparams: true``. Inception v2 gives
``Mixed_4c`` (stride 16) and ``Mixed_5c`` (32), then ``multi_resolution_feature_maps`` layers
of depth 512, 256, 256, 128; Inception v3 gives ``Mixed_5d`` (about stride 8), ``Mixed_6e``
(16) and ``Mixed_7c`` (32), then layers of depth 512, 256, 128. ``num_layers`` keeps the
first maps of that list. ``use_explicit_padding`` and ``use_depthwise`` act on the extra
layers only (the slim Inception bases take neither).
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.slim_inception import (
    INCEPTION_V2,
    INCEPTION_V3,
    SlimInception,
    endpoints_until,
)
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.slim_bases import (
    check_slim_hyperparams,
    preprocess_minus_one_to_one,
    slim_scope,
)
from objdet.models.necks.multi_resolution import MultiResolutionExtraLayers


class SSDInceptionFeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, H, W]) -> list`` of ``num_layers`` maps: the base taps
    ``from_layers`` then the extra layers, finest first."""

    def __init__(self, *, base: SlimInception, from_layers: tuple[str, ...],
                 extra_layers: MultiResolutionExtraLayers) -> None:
        super().__init__()
        self.base = base
        self.from_layers = from_layers
        self.extra_layers = extra_layers
        self.out_channels: list[int] = ([base.channels[name] for name in from_layers]
                                        + extra_layers.out_channels)

    preprocess = staticmethod(preprocess_minus_one_to_one)

    def forward(self, images: Tensor) -> list[Tensor]:
        endpoints = self.base(images)
        maps = [endpoints[name] for name in self.from_layers]
        if self.extra_layers.blocks:
            maps.extend(self.extra_layers(maps[-1]))
        return maps


def _build(params: FeatureExtractorParams, network: str, from_layers: tuple[str, ...],
           extra_depths: tuple[int, ...]) -> SSDInceptionFeatureExtractor:
    check_slim_hyperparams(params)
    if not params.override_base_hyperparams:
        raise ValueError(f"ssd_{network} builds its base under conv_hyperparams; set "
                         "override_base_feature_extractor_hyperparams: true (as the OD API)")
    if params.fpn is not None or params.bifpn is not None:
        raise ValueError("this extractor has no feature pyramid network; remove fpn/bifpn")
    taps = from_layers[: params.num_layers]
    depths = list(extra_depths[: max(params.num_layers - len(from_layers), 0)])
    hyperparams = slim_scope(params.hyperparams)
    spec = INCEPTION_V2 if network == "inception_v2" else INCEPTION_V3
    base = SlimInception(endpoints=endpoints_until(spec, from_layers[-1]),
                         depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
                         hyperparams=hyperparams)
    extra = MultiResolutionExtraLayers(
        in_channels=base.channels[taps[-1]], layer_depths=depths, kernel_sizes=[3] * len(depths),
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=hyperparams, use_depthwise=params.use_depthwise, padding=params.padding)
    return SSDInceptionFeatureExtractor(base=base, from_layers=taps, extra_layers=extra)


def build_ssd_inception_v2(params: FeatureExtractorParams) -> SSDInceptionFeatureExtractor:
    """``ssd_inception_v2``: ``Mixed_4c``, ``Mixed_5c`` and 4 extra layers."""
    return _build(params, "inception_v2", ("Mixed_4c", "Mixed_5c"), (512, 256, 256, 128))


def build_ssd_inception_v3(params: FeatureExtractorParams) -> SSDInceptionFeatureExtractor:
    """``ssd_inception_v3``: ``Mixed_5d``, ``Mixed_6e``, ``Mixed_7c`` and 3 extra layers."""
    return _build(params, "inception_v3", ("Mixed_5d", "Mixed_6e", "Mixed_7c"), (512, 256, 128))
