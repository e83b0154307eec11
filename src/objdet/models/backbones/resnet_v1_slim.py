"""ResNet v1 50/101/152 as slim builds it (``nets/resnet_v1.py`` + ``nets/resnet_utils.py``).

This is the network of the OD API's TF1 extractors (``faster_rcnn_resnet{50,101,152}``,
``ssd_resnet{50,101,152}_v1_fpn``), which differs from the Keras ResNet of
:mod:`objdet.models.backbones.resnet_v1`:

- a *block* (``block1..block4``) is ``num_units`` bottlenecks; the block's stride sits on
  the 3x3 conv (``conv2``) of its **last** unit (Keras: on the first unit's 1x1 conv), and
  ``block4`` has stride 1, so the nominal strides of the block outputs are 8, 16, 32, 32;
- ``conv2d_same``: every conv pads ``(k - 1) * rate / 2`` on each side (odd kernels), the
  1x1 stride-2 shortcut pads nothing; ``pool1`` is a 3x3 stride-2 max-pool with TF 'SAME';
- a unit's shortcut is a 1x1 conv + batch norm (with the unit's stride) only where the
  channel count changes, else the input subsampled (``x[::stride, ::stride]``);
- ``output_stride`` (8 or 16 for detection) turns the strides past it into atrous rates:
  once the stride is reached, later units run at stride 1 and their 3x3 convs dilate by the
  product of the strides they skipped (``stack_blocks_dense``);
- ``store_non_strided_activations`` (the OD API's SSD FPN) runs each block's last unit at
  stride 1, takes the block output there and subsamples it before the next block: block
  outputs at strides 4, 8, 16, 32;
- the stem is always 64 channels; block widths are ``max(int(d * depth_multiplier),
  min_base_depth)`` for base depths 64, 128, 256, 512 (outputs 4x);
- conv1/conv2 of each unit and the stem end in batch norm + the arg_scope's activation,
  conv3 and the shortcut in batch norm alone; the unit's sum always goes through ReLU.

``resnet_arg_scope`` (the default hyperparameters): batch norm decay 0.997, epsilon 1e-5,
with gamma; ReLU; ``variance_scaling_initializer()``; L2 weight 0.0001. A conv without batch
norm (``conv_hyperparams`` without one) has a bias, as slim's ``conv2d`` adds one then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from objdet.models.checkpoints.variable_map import Target
from objdet.models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    InitializerParams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import MaxPool2dSame

# Units per block (block1..block4) of each depth.
RESNET_V1_SLIM_UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_BASE_DEPTHS = (64, 128, 256, 512)
_BLOCK_STRIDES = (2, 2, 2, 1)
STEM_DEPTH = 64

# slim's resnet_arg_scope(): BN decay 0.997 / epsilon 1e-5 / scale, ReLU, variance scaling
# (factor 2, FAN_IN, truncated normal) and l2_regularizer(0.0001).
DEFAULT_HYPERPARAMS = ConvHyperparams(
    activation="RELU",
    batch_norm=BatchNormParams(momentum=1.0 - 0.997, epsilon=1e-5, scale=True, center=True),
    initializer=InitializerParams(kind="variance_scaling", factor=2.0, mode="FAN_IN"),
    weight_decay=0.0001,
)


@dataclass(frozen=True)
class SlimBlock:
    """One ``resnet_v1_block``: ``num_units`` bottlenecks of width ``base_depth`` (output
    ``4 * base_depth``); ``stride`` is the last unit's."""

    base_depth: int
    num_units: int
    stride: int


def resnet_v1_slim_blocks(depth: int, *, depth_multiplier: float = 1.0,
                          min_base_depth: int = 8) -> list[SlimBlock]:
    """The four blocks of ``resnet_v1_{depth}`` (research/slim's ``depth_func``)."""
    if depth not in RESNET_V1_SLIM_UNITS:
        raise ValueError(f"ResNet v1 depth must be one of {sorted(RESNET_V1_SLIM_UNITS)}, "
                         f"got {depth}")
    if depth_multiplier <= 0:
        raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
    return [SlimBlock(max(int(base * depth_multiplier), min_base_depth), units, stride)
            for base, units, stride in zip(_BASE_DEPTHS, RESNET_V1_SLIM_UNITS[depth],
                                           _BLOCK_STRIDES)]


