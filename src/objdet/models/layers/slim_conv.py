"""tf_slim's ``conv2d`` / ``separable_conv2d`` / pooling under an OD API ``arg_scope``.

Under the scope that ``hyperparams_builder.build`` returns, ``slim.conv2d`` is conv, then the
scope's ``normalizer_fn`` (batch norm; the conv has a bias only when there is none), then its
``activation_fn``. ``slim.separable_conv2d(num_outputs=None)`` is a depthwise conv (channel
multiplier ``depth_multiplier``) followed by the same norm and activation; with
``num_outputs`` a 1x1 pointwise conv comes between them. A layer's own
``weights_initializer=trunc_normal(stddev)`` (the Inception nets) wins over the scope's.

Padding follows slim: ``"same"`` is TF 'SAME' (asymmetric for stride 2), ``"valid"`` none and
``"explicit"`` the OD API's ``ops.fixed_padding`` (``k - 1`` in all, the smaller half before)
followed by a 'VALID' conv. TF's 'SAME' average pooling leaves padded cells out of the mean.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.hyperparams import (
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
    truncated_normal_,
)
from objdet.models.layers.padding import Conv2dSame, pad_same

SlimPadding = Literal["same", "valid", "explicit"]
Kernel = int | tuple[int, int]


def _pair(kernel: Kernel) -> tuple[int, int]:
    return (kernel, kernel) if isinstance(kernel, int) else kernel


class FixedPadding(nn.Module):
    """The OD API's ``ops.fixed_padding``: ``[B, C, H, W] -> [B, C, H + k - 1, W + k - 1]``,
    ``(k - 1) // 2`` zeros before and the rest after (also for even kernels)."""

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        kernel_h, kernel_w = _pair(kernel)
        top, left = (kernel_h - 1) // 2, (kernel_w - 1) // 2
        self.amounts = (left, kernel_w - 1 - left, top, kernel_h - 1 - top)

    def forward(self, features: Tensor) -> Tensor:
        return F.pad(features, self.amounts)


def slim_conv2d(in_channels: int, out_channels: int, kernel: Kernel, *, stride: int = 1,
                groups: int = 1, bias: bool, padding: SlimPadding) -> nn.Module:
    """A conv padded as slim pads it (see the module docstring); ``.weight`` is its kernel."""
    kernel_hw = _pair(kernel)
    if padding == "same":
        return Conv2dSame(in_channels, out_channels, kernel_hw, stride=stride, groups=groups,
                          bias=bias)
    if padding == "valid":
        return nn.Conv2d(in_channels, out_channels, kernel_hw, stride=stride, groups=groups,
                         bias=bias)
    if padding != "explicit":
        raise ValueError(f"padding must be 'same', 'valid' or 'explicit', got {padding!r}")
    if kernel_hw == (1, 1):
        return nn.Conv2d(in_channels, out_channels, 1, stride=stride, groups=groups, bias=bias)
    return nn.Sequential(FixedPadding(kernel_hw),
                         nn.Conv2d(in_channels, out_channels, kernel_hw, stride=stride,
                                   groups=groups, bias=bias))


def _kernel_of(conv: nn.Module) -> nn.Conv2d:
    return conv if isinstance(conv, nn.Conv2d) else conv[-1]  # type: ignore[index,return-value]


def _init(conv: nn.Module, hyperparams: ConvHyperparams, init_stddev: float | None) -> None:
    layer = _kernel_of(conv)
    if init_stddev is not None:
        truncated_normal_(layer.weight, 0.0, init_stddev)
    else:
        initialize_weight(layer.weight, hyperparams.initializer)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _norm_and_activation(channels: int, hyperparams: ConvHyperparams,
                         activation: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    if hyperparams.batch_norm is not None:
        layers.append(make_batch_norm(channels, hyperparams.batch_norm))
    if activation:
        layers.append(make_activation(hyperparams.activation))
    return layers


def slim_conv_unit(in_channels: int, out_channels: int, kernel: Kernel, *,
                   hyperparams: ConvHyperparams, padding: SlimPadding = "same", stride: int = 1,
                   groups: int = 1, activation: bool = True,
                   init_stddev: float | None = None) -> nn.Sequential:
    """``slim.conv2d``: ``Sequential(conv[, batch_norm][, activation])``; ``activation=False``
    is ``activation_fn=None`` (e.g. MobileNet v2's linear projection)."""
    conv = slim_conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups,
                       bias=hyperparams.batch_norm is None, padding=padding)
    _init(conv, hyperparams, init_stddev)
    return nn.Sequential(conv, *_norm_and_activation(out_channels, hyperparams, activation))


def slim_separable_unit(in_channels: int, out_channels: int | None, kernel: Kernel, *,
                        hyperparams: ConvHyperparams, padding: SlimPadding = "same",
                        stride: int = 1, depth_multiplier: int = 1,
                        init_stddev: float | None = None) -> nn.Sequential:
    """``slim.separable_conv2d``: depthwise conv (``in * depth_multiplier`` channels, no bias)
    [, 1x1 pointwise conv to ``out_channels``], batch norm, activation."""
    depthwise_channels = in_channels * depth_multiplier
    has_pointwise = out_channels is not None
    depthwise = slim_conv2d(in_channels, depthwise_channels, kernel, stride=stride,
                            groups=in_channels,
                            bias=not has_pointwise and hyperparams.batch_norm is None,
                            padding=padding)
    _init(depthwise, hyperparams, init_stddev)
    layers: list[nn.Module] = [depthwise]
    channels = depthwise_channels
    if out_channels is not None:
        pointwise = nn.Conv2d(depthwise_channels, out_channels, 1,
                              bias=hyperparams.batch_norm is None)
        _init(pointwise, hyperparams, init_stddev)
        layers.append(pointwise)
        channels = out_channels
    return nn.Sequential(*layers, *_norm_and_activation(channels, hyperparams, True))


class MaxPool2dSlim(nn.Module):
    """``slim.max_pool2d``: ``[B, C, H, W] -> [B, C, H', W']``; 'SAME' pads with -inf."""

    def __init__(self, kernel: int, stride: int, padding: SlimPadding) -> None:
        super().__init__()
        if padding == "explicit":
            raise ValueError("slim pools are 'same' or 'valid'")
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, features: Tensor) -> Tensor:
        if self.padding == "same":
            features = pad_same(features, (self.kernel, self.kernel), (self.stride, self.stride),
                                value=-math.inf)
        return F.max_pool2d(features, self.kernel, self.stride)


class AvgPool2dSlim(nn.Module):
    """``slim.avg_pool2d``: with 'SAME', padded cells are left out of each mean (TF's rule,
    PyTorch's ``count_include_pad=False``)."""

    def __init__(self, kernel: int, stride: int, padding: SlimPadding) -> None:
        super().__init__()
        if padding == "explicit":
            raise ValueError("slim pools are 'same' or 'valid'")
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, features: Tensor) -> Tensor:
        if self.padding == "valid":
            return F.avg_pool2d(features, self.kernel, self.stride)
        ones = features.new_ones((1, 1, *features.shape[-2:]))
        size = (self.kernel, self.kernel)
        stride = (self.stride, self.stride)
        summed = F.avg_pool2d(pad_same(features, size, stride), self.kernel, self.stride)
        counted = F.avg_pool2d(pad_same(ones, size, stride), self.kernel, self.stride)
        return summed / counted  # both means over k*k cells: their ratio is the mean of the real ones


__all__ = ["AvgPool2dSlim", "FixedPadding", "MaxPool2dSlim", "SlimPadding", "slim_conv2d",
           "slim_conv_unit", "slim_separable_unit"]
