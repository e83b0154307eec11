"""EfficientNet b0–b7 (Tan & Le 2019) as the OD API's EfficientDet extractors build it.

The OD API takes the network from tf-models-official
(``official/legacy/image_classification/efficientnet/efficientnet_model.py``) with
``rescale_input=False``; this module follows that code: the seven MBConv stacks of b0 scaled
by a width and a depth coefficient (``round_filters``/``round_repeats``), squeeze-excite
sized from the block's *input* filters, swish (``x * sigmoid(x)``), Keras batch norm
(momentum 0.99, epsilon 1e-3), TF 'SAME' padding, and drop-connect (stochastic depth, in
training only) rising linearly from 0 to 0.2 over the blocks.

Only the stem and the blocks up to the last tapped one are built: the classifier ``top``
and ``logits`` layers (and stack_6's repeats after block 0) never reach a detection feature.
Keras names each layer (``stack_4/block_2/project_bn``); :meth:`EfficientNet.keras_layer_names`
lists the weighted ones in the Keras model's order, which numbers its checkpoint variables
(``layer_with_weights-N``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torchvision.ops import stochastic_depth

from objdet.models.checkpoints.variable_map import (
    Target,
    batch_norm_targets,
    conv_targets,
    ignored_targets,
)
from objdet.models.hyperparams import SlimBatchNorm2d, truncated_normal_
from objdet.models.layers.padding import make_conv2d


@dataclass(frozen=True)
class StackArgs:
    """One MBConv stack of EfficientNet-b0 (before width/depth scaling)."""

    input_filters: int
    output_filters: int
    kernel_size: int
    num_repeat: int
    expand_ratio: int
    stride: int
    se_ratio: float = 0.25


# tf-models-official's ModelConfig.blocks (EfficientNet-b0).
B0_STACKS = (
    StackArgs(32, 16, 3, 1, 1, 1),
    StackArgs(16, 24, 3, 2, 6, 2),
    StackArgs(24, 40, 5, 2, 6, 2),
    StackArgs(40, 80, 3, 3, 6, 2),
    StackArgs(80, 112, 5, 3, 6, 1),
    StackArgs(112, 192, 5, 4, 6, 2),
    StackArgs(192, 320, 3, 1, 6, 1),
)
STEM_FILTERS = 32

# name -> (width_coefficient, depth_coefficient), as MODEL_CONFIGS.
EFFICIENTNET_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "efficientnet-b0": (1.0, 1.0),
    "efficientnet-b1": (1.0, 1.1),
    "efficientnet-b2": (1.1, 1.2),
    "efficientnet-b3": (1.2, 1.4),
    "efficientnet-b4": (1.4, 1.8),
    "efficientnet-b5": (1.6, 2.2),
    "efficientnet-b6": (1.8, 2.6),
    "efficientnet-b7": (2.0, 3.1),
}

# Keras BatchNormalization(momentum=0.99, epsilon=1e-3): PyTorch momentum is 1 - 0.99.
BN_MOMENTUM = 0.01
BN_EPSILON = 1e-3
DROP_CONNECT_RATE = 0.2
# keras l2(5e-6) on kernels: a gradient of 1e-5 * w, objdet's weight_decay convention.
DEFAULT_WEIGHT_DECAY = 1e-5


def round_filters(filters: int, width_coefficient: float, divisor: int = 8) -> int:
    """Channels after the width coefficient, a multiple of ``divisor`` (never 10% fewer)."""
    scaled = filters * width_coefficient
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Blocks of a stack after the depth coefficient."""
    return math.ceil(depth_coefficient * repeats)


