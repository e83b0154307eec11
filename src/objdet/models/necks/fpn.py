"""The FPN top-down pathway (Lin et al. 2017) as the OD API's ``KerasFpnTopDownFeatureMaps``.

From backbone maps ``C_min..C_max`` (finest first, each half the size of the one before):
``P_max = proj(C_max)``; then, coarsest to finest, ``P_l = smooth(up2(P_{l+1}) + proj(C_l))``.
``proj`` is a 1x1 conv with bias (no norm, no activation); ``smooth`` a 3x3 conv (Keras
``SeparableConv2D`` with ``use_depthwise``) + batch norm + activation from
``conv_hyperparams``; ``up2`` nearest-neighbour 2x upsampling. The coarsest output is the
projection alone (no smoothing), as in the OD API.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.hyperparams import (
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import PaddingMode, make_conv2d
from objdet.models.layers.separable_conv import SeparableConv2d, separable_conv_targets


def keras_use_bias(hyperparams: ConvHyperparams) -> bool:
    """``KerasLayerHyperparams.use_bias()``: a conv has a bias unless a centring batch norm
    follows it (or ``force_use_bias``)."""
    norm = hyperparams.batch_norm
    return hyperparams.force_use_bias or norm is None or not norm.center


def nearest_upsample_2x(features: Tensor) -> Tensor:
    """``[B, C, H, W] -> [B, C, 2H, 2W]``, each value repeated in a 2x2 block.

    Both OD API variants give exactly this: ``ops.nearest_neighbor_upsampling`` (stack and
    reshape) and, with ``use_native_resize_op``, ``tf.image.resize_nearest_neighbor`` to
    ``2H x 2W`` without ``align_corners`` (source index ``floor(i / 2)``).
    """
    # F.interpolate's integer-factor nearest copies each pixel 2x2 as repeat_interleave does,
    # and exports as one ONNX Resize (repeat_interleave becomes Expand/Reshape chains)
    return F.interpolate(features, scale_factor=2, mode="nearest")


class FpnTopDown(nn.Module):
    """``forward(maps) -> maps``: ``len(in_channels)`` maps in (finest first), as many out
    (finest first), each with ``depth`` channels and the size of its input map.

    ``padding="explicit"`` is the OD API's ``use_explicit_padding``: the upsampled map is
    cropped to the lateral map's size (the only place where it differs from 'SAME' here,
    since the smoothing convs have stride 1). The 'SAME' variant needs every map exactly
    twice the size of the next; this module crops in both cases instead of failing.
    """

    def __init__(
        self,
        *,
        in_channels: list[int],
        depth: int,
        hyperparams: ConvHyperparams,
        use_depthwise: bool = False,
        use_native_resize_op: bool = False,
        padding: PaddingMode = "same",
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("an FPN needs at least one input map")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self.in_channels = list(in_channels)
        self.depth = depth
        self.use_depthwise = use_depthwise
        self.use_native_resize_op = use_native_resize_op  # same values either way
        self.padding: PaddingMode = padding
        self._hyperparams = hyperparams
        self.top_projection = self._projection(in_channels[-1])
        # One lateral projection and one smoothing block per map but the coarsest, finest first.
        self.lateral_projections = nn.ModuleList(
            self._projection(channels) for channels in in_channels[:-1]
        )
        self.smoothing = nn.ModuleList(self._smoothing_block() for _ in in_channels[:-1])
        self.out_channels = [depth] * len(in_channels)

    def _projection(self, channels: int) -> nn.Conv2d:
        conv = nn.Conv2d(channels, self.depth, 1, bias=True)  # use_bias=True in the OD API
        initialize_weight(conv.weight, self._hyperparams.initializer)
        assert conv.bias is not None
        nn.init.zeros_(conv.bias)
        return conv

    def _smoothing_block(self) -> nn.Sequential:
        bias = keras_use_bias(self._hyperparams)
        conv: nn.Module
        if self.use_depthwise:
            conv = SeparableConv2d(self.depth, self.depth, 3, bias=bias, padding=self.padding)
            # create_conv_block regularizes the depthwise kernel only
            conv.set_weight_decay(depthwise=self._hyperparams.weight_decay, pointwise=0.0)
            weights = [conv.depthwise.weight, conv.pointwise.weight]
        else:
            conv = make_conv2d(self.depth, self.depth, 3, bias=bias, padding=self.padding)
            weights = [conv.weight]
        for weight in weights:
            initialize_weight(weight, self._hyperparams.initializer)
        layers: list[nn.Module] = [conv]
        batch_norm = self._hyperparams.batch_norm
        if batch_norm is not None:
            layers.append(make_batch_norm(self.depth, batch_norm))
        layers.append(make_activation(self._hyperparams.activation))
        return nn.Sequential(*layers)

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        """``[B, C_i, H_i, W_i]`` finest first -> ``[B, depth, H_i, W_i]`` finest first."""
        if len(maps) != len(self.in_channels):
            raise ValueError(f"FPN built for {len(self.in_channels)} maps, got {len(maps)}")
        top_down = self.top_projection(maps[-1])
        outputs = [top_down]
        for index in reversed(range(len(maps) - 1)):
            lateral = self.lateral_projections[index](maps[index])
            height, width = lateral.shape[-2:]
            upsampled = nearest_upsample_2x(top_down)[:, :, :height, :width]
            top_down = self.smoothing[index](upsampled + lateral)
            outputs.append(top_down)
        return outputs[::-1]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to the ``KerasFpnTopDownFeatureMaps`` object (an extractor's
        ``_fpn_features_generator/``) -> state_dict names relative to this module.

        The OD API lists its per-level layers coarsest first: ``residual_blocks/k`` and
        ``conv_layers/k`` hold level ``num_levels - 2 - k``; with explicit padding a
        ``fixed_padding`` Lambda comes first in ``conv_layers/k``.
        """
        targets = conv_targets("top_layers/0", "top_projection")
        num_levels = len(self.in_channels)
        first = 1 if self.padding == "explicit" else 0
        bias = keras_use_bias(self._hyperparams)
        for index in range(num_levels - 1):
            tf_index = num_levels - 2 - index
            targets.update(conv_targets(f"residual_blocks/{tf_index}/0",
                                        f"lateral_projections.{index}"))
            conv_prefix = f"conv_layers/{tf_index}/{first}"
            if self.use_depthwise:
                targets.update(separable_conv_targets(conv_prefix, f"smoothing.{index}.0",
                                                      bias=bias))
            else:
                targets.update(conv_targets(conv_prefix, f"smoothing.{index}.0", bias=bias))
            batch_norm = self._hyperparams.batch_norm
            if batch_norm is not None:
                norm_targets = batch_norm_targets(f"conv_layers/{tf_index}/{first + 1}",
                                                  f"smoothing.{index}.1")
                targets.update(drop_absent_batch_norm_variables(norm_targets, batch_norm))
        return targets


__all__ = ["FpnTopDown", "keras_use_bias", "nearest_upsample_2x"]
