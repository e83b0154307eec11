"""The OD API's SSD extra layers (``multi_resolution_feature_maps``).

After the backbone's two taps come ``num_layers - 2`` maps from ``layer_depth [-1, -1, 512,
256, 256, 128]``: each a 1x1 conv to half depth, then a 3x3 stride-2 conv (depthwise + 1x1
with ``use_depthwise``).
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.mobilenet_v1 import scaled_depth
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.hyperparams import make_conv_block

EXTRA_LAYER_DEPTHS = (-1, -1, 512, 256, 256, 128)


class SSDExtraLayers(nn.Module):
    """The OD API's ``multi_resolution_feature_maps`` layers after the two base taps.

    ``forward(last_base_map [B, C, H, W]) -> list`` of ``num_layers - 2`` maps, each
    half the size of the previous one (3x3 convs with stride 2, padded as ``params.padding``).
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
            pad = params.padding
            layers = [make_conv_block(in_channels, middle, 1, hyperparams=hyper)]
            if params.use_depthwise:
                layers.append(make_conv_block(middle, middle, 3, stride=2, groups=middle,
                                              hyperparams=hyper, padding=pad))
                layers.append(make_conv_block(middle, out, 1, hyperparams=hyper))
            else:
                layers.append(make_conv_block(middle, out, 3, stride=2, hyperparams=hyper,
                                              padding=pad))
            self.blocks.append(nn.Sequential(*layers))
            self.out_channels.append(out)
            in_channels = out

    def forward(self, features: Tensor) -> list[Tensor]:
        maps = []
        for block in self.blocks:
            features = block(features)
            maps.append(features)
        return maps
