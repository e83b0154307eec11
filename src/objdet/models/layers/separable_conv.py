"""Keras ``SeparableConv2D``: a depthwise ``k x k`` conv then a 1x1 pointwise conv, one bias.

The OD API builds these where a config says ``use_depthwise`` in FPN smoothing layers and in
the weight-shared box predictor (EfficientDet). Unlike the slim-style depthwise block there is
no batch norm or activation between the two convs.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.checkpoints.variable_map import Target, variable_key
from objdet.models.layers.padding import PaddingMode, make_conv2d


class SeparableConv2d(nn.Module):
    """``[B, C_in, H, W] -> [B, C_out, H', W']``: depthwise conv (no bias, depth multiplier 1)
    then pointwise 1x1 conv (with ``bias``), as Keras ``SeparableConv2D``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, bias: bool = True, padding: PaddingMode = "same") -> None:
        super().__init__()
        self.depthwise = make_conv2d(in_channels, in_channels, kernel_size, stride=stride,
                                     groups=in_channels, bias=False, padding=padding)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    @property
    def out_channels(self) -> int:
        return self.pointwise.out_channels

    def forward(self, features: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(features))

    def set_weight_decay(self, *, depthwise: float, pointwise: float) -> None:
        """L2 decay of each kernel, as Keras' ``depthwise_regularizer`` and
        ``pointwise_regularizer`` (the OD API usually sets the first only); these attributes
        take precedence over an enclosing module's (:mod:`objdet.models.regularization`)."""
        self.depthwise.weight_decay = depthwise  # type: ignore[assignment]
        self.depthwise.regularize_depthwise = True  # type: ignore[assignment]
        self.pointwise.weight_decay = pointwise  # type: ignore[assignment]


def separable_conv_targets(tf_prefix: str, torch_prefix: str, *, bias: bool) -> dict[str, Target]:
    """A Keras ``SeparableConv2D`` at ``tf_prefix`` -> :class:`SeparableConv2d` at ``torch_prefix``."""
    targets = {
        variable_key(f"{tf_prefix}/depthwise_kernel"):
            Target(f"{torch_prefix}.depthwise.weight", "depthwise"),
        variable_key(f"{tf_prefix}/pointwise_kernel"):
            Target(f"{torch_prefix}.pointwise.weight", "conv"),
    }
    if bias:
        targets[variable_key(f"{tf_prefix}/bias")] = Target(f"{torch_prefix}.pointwise.bias")
    return targets


__all__ = ["SeparableConv2d", "separable_conv_targets"]
