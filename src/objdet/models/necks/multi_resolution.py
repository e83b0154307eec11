"""The new layers of the OD API's TF1 ``feature_map_generators.multi_resolution_feature_maps``.

After the maps taken from the base (``from_layer``), each entry with an empty ``from_layer``
appends a map: with ``insert_1x1_conv`` a 1x1 conv to ``depth(layer_depth // 2)``, then a
``k x k`` stride-2 conv to ``depth(layer_depth)`` (``k`` from ``conv_kernel_size``, default 3)
-- or, with ``use_depthwise``, a ``k x k`` stride-2 depthwise conv and a 1x1 conv -- each with
the scope's norm and activation. ``depth(d) = max(int(d * depth_multiplier), min_depth)``.
The strided conv pads TF 'SAME', or ``fixed_padding`` + 'VALID' with ``use_explicit_padding``.
Unlike :class:`objdet.models.necks.ssd_extra_layers.SSDExtraLayers` the depths and kernel
sizes are arguments (embedded SSD: 512, 256, 256 with kernels 3, 3, 2; SSD Inception v3:
512, 256, 128 after three base maps).
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.mobilenet_v1 import scaled_depth
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.slim_conv import SlimPadding, slim_conv_unit, slim_separable_unit


class MultiResolutionExtraLayers(nn.Module):
    """``forward(last_base_map [B, C, H, W]) -> list`` of ``len(layer_depths)`` maps, each
    about half the size of the one before (``ceil`` with 'SAME')."""

    def __init__(self, *, in_channels: int, layer_depths: list[int], kernel_sizes: list[int],
                 depth_multiplier: float, min_depth: int, hyperparams: ConvHyperparams,
                 use_depthwise: bool = False, padding: SlimPadding = "same") -> None:
        super().__init__()
        if len(layer_depths) != len(kernel_sizes):
            raise ValueError(f"{len(layer_depths)} layer depths but {len(kernel_sizes)} "
                             "kernel sizes")
        # slim's weights_regularizer covers depthwise kernels as well
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = True
        self.blocks = nn.ModuleList()
        self.out_channels: list[int] = []
        for layer_depth, kernel in zip(layer_depths, kernel_sizes):
            middle = scaled_depth(layer_depth // 2, depth_multiplier, min_depth)
            out = scaled_depth(layer_depth, depth_multiplier, min_depth)
            layers = [slim_conv_unit(in_channels, middle, 1, hyperparams=hyperparams)]
            if use_depthwise:
                layers.append(slim_separable_unit(middle, None, kernel, stride=2,
                                                  hyperparams=hyperparams, padding=padding))
                layers.append(slim_conv_unit(middle, out, 1, hyperparams=hyperparams))
            else:
                layers.append(slim_conv_unit(middle, out, kernel, stride=2,
                                             hyperparams=hyperparams, padding=padding))
            self.blocks.append(nn.Sequential(*layers))
            self.out_channels.append(out)
            in_channels = out

    def forward(self, features: Tensor) -> list[Tensor]:
        maps = []
        for block in self.blocks:
            features = block(features)
            maps.append(features)
        return maps


__all__ = ["MultiResolutionExtraLayers"]
