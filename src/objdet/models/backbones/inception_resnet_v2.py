"""Inception-ResNet v2 (Szegedy et al. 2016) as the OD API's Faster R-CNN extractors build it.

Mirrors ``object_detection/models/keras_models/inception_resnet_v2.py`` (the Keras
``InceptionResNetV2`` application through a ``_LayersOverride``) with
``align_feature_maps=True``, and the slim ``nets/inception_resnet_v2.py`` base with
``align_feature_maps=True`` that ``faster_rcnn_inception_resnet_v2_feature_extractor.py``
uses; the two build the same layers with the same weights:

- every conv is ``conv2d_bn``: a bias-free conv, batch norm without gamma (``scale=False``;
  epsilon 1e-3, decay 0.9997) and ReLU; every 'VALID' padding of the application becomes TF
  'SAME' (``align_feature_maps``), so each stride-2 layer halves the size rounding up;
- stem (Conv2d_1a .. MaxPool_5a), Mixed_5b (its pooling branch a 3x3 average excluding the
  padding), 10 x block35 (scale 0.17), Mixed_6a, 20 x block17 (scale 0.1) -> the first stage's
  ``block17_20_ac`` / ``PreAuxLogits``: ``[B, 1088, ceil(H/16), ceil(W/16)]``;
- the residual blocks add ``scale * up`` (``up``: a 1x1 conv *with* bias, no norm) to their
  input, then ReLU;
- Mixed_7a, 9 x block8 (scale 0.2), block8 (scale 1, no ReLU), Conv2d_7b_1x1 -> 1536 channels.

``output_stride=8`` (atrous, both OD API versions): Mixed_6a's stride-2 convs and max pool
take stride 1 and block17's convs dilation 2, so the first stage has stride 8.

Where they differ, ``second_stage_padding`` says which: the Keras model pads Mixed_7a's
stride-2 convs and pool 'SAME' (17x17 crops -> 9x9), the slim extractor's second stage pads
them 'VALID' (-> 8x8). (The Keras model at ``output_stride=8`` also gives Mixed_7a's 384-filter
conv and pool stride 1, so its second stage fails on any crop over 1x1; the extractor
refuses that setting.)

Weights: ``tf2_variable_map`` gives the keys ``layer_with_weights-N/...`` of the whole Keras
model (N in Keras' layer order, :meth:`InceptionResNetV2.keras_layer_order`);
``slim_variable_map`` the TF1 names (``.../Repeat_1/block17_3/Branch_1/Conv2d_0b_1x7/weights``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.hyperparams import BatchNormParams, make_batch_norm
from objdet.models.layers.padding import Conv2dSame, MaxPool2dSame

Padding = Literal["same", "valid"]

# _LayersOverride / inception_resnet_v2_arg_scope: FreezableBatchNorm(scale=False,
# epsilon=1e-3, momentum=0.9997) (PyTorch's momentum is 1 - the decay).
DEFAULT_BATCH_NORM = BatchNormParams(momentum=1.0 - 0.9997, epsilon=1e-3, scale=False,
                                     center=True)
FIRST_STAGE_CHANNELS = 1088
SECOND_STAGE_CHANNELS = 1536
OUTPUT_STRIDES = (8, 16)


class ConvUnit(nn.Sequential):
    """Keras ``conv2d_bn`` / slim ``conv2d``: ``Sequential(conv, batch_norm, ReLU)``.

    ``slim_name``: its slim scope within its block (``Branch_1/Conv2d_0b_3x3``)."""

    def __init__(self, slim_name: str, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], *, batch_norm: BatchNormParams,
                 stride: int = 1, dilation: int = 1, padding: Padding = "same") -> None:
        conv: nn.Conv2d
        if padding == "same":
            conv = Conv2dSame(in_channels, out_channels, kernel_size, stride=stride,
                              dilation=dilation, bias=False)
        else:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                             dilation=dilation, bias=False)
        nn.init.xavier_uniform_(conv.weight)  # Keras' (and slim's) glorot_uniform default
        super().__init__(conv, make_batch_norm(out_channels, batch_norm), nn.ReLU(inplace=True))
        self.slim_name = slim_name


class InceptionBranches(nn.Module):
    """Parallel branches concatenated on channels (a ``Mixed_*`` layer, or the ``mixed``
    part of a residual block): ``[B, C_in, H, W] -> [B, sum(branch channels), H', W']``."""

    def __init__(self, branches: list[nn.Sequential]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, features: Tensor) -> Tensor:
        return torch.cat([branch(features) for branch in self.branches], dim=1)

    def keras_layers(self) -> list[str]:
        """The weighted layers in Keras' order, as module names relative to this module.

        Keras orders a functional model's layers by depth (longest path to the output),
        ties in traversal order (branch order): so the convs ``d`` units before the concat,
        branch by branch, then their batch norms, for ``d`` from the longest branch down."""
        units = [[name for name, _ in branch] for branch in self._branch_units()]
        names: list[str] = []
        for distance in range(max(len(branch) for branch in units), 0, -1):
            level = [branch[-distance] for branch in units if len(branch) >= distance]
            names += [f"{unit}.0" for unit in level] + [f"{unit}.1" for unit in level]
        return names

    def slim_units(self) -> list[tuple[str, str]]:
        """(module name relative to this module, slim scope within the block) per conv."""
        return [(name, unit.slim_name) for branch in self._branch_units() for name, unit in branch]

    def _branch_units(self) -> list[list[tuple[str, ConvUnit]]]:
        """Per branch, its conv units and their module names relative to this module."""
        units: list[list[tuple[str, ConvUnit]]] = []
        for index, branch in enumerate(self.branches):
            assert isinstance(branch, nn.Sequential)
            units.append([(f"branches.{index}.{position}", module)
                          for position, module in enumerate(branch)
                          if isinstance(module, ConvUnit)])
        return units


class InceptionResnetBlock(nn.Module):
    """block35 / block17 / block8: ``relu(x + scale * up(concat(branches(x))))`` (no ReLU on
    the last block8). ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, branches: list[nn.Sequential], *, channels: int, mixed_channels: int,
                 scale: float, activation: bool = True) -> None:
        super().__init__()
        self.mixed = InceptionBranches(branches)
        up = nn.Conv2d(mixed_channels, channels, 1, bias=True)  # ``<block>_conv``
        nn.init.xavier_uniform_(up.weight)
        assert up.bias is not None
        nn.init.zeros_(up.bias)
        self.up = up
        self.scale = scale
        self.activation = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, features: Tensor) -> Tensor:
        return self.activation(features + self.up(self.mixed(features)) * self.scale)

    def keras_layers(self) -> list[str]:
        return [f"mixed.{name}" for name in self.mixed.keras_layers()] + ["up"]

    def slim_units(self) -> list[tuple[str, str]]:
        return [(f"mixed.{name}", scope) for name, scope in self.mixed.slim_units()] + [
            ("up", "Conv2d_1x1")]