def make_activation(name: str) -> nn.Module:
    """``"swish"`` (tf-models' simple_swish, ``x * sigmoid(x)``) or ``"hard_swish"``."""
    if name == "swish":
        return nn.SiLU()
    if name == "hard_swish":
        return nn.Hardswish()
    raise ValueError(f"EfficientNet activation must be 'swish' or 'hard_swish', got {name!r}")


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return SlimBatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def _conv(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
          groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """A 'SAME'-padded conv initialized as tf-models' CONV_KERNEL_INITIALIZER
    (VarianceScaling(2.0, fan_out, truncated normal)); biases start at 0."""
    conv = make_conv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                       bias=bias, padding="same")
    # Keras fan_out of a [kh, kw, in, out] kernel is kh*kw*out; of a depthwise one kh*kw*1.
    fan_out = kernel_size * kernel_size * out_channels // groups
    stddev = math.sqrt(2.0 / fan_out) / 0.87962566103423978  # truncated normal correction
    truncated_normal_(conv.weight, 0.0, stddev)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand] -> kxk depthwise -> squeeze-excite -> 1x1
    project, each conv followed by batch norm (the SE convs have biases instead); a residual
    (with drop-connect in training) when the stride is 1 and the channels are unchanged."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expand_ratio: int, se_ratio: float, activation: str,
                 drop_connect_rate: float) -> None:
        super().__init__()
        channels = in_channels * expand_ratio
        self.expand_conv: nn.Module | None = None
        self.expand_bn: nn.Module | None = None
        if expand_ratio != 1:
            self.expand_conv = _conv(in_channels, channels, 1)
            self.expand_bn = _batch_norm(channels)
        self.depthwise_conv = _conv(channels, channels, kernel_size, stride=stride,
                                    groups=channels)
        self.depthwise_bn = _batch_norm(channels)
        reduced = max(1, int(in_channels * se_ratio))  # from the block's input, as tf-models
        self.se_reduce = _conv(channels, reduced, 1, bias=True)
        self.se_expand = _conv(reduced, channels, 1, bias=True)
        self.project_conv = _conv(channels, out_channels, 1)
        self.project_bn = _batch_norm(out_channels)
        self.activation = make_activation(activation)
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate

    def keras_layers(self) -> list[tuple[str, str]]:
        """``(keras layer suffix, attribute)`` of the weighted layers, in Keras order."""
        names = [("expand_conv2d", "expand_conv"), ("expand_bn", "expand_bn")]
        if self.expand_conv is None:
            names = []
        return names + [("depthwise_conv2d", "depthwise_conv"), ("depthwise_bn", "depthwise_bn"),
                        ("se_reduce_conv2d", "se_reduce"), ("se_expand_conv2d", "se_expand"),
                        ("project_conv2d", "project_conv"), ("project_bn", "project_bn")]

    def forward(self, inputs: Tensor) -> Tensor:
        features = inputs
        if self.expand_conv is not None and self.expand_bn is not None:
            features = self.activation(self.expand_bn(self.expand_conv(features)))
        features = self.activation(self.depthwise_bn(self.depthwise_conv(features)))
        squeezed = features.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        excite = torch.sigmoid(self.se_expand(self.activation(self.se_reduce(squeezed))))
        features = self.project_bn(self.project_conv(features * excite))
        if not self.has_residual:
            return features
        if self.drop_connect_rate > 0:
            features = stochastic_depth(features, self.drop_connect_rate, "row", self.training)
        return features + inputs


