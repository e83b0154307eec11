"""MobileNet v2 as slim's ``nets/mobilenet/mobilenet_v2.mobilenet_base`` builds it for the OD
API's TF1 extractors (``ssd_mobilenet_v2_fpn``).

``layer_1`` is the 3x3 stride-2 stem, ``layer_2 .. layer_18`` the 17 ``expanded_conv`` blocks
and ``layer_19`` the last 1x1 conv (1280 filters, or the ``conv_defs`` value: FPNLite's 256).
Every ``num_outputs`` goes through slim's ``depth_multiplier``:
``_make_divisible(d * multiplier, 8, min_depth)``, the last conv included (``mobilenet_base``
has no ``finegrain_classification_mode``). An ``expanded_conv`` is [1x1 expand to
``_make_divisible(6 * in, 8)``,] 3x3 depthwise, 1x1 linear projection, and adds its input
when the stride is 1 and the channel counts match. Convs pad TF 'SAME', or
``fixed_padding`` + 'VALID' with ``use_explicit_padding``.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.slim_conv import SlimPadding, slim_conv_unit, slim_separable_unit

# (expansion, num_outputs, stride) of slim's V2_DEF expanded_conv ops (layer_2 .. layer_18).
_BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
_STEM_DEPTH = 32
LAST_CONV_DEPTH = 1280


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """slim mobilenet's ``_make_divisible``: the nearest multiple of ``divisor`` (at least
    ``min_value``), raised by one ``divisor`` when that would lose more than 10%."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


class ExpandedConv(nn.Module):
    """slim's ``ops.expanded_conv``: ``[B, C_in, H, W] -> [B, C_out, H / s, W / s]``."""

    def __init__(self, *, in_channels: int, expansion: int, out_channels: int, stride: int,
                 hyperparams: ConvHyperparams, padding: SlimPadding) -> None:
        super().__init__()
        inner = in_channels if expansion == 1 else make_divisible(in_channels * expansion, 8)
        # slim adds the expansion conv only when it widens the input
        self.expand = (slim_conv_unit(in_channels, inner, 1, hyperparams=hyperparams)
                       if inner > in_channels else None)
        self.depthwise = slim_separable_unit(inner, None, 3, stride=stride,
                                             hyperparams=hyperparams, padding=padding)
        self.project = slim_conv_unit(inner, out_channels, 1, hyperparams=hyperparams,
                                      activation=False)
        self.residual = stride == 1 and in_channels == out_channels
        self.expanded_channels = inner

    def forward_with_expansion(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """-> (block output, ``expansion_output`` (the input itself without expansion))."""
        expanded = features if self.expand is None else self.expand(features)
        output = self.project(self.depthwise(expanded))
        if self.residual:
            output = output + features
        return output, expanded

    def forward(self, features: Tensor) -> Tensor:
        return self.forward_with_expansion(features)[0]


class SlimMobileNetV2(nn.Module):
    """``forward(images [B, 3, H, W]) -> list`` of the requested ``endpoints`` (``layer_N``,
    N in 1..19, stride 2 for ``layer_1`` .. 32 for ``layer_19``), in the order given."""

    def __init__(self, *, endpoints: tuple[str, ...], depth_multiplier: float, min_depth: int,
                 hyperparams: ConvHyperparams, regularize_depthwise: bool,
                 padding: SlimPadding = "same", last_conv_depth: int = LAST_CONV_DEPTH) -> None:
        super().__init__()
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = regularize_depthwise

        def depth(value: int) -> int:
            return make_divisible(value * depth_multiplier, 8, min_depth)

        channels = depth(_STEM_DEPTH)
        self.stem = slim_conv_unit(3, channels, 3, stride=2, hyperparams=hyperparams,
                                   padding=padding)
        self.channels = {"layer_1": channels}
        self.blocks = nn.ModuleList()
        for index, (expansion, num_outputs, stride) in enumerate(_BLOCKS):
            block = ExpandedConv(in_channels=channels, expansion=expansion,
                                 out_channels=depth(num_outputs), stride=stride,
                                 hyperparams=hyperparams, padding=padding)
            self.blocks.append(block)
            channels = depth(num_outputs)
            self.channels[f"layer_{index + 2}"] = channels
            self.channels[f"layer_{index + 2}/expansion_output"] = block.expanded_channels
        self.last_conv = slim_conv_unit(channels, depth(last_conv_depth), 1,
                                        hyperparams=hyperparams)
        self.channels["layer_19"] = depth(last_conv_depth)
        unknown = [name for name in endpoints if name not in self.channels]
        if unknown:
            raise ValueError(f"unknown MobileNet v2 endpoints {unknown}")
        self.endpoints = endpoints
        self.out_channels: list[int] = [self.channels[name] for name in endpoints]

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.stem(images)
        outputs = {"layer_1": features}
        for index, block in enumerate(self.blocks):
            assert isinstance(block, ExpandedConv)
            features, expanded = block.forward_with_expansion(features)
            outputs[f"layer_{index + 2}"] = features
            outputs[f"layer_{index + 2}/expansion_output"] = expanded
        outputs["layer_19"] = self.last_conv(features)
        return [outputs[name] for name in self.endpoints]


__all__ = ["LAST_CONV_DEPTH", "ExpandedConv", "SlimMobileNetV2", "make_divisible"]