class SlimConv(nn.Module):
    """slim ``conv2d`` (+ ``BatchNorm``) (+ activation), padded as ``conv2d_same``:
    ``[B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 hyperparams: ConvHyperparams, stride: int = 1, rate: int = 1,
                 activation: bool = True) -> None:
        super().__init__()
        batch_norm = self._batch_norm = hyperparams.batch_norm
        # conv2d_same with an odd kernel pads (k_effective - 1) / 2 on each side, at any
        # stride; a 1x1 'SAME' conv pads nothing.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) * rate // 2, dilation=rate,
                              bias=batch_norm is None)
        initialize_weight(self.conv.weight, hyperparams.initializer)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.norm = (make_batch_norm(out_channels, batch_norm) if batch_norm is not None
                     else nn.Identity())
        self.activation = make_activation(hyperparams.activation) if activation else nn.Identity()

    def forward(self, features: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv(features)))

    def slim_variable_map(self, scope: str, torch_prefix: str) -> dict[str, Target]:
        """TF1 variable names under ``scope`` (``.../conv1``) -> state_dict names."""
        targets = {f"{scope}/weights": Target(f"{torch_prefix}.conv.weight", "conv")}
        if self.conv.bias is not None:
            targets[f"{scope}/biases"] = Target(f"{torch_prefix}.conv.bias")
        if self._batch_norm is None:
            return targets
        names = {"moving_mean": "running_mean", "moving_variance": "running_var"}
        if self._batch_norm.center:  # slim creates beta only with center, gamma with scale
            names["beta"] = "bias"
        if self._batch_norm.scale:
            names["gamma"] = "weight"
        for tf_name, torch_name in names.items():
            targets[f"{scope}/BatchNorm/{tf_name}"] = Target(f"{torch_prefix}.norm.{torch_name}")
        return targets


def subsample(features: Tensor, factor: int) -> Tensor:
    """``resnet_utils.subsample``: a 1x1 max-pool of stride ``factor`` (every factor-th pixel,
    from the first): ``[B, C, H, W] -> [B, C, ceil(H / factor), ceil(W / factor)]``."""
    return features if factor == 1 else features[:, :, ::factor, ::factor]


class Bottleneck(nn.Module):
    """slim ``bottleneck`` (``bottleneck_v1``): ``[B, C_in, H, W] -> [B, depth, H / stride,
    W / stride]`` (ceil), its 3x3 conv strided and dilated by ``rate``."""

    def __init__(self, *, in_channels: int, depth: int, depth_bottleneck: int, stride: int,
                 rate: int, hyperparams: ConvHyperparams) -> None:
        super().__init__()
        self.stride = stride
        self.shortcut = (None if depth == in_channels else
                         SlimConv(in_channels, depth, 1, hyperparams=hyperparams, stride=stride,
                                  activation=False))
        self.conv1 = SlimConv(in_channels, depth_bottleneck, 1, hyperparams=hyperparams)
        self.conv2 = SlimConv(depth_bottleneck, depth_bottleneck, 3, hyperparams=hyperparams,
                              stride=stride, rate=rate)
        self.conv3 = SlimConv(depth_bottleneck, depth, 1, hyperparams=hyperparams,
                              activation=False)

    def forward(self, features: Tensor) -> Tensor:
        shortcut = (subsample(features, self.stride) if self.shortcut is None
                    else self.shortcut(features))
        residual = self.conv3(self.conv2(self.conv1(features)))
        return (shortcut + residual).relu()  # tf.nn.relu whatever the arg_scope activation

    def slim_variable_map(self, scope: str, torch_prefix: str) -> dict[str, Target]:
        """``{scope}/bottleneck_v1/{shortcut,conv1,conv2,conv3}/...`` -> state_dict names."""
        targets: dict[str, Target] = {}
        for name in ("shortcut", "conv1", "conv2", "conv3"):
            layer = getattr(self, name)
            if isinstance(layer, SlimConv):
                targets.update(layer.slim_variable_map(f"{scope}/bottleneck_v1/{name}",
                                                       f"{torch_prefix}.{name}"))
        return targets


@dataclass(frozen=True)
class UnitPlan:
    """One unit's conv2 stride and atrous rate."""

    stride: int
    rate: int


