"""The FPN top-down pathway as the OD API's TF1 ``feature_map_generators.fpn_top_down_feature_maps``.

From backbone maps ``C_1..C_n`` (finest first): ``T_n = proj_n(C_n)``, then coarsest to finest
``T_l = up2(T_{l+1}) + proj_l(C_l)`` and ``P_l = smooth_l(T_l)``; ``P_n = T_n``. ``proj`` is a
1x1 conv with bias (no norm, no activation), ``smooth`` a 3x3 conv (``slim.separable_conv2d``
with ``use_depthwise``) with the scope's norm and activation, ``up2`` nearest 2x upsampling.

This differs from the Keras ``KerasFpnTopDownFeatureMaps``
(:class:`objdet.models.necks.fpn.FpnTopDown`): there the next level upsamples the *smoothed*
map ``P_{l+1}``; here it upsamples the unsmoothed sum ``T_{l+1}``.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.hyperparams import ConvHyperparams, initialize_weight
from objdet.models.layers.slim_conv import SlimPadding, slim_conv_unit, slim_separable_unit
from objdet.models.necks.fpn import nearest_upsample_2x


def slim_smoothing_unit(channels: int, *, hyperparams: ConvHyperparams, use_depthwise: bool,
                        padding: SlimPadding, stride: int = 1) -> nn.Sequential:
    """A 3x3 ``conv_op`` of the slim FPN code: ``slim.conv2d``, or with ``use_depthwise``
    ``slim.separable_conv2d(depth_multiplier=1)``; the scope's norm and activation after."""
    if use_depthwise:
        return slim_separable_unit(channels, channels, 3, stride=stride,
                                   hyperparams=hyperparams, padding=padding)
    return slim_conv_unit(channels, channels, 3, stride=stride, hyperparams=hyperparams,
                          padding=padding)


class SlimFpnTopDown(nn.Module):
    """``forward(maps) -> maps``: ``len(in_channels)`` maps in (finest first, each half the
    size of the one before), as many out, each ``depth`` deep and the size of its input.

    The upsampled map is cropped to the lateral map's size: the OD API does so with
    ``use_explicit_padding`` and fails otherwise when a size is odd; cropping keeps every
    size that works there unchanged.
    """

    def __init__(self, *, in_channels: list[int], depth: int, hyperparams: ConvHyperparams,
                 use_depthwise: bool = False, padding: SlimPadding = "same") -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("an FPN needs at least one input map")
        # slim regularizes depthwise kernels too (its weights_regularizer covers both)
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = True
        self.in_channels = list(in_channels)
        self.depth = depth
        self.projections = nn.ModuleList(self._projection(channels, hyperparams)
                                         for channels in in_channels)
        self.smoothing = nn.ModuleList(
            slim_smoothing_unit(depth, hyperparams=hyperparams, use_depthwise=use_depthwise,
                                padding=padding)
            for _ in in_channels[:-1]
        )
        self.out_channels = [depth] * len(in_channels)

    def _projection(self, channels: int, hyperparams: ConvHyperparams) -> nn.Conv2d:
        # activation_fn=None, normalizer_fn=None: slim then adds a zero-initialized bias
        conv = nn.Conv2d(channels, self.depth, 1, bias=True)
        initialize_weight(conv.weight, hyperparams.initializer)
        assert conv.bias is not None
        nn.init.zeros_(conv.bias)
        return conv

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        """``[B, C_i, H_i, W_i]`` finest first -> ``[B, depth, H_i, W_i]`` finest first."""
        if len(maps) != len(self.in_channels):
            raise ValueError(f"FPN built for {len(self.in_channels)} maps, got {len(maps)}")
        top_down = self.projections[-1](maps[-1])
        outputs = [top_down]
        for level in reversed(range(len(maps) - 1)):
            residual = self.projections[level](maps[level])
            height, width = residual.shape[-2:]
            top_down = nearest_upsample_2x(top_down)[:, :, :height, :width] + residual
            outputs.append(self.smoothing[level](top_down))
        return outputs[::-1]


__all__ = ["SlimFpnTopDown", "slim_smoothing_unit"]