class EfficientNet(nn.Module):
    """The EfficientNet trunk: stem and MBConv stacks, returning the tapped block outputs.

    ``forward(images [B, 3, H, W]) -> list`` of the outputs of ``taps`` (``(stack, block)``
    pairs, e.g. ``(2, 1)`` for Keras' ``stack_2/block_1/add``), in the order given.
    ``out_channels`` lists their channels. Images are expected already normalized (the
    OD API builds it with ``rescale_input=False``).
    """

    def __init__(self, *, width_coefficient: float, depth_coefficient: float,
                 taps: list[tuple[int, int]], activation: str = "swish",
                 weight_decay: float = DEFAULT_WEIGHT_DECAY) -> None:
        super().__init__()
        if not taps:
            raise ValueError("EfficientNet needs at least one tapped block")
        self.weight_decay = weight_decay
        self.regularize_depthwise = False  # tf-models sets no depthwise_regularizer
        self.taps = list(taps)
        self.depth_coefficient = depth_coefficient
        self.stem_conv = _conv(3, round_filters(STEM_FILTERS, width_coefficient), 3, stride=2)
        self.stem_bn = _batch_norm(self.stem_conv.out_channels)
        self.activation = make_activation(activation)
        num_blocks_total = sum(round_repeats(s.num_repeat, depth_coefficient) for s in B0_STACKS)
        last_stack, last_block = max(self.taps)
        stacks: list[nn.ModuleList] = []
        block_number = 0
        for stack_index, stack in enumerate(B0_STACKS[: last_stack + 1]):
            in_channels = round_filters(stack.input_filters, width_coefficient)
            out_channels = round_filters(stack.output_filters, width_coefficient)
            repeats = round_repeats(stack.num_repeat, depth_coefficient)
            if stack_index == last_stack:
                repeats = last_block + 1
            blocks = nn.ModuleList()
            for block_index in range(repeats):
                blocks.append(MBConvBlock(
                    in_channels=in_channels if block_index == 0 else out_channels,
                    out_channels=out_channels, kernel_size=stack.kernel_size,
                    stride=stack.stride if block_index == 0 else 1,
                    expand_ratio=stack.expand_ratio, se_ratio=stack.se_ratio,
                    activation=activation,
                    drop_connect_rate=DROP_CONNECT_RATE * block_number / num_blocks_total,
                ))
                block_number += 1
            stacks.append(blocks)
        self.stacks = nn.ModuleList(stacks)
        for stack_index, block_index in self.taps:
            if block_index >= len(stacks[stack_index]):
                raise ValueError(f"EfficientNet has no block stack_{stack_index}/block_"
                                 f"{block_index} (stack has {len(stacks[stack_index])})")
        self.out_channels: list[int] = [
            self._block(s, b).project_bn.num_features for s, b in self.taps
        ]

    def _block(self, stack_index: int, block_index: int) -> MBConvBlock:
        return self._stack(stack_index)[block_index]

    def _stack(self, stack_index: int) -> list[MBConvBlock]:
        return [cast(MBConvBlock, block)
                for block in cast(nn.ModuleList, self.stacks[stack_index])]

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.activation(self.stem_bn(self.stem_conv(images)))
        tapped: dict[tuple[int, int], Tensor] = {}
        for stack_index in range(len(self.stacks)):
            for block_index, block in enumerate(self._stack(stack_index)):
                features = block(features)
                tapped[(stack_index, block_index)] = features
        return [tapped[tap] for tap in self.taps]

    def keras_layer_names(self) -> list[tuple[str, str]]:
        """``(Keras layer name, state_dict prefix)`` of every weighted layer, in Keras order."""
        names = [("stem_conv2d", "stem_conv"), ("stem_bn", "stem_bn")]
        for stack_index in range(len(self.stacks)):
            for block_index, block in enumerate(self._stack(stack_index)):
                for suffix, attribute in block.keras_layers():
                    names.append((f"stack_{stack_index}/block_{block_index}/{suffix}",
                                  f"stacks.{stack_index}.{block_index}.{attribute}"))
        return names

    def num_keras_layers(self) -> int:
        """Weighted layers of the OD API's whole Keras EfficientNet: stem, every block of
        every stack, the top conv + batch norm and the classifier (``logits``)."""
        blocks = [(stack, round_repeats(stack.num_repeat, self.depth_coefficient))
                  for stack in B0_STACKS]
        block_layers = sum(repeats * (8 if stack.expand_ratio != 1 else 6)
                           for stack, repeats in blocks)
        return 2 + block_layers + 3

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to the Keras EfficientNet model (``layer_with_weights-N/...``); the
        layers after the last tapped block are ``ignored`` (they never reach a feature map)."""
        targets: dict[str, Target] = {}
        for index, (keras_name, prefix) in enumerate(self.keras_layer_names()):
            tf_prefix = f"layer_with_weights-{index}"
            if keras_name.endswith("_bn"):
                targets.update(batch_norm_targets(tf_prefix, prefix))
            else:
                has_bias = "/se_" in keras_name
                targets.update(conv_targets(tf_prefix, prefix, bias=has_bias,
                                            depthwise="depthwise" in keras_name))
        for index in range(len(self.keras_layer_names()), self.num_keras_layers()):
            targets.update(ignored_targets(f"layer_with_weights-{index}"))
        return targets