def build_stem(bn: BatchNormParams) -> nn.Sequential:
    """Conv2d_1a_3x3 .. MaxPool_5a_3x3: ``[B, 3, H, W] -> [B, 192, ceil(H/8), ceil(W/8)]``."""
    return nn.Sequential(
        ConvUnit("Conv2d_1a_3x3", 3, 32, 3, stride=2, batch_norm=bn),
        ConvUnit("Conv2d_2a_3x3", 32, 32, 3, batch_norm=bn),
        ConvUnit("Conv2d_2b_3x3", 32, 64, 3, batch_norm=bn),
        MaxPool2dSame(3, 2),  # MaxPool_3a_3x3
        ConvUnit("Conv2d_3b_1x1", 64, 80, 1, batch_norm=bn),
        ConvUnit("Conv2d_4a_3x3", 80, 192, 3, batch_norm=bn),
        MaxPool2dSame(3, 2),  # MaxPool_5a_3x3
    )


def build_mixed_5b(bn: BatchNormParams) -> InceptionBranches:
    """``[B, 192, H, W] -> [B, 320, H, W]``."""
    average = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)  # TF 'SAME'
    return InceptionBranches([
        nn.Sequential(ConvUnit("Branch_0/Conv2d_1x1", 192, 96, 1, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_1/Conv2d_0a_1x1", 192, 48, 1, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0b_5x5", 48, 64, 5, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_2/Conv2d_0a_1x1", 192, 64, 1, batch_norm=bn),
                      ConvUnit("Branch_2/Conv2d_0b_3x3", 64, 96, 3, batch_norm=bn),
                      ConvUnit("Branch_2/Conv2d_0c_3x3", 96, 96, 3, batch_norm=bn)),
        nn.Sequential(average, ConvUnit("Branch_3/Conv2d_0b_1x1", 192, 64, 1, batch_norm=bn)),
    ])


def build_block35(bn: BatchNormParams) -> InceptionResnetBlock:
    return InceptionResnetBlock([
        nn.Sequential(ConvUnit("Branch_0/Conv2d_1x1", 320, 32, 1, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_1/Conv2d_0a_1x1", 320, 32, 1, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0b_3x3", 32, 32, 3, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_2/Conv2d_0a_1x1", 320, 32, 1, batch_norm=bn),
                      ConvUnit("Branch_2/Conv2d_0b_3x3", 32, 48, 3, batch_norm=bn),
                      ConvUnit("Branch_2/Conv2d_0c_3x3", 48, 64, 3, batch_norm=bn)),
    ], channels=320, mixed_channels=128, scale=0.17)


def build_mixed_6a(bn: BatchNormParams, stride: int) -> InceptionBranches:
    """``[B, 320, H, W] -> [B, 1088, H / stride, W / stride]`` (stride 1 when atrous)."""
    return InceptionBranches([
        nn.Sequential(ConvUnit("Branch_0/Conv2d_1a_3x3", 320, 384, 3, stride=stride,
                               batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_1/Conv2d_0a_1x1", 320, 256, 1, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0b_3x3", 256, 256, 3, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_1a_3x3", 256, 384, 3, stride=stride,
                               batch_norm=bn)),
        nn.Sequential(MaxPool2dSame(3, stride)),  # Branch_2/MaxPool_1a_3x3
    ])


def build_block17(bn: BatchNormParams, dilation: int) -> InceptionResnetBlock:
    return InceptionResnetBlock([
        nn.Sequential(ConvUnit("Branch_0/Conv2d_1x1", 1088, 192, 1, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_1/Conv2d_0a_1x1", 1088, 128, 1, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0b_1x7", 128, 160, (1, 7), dilation=dilation,
                               batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0c_7x1", 160, 192, (7, 1), dilation=dilation,
                               batch_norm=bn)),
    ], channels=1088, mixed_channels=384, scale=0.1)


def build_mixed_7a(bn: BatchNormParams, padding: Padding) -> InceptionBranches:
    """``[B, 1088, h, w] -> [B, 2080, h', w']``: ``h' = ceil(h / 2)`` ('SAME') or
    ``floor((h - 1) / 2)`` ('VALID')."""
    pool: nn.Module = MaxPool2dSame(3, 2) if padding == "same" else nn.MaxPool2d(3, 2)
    return InceptionBranches([
        nn.Sequential(ConvUnit("Branch_0/Conv2d_0a_1x1", 1088, 256, 1, batch_norm=bn),
                      ConvUnit("Branch_0/Conv2d_1a_3x3", 256, 384, 3, stride=2,
                               padding=padding, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_1/Conv2d_0a_1x1", 1088, 256, 1, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_1a_3x3", 256, 288, 3, stride=2,
                               padding=padding, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_2/Conv2d_0a_1x1", 1088, 256, 1, batch_norm=bn),
                      ConvUnit("Branch_2/Conv2d_0b_3x3", 256, 288, 3, batch_norm=bn),
                      ConvUnit("Branch_2/Conv2d_1a_3x3", 288, 320, 3, stride=2,
                               padding=padding, batch_norm=bn)),
        nn.Sequential(pool),  # Branch_3/MaxPool_1a_3x3
    ])


def build_block8(bn: BatchNormParams, scale: float, activation: bool) -> InceptionResnetBlock:
    return InceptionResnetBlock([
        nn.Sequential(ConvUnit("Branch_0/Conv2d_1x1", 2080, 192, 1, batch_norm=bn)),
        nn.Sequential(ConvUnit("Branch_1/Conv2d_0a_1x1", 2080, 192, 1, batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0b_1x3", 192, 224, (1, 3), batch_norm=bn),
                      ConvUnit("Branch_1/Conv2d_0c_3x1", 224, 256, (3, 1), batch_norm=bn)),
    ], channels=2080, mixed_channels=448, scale=scale, activation=activation)


class InceptionResNetV2(nn.Module):
    """The backbone, in the two parts Faster R-CNN runs (no classifier head).

    ``first_stage(images [B, 3, H, W]) -> [B, 1088, H/s, W/s]`` (``s = output_stride``,
    sizes rounded up); ``second_stage(features [N, 1088, h, w]) -> [N, 1536, h', w']``.
    """

    def __init__(self, *, output_stride: int = 16, second_stage_padding: Padding = "same",
                 batch_norm: BatchNormParams = DEFAULT_BATCH_NORM) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if second_stage_padding not in ("same", "valid"):
            raise ValueError(f"second_stage_padding must be 'same' or 'valid', "
                             f"got {second_stage_padding!r}")
        atrous = output_stride == 8
        bn = batch_norm
        self.batch_norm = batch_norm
        self.output_stride = output_stride
        self.stem = build_stem(bn)  # [B, 3, H, W] -> [B, 192, H/8, W/8]
        self.mixed_5b = build_mixed_5b(bn)  # -> [B, 320, H/8, W/8]
        self.block35 = nn.Sequential(*(build_block35(bn) for _ in range(10)))
        self.mixed_6a = build_mixed_6a(bn, stride=1 if atrous else 2)  # -> [B, 1088, H/s, W/s]
        self.block17 = nn.Sequential(*(build_block17(bn, dilation=2 if atrous else 1)
                                       for _ in range(20)))
        self.mixed_7a = build_mixed_7a(bn, second_stage_padding)  # -> [N, 2080, h', w']
        self.block8 = nn.Sequential(*(build_block8(bn, scale=0.2, activation=True) for _ in range(9)),
                                    build_block8(bn, scale=1.0, activation=False))
        self.conv_7b = ConvUnit("Conv2d_7b_1x1", 2080, SECOND_STAGE_CHANNELS, 1, batch_norm=bn)

    def first_stage(self, images: Tensor) -> Tensor:
        features = self.mixed_5b(self.stem(images))
        return self.block17(self.mixed_6a(self.block35(features)))  # block17_20_ac

    def second_stage(self, features: Tensor) -> Tensor:
        return self.conv_7b(self.block8(self.mixed_7a(features)))  # conv_7b_ac

    def forward(self, images: Tensor) -> Tensor:
        return self.second_stage(self.first_stage(images))

    def keras_layer_order(self) -> tuple[list[str], list[str]]:
        """The weighted layers of the Keras model in its layer order, as module names:
        (first stage: stem .. block17_20, second stage: Mixed_7a .. conv_7b)."""
        first = [f"stem.{index}.{part}" for index, module in enumerate(self.stem)
                 if isinstance(module, ConvUnit) for part in (0, 1)]
        first += _prefixed("mixed_5b", self.mixed_5b)
        first += _repeated("block35", self.block35)
        first += _prefixed("mixed_6a", self.mixed_6a)
        first += _repeated("block17", self.block17)
        second = _prefixed("mixed_7a", self.mixed_7a) + _repeated("block8", self.block8)
        return first, [*second, "conv_7b.0", "conv_7b.1"]

    def tf2_variable_map(self) -> dict[str, Target]:
        """``layer_with_weights-N/...`` of the whole Keras model -> state_dict names relative
        to this module (convs: ``kernel`` [+ ``bias``]; norms: ``beta``, ``moving_mean``,
        ``moving_variance``, no ``gamma``)."""
        first, second = self.keras_layer_order()
        return layer_targets(first + second, self.batch_norm)

    def slim_variable_map(self, first_scope: str, second_scope: str) -> dict[str, Target]:
        """TF1 slim variable names -> state_dict names relative to this module: the first
        stage under ``first_scope`` (``.../InceptionResnetV2``: ``Conv2d_1a_3x3``, ``Mixed_5b``,
        ``Repeat/block35_{1..10}``, ``Mixed_6a``, ``Repeat_1/block17_{1..20}``), the second
        under ``second_scope`` (``Mixed_7a``, ``Repeat/block8_{1..9}``, ``Block8``,
        ``Conv2d_7b_1x1``), as the OD API's slim extractor creates them."""
        units = [(f"stem.{index}", f"{first_scope}/{module.slim_name}")
                 for index, module in enumerate(self.stem) if isinstance(module, ConvUnit)]
        units += _slim_scoped("mixed_5b", self.mixed_5b, f"{first_scope}/Mixed_5b")
        for index, block in enumerate(self.block35):
            units += _slim_scoped(f"block35.{index}", block,
                                  f"{first_scope}/Repeat/block35_{index + 1}")
        units += _slim_scoped("mixed_6a", self.mixed_6a, f"{first_scope}/Mixed_6a")
        for index, block in enumerate(self.block17):
            units += _slim_scoped(f"block17.{index}", block,
                                  f"{first_scope}/Repeat_1/block17_{index + 1}")
        units += _slim_scoped("mixed_7a", self.mixed_7a, f"{second_scope}/Mixed_7a")
        for index, block in enumerate(self.block8):
            scope = (f"{second_scope}/Repeat/block8_{index + 1}" if index < len(self.block8) - 1
                     else f"{second_scope}/Block8")  # the last block8 is called unscoped
            units += _slim_scoped(f"block8.{index}", block, scope)
        units.append(("conv_7b", f"{second_scope}/{self.conv_7b.slim_name}"))
        targets: dict[str, Target] = {}
        for name, scope in units:
            if name.endswith(".up"):
                targets[f"{scope}/weights"] = Target(f"{name}.weight", "conv")
                targets[f"{scope}/biases"] = Target(f"{name}.bias")
                continue
            targets[f"{scope}/weights"] = Target(f"{name}.0.weight", "conv")
            norm = {"beta": "bias", "moving_mean": "running_mean",
                    "moving_variance": "running_var"}
            if self.batch_norm.scale:
                norm["gamma"] = "weight"
            targets.update({f"{scope}/BatchNorm/{tf_name}": Target(f"{name}.1.{torch_name}")
                            for tf_name, torch_name in norm.items()})
        return targets


def _prefixed(prefix: str, block: nn.Module) -> list[str]:
    assert isinstance(block, (InceptionBranches, InceptionResnetBlock))
    return [f"{prefix}.{name}" for name in block.keras_layers()]


def _slim_scoped(prefix: str, block: nn.Module, scope: str) -> list[tuple[str, str]]:
    assert isinstance(block, (InceptionBranches, InceptionResnetBlock))
    return [(f"{prefix}.{name}", f"{scope}/{unit_scope}") for name, unit_scope in block.slim_units()]


def _repeated(prefix: str, blocks: nn.Sequential) -> list[str]:
    return [name for index, block in enumerate(blocks)
            for name in _prefixed(f"{prefix}.{index}", block)]


def layer_targets(names: list[str], batch_norm: BatchNormParams) -> dict[str, Target]:
    """``layer_with_weights-i`` -> module ``names[i]``: a conv (``*.0``, or a residual
    block's ``up`` with its bias) or a batch norm (``*.1``; Keras stores no ``gamma`` with
    ``scale=False``)."""
    targets: dict[str, Target] = {}
    for index, name in enumerate(names):
        tf_prefix = f"layer_with_weights-{index}"
        if name.endswith(".1"):
            norm = batch_norm_targets(tf_prefix, name)
            targets.update(drop_absent_batch_norm_variables(norm, batch_norm))
        else:
            targets.update(conv_targets(tf_prefix, name, bias=name.endswith(".up")))
    return targets


__all__ = ["DEFAULT_BATCH_NORM", "FIRST_STAGE_CHANNELS", "OUTPUT_STRIDES",
           "SECOND_STAGE_CHANNELS", "ConvUnit", "InceptionBranches", "InceptionResNetV2",
           "InceptionResnetBlock", "Padding", "build_block8", "build_block17", "build_block35",
           "build_mixed_5b", "build_mixed_6a", "build_mixed_7a", "build_stem", "layer_targets"]