def plan_units(blocks: Sequence[SlimBlock], output_stride: int | None,
               store_non_strided_activations: bool) -> tuple[list[list[UnitPlan]], list[int]]:
    """``stack_blocks_dense`` (research/slim): each unit's (stride, rate) and each block's
    trailing subsample factor, for blocks that start at stride 4 (after the stem).

    Raises ValueError when ``output_stride`` is not a multiple of 4 or cannot be reached.
    """
    target = None
    if output_stride is not None:
        if output_stride % 4 != 0:
            raise ValueError(f"output_stride must be a multiple of 4, got {output_stride}")
        target = output_stride // 4
    current_stride, rate = 1, 1
    plans: list[list[UnitPlan]] = []
    subsamples: list[int] = []
    for block in blocks:
        units: list[UnitPlan] = []
        block_stride = 1
        for index in range(block.num_units):
            stride = block.stride if index == block.num_units - 1 else 1
            if store_non_strided_activations and index == block.num_units - 1:
                block_stride, stride = stride, 1  # moved to after the block's output
            if target is not None and current_stride == target:
                units.append(UnitPlan(stride=1, rate=rate))
                rate *= stride
            else:
                units.append(UnitPlan(stride=stride, rate=1))
                current_stride *= stride
                if target is not None and current_stride > target:
                    raise ValueError(f"output_stride {output_stride} cannot be reached")
        if target is not None and current_stride == target:
            rate *= block_stride
            subsamples.append(1)
        else:
            subsamples.append(block_stride)
            current_stride *= block_stride
            if target is not None and current_stride > target:
                raise ValueError(f"output_stride {output_stride} cannot be reached")
        plans.append(units)
    if target is not None and current_stride != target:
        raise ValueError(f"output_stride {output_stride} cannot be reached")
    return plans, subsamples


class ResNetV1Slim(nn.Module):
    """slim's ``resnet_v1`` without pooling or logits.

    ``forward(images [B, 3, H, W]) -> [block1, ..., blockN]``: each block's output as slim's
    end points hold it (``resnet_v1_50/blockN``). With ``output_stride=None`` and full
    blocks their strides are 8, 16, 32, 32 (4, 8, 16, 32 with
    ``store_non_strided_activations``); ``output_stride`` caps them. ``blocks`` may stop
    early (e.g. at block3 for Faster R-CNN's first stage). ``out_channels`` lists the
    channels of the block outputs.
    """

    def __init__(self, *, blocks: Sequence[SlimBlock],
                 hyperparams: ConvHyperparams = DEFAULT_HYPERPARAMS,
                 output_stride: int | None = None,
                 store_non_strided_activations: bool = False) -> None:
        super().__init__()
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        plans, self.subsamples = plan_units(blocks, output_stride, store_non_strided_activations)
        self.stem = SlimConv(3, STEM_DEPTH, 7, hyperparams=hyperparams, stride=2)  # conv1
        self.pool = MaxPool2dSame(3, 2)  # pool1
        self.blocks = nn.ModuleList()
        self.out_channels: list[int] = []
        channels = STEM_DEPTH
        for block, plan in zip(blocks, plans):
            self.blocks.append(make_units(block, plan, channels, hyperparams))
            channels = 4 * block.base_depth
            self.out_channels.append(channels)

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.pool(self.stem(images))  # [B, 64, ceil(H/4), ceil(W/4)]
        outputs = []
        for block, factor in zip(self.blocks, self.subsamples):
            features = block(features)
            outputs.append(features)  # the block's end point, before its subsample
            features = subsample(features, factor)
        return outputs

    def slim_variable_map(self, scope: str) -> dict[str, Target]:
        """TF1 variable names (``{scope}/conv1/weights``,
        ``{scope}/block1/unit_1/bottleneck_v1/conv1/BatchNorm/gamma``, ...) -> state_dict
        names relative to this module."""
        targets = self.stem.slim_variable_map(f"{scope}/conv1", "stem")
        for block_index, block in enumerate(self.blocks):
            targets.update(block_variable_map(block, f"{scope}/block{block_index + 1}",
                                              f"blocks.{block_index}"))
        return targets


def make_units(block: SlimBlock, plan: Sequence[UnitPlan], in_channels: int,
               hyperparams: ConvHyperparams) -> nn.Sequential:
    """One block's bottlenecks, strided and dilated as ``plan`` says."""
    units = []
    for unit in plan:
        units.append(Bottleneck(in_channels=in_channels, depth=4 * block.base_depth,
                                depth_bottleneck=block.base_depth, stride=unit.stride,
                                rate=unit.rate, hyperparams=hyperparams))
        in_channels = 4 * block.base_depth
    return nn.Sequential(*units)


def block_variable_map(block: nn.Module, scope: str, torch_prefix: str) -> dict[str, Target]:
    """A block built by :func:`make_units` -> ``{scope}/unit_{i}/bottleneck_v1/...`` names."""
    targets: dict[str, Target] = {}
    for index, unit in enumerate(block.children()):
        assert isinstance(unit, Bottleneck)
        targets.update(unit.slim_variable_map(f"{scope}/unit_{index + 1}",
                                              f"{torch_prefix}.{index}"))
    return targets


__all__ = ["DEFAULT_HYPERPARAMS", "RESNET_V1_SLIM_UNITS", "Bottleneck", "ResNetV1Slim",
           "SlimBlock", "SlimConv", "UnitPlan", "block_variable_map", "make_units", "plan_units",
           "resnet_v1_slim_blocks", "subsample"]
