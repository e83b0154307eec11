"""ResNet v1 50/101/152 as the OD API's ``keras_models/resnet_v1.py`` builds it.

That module hands ``tf.keras.applications.resnet.ResNet{50,101,152}`` a ``_LayersOverride``:

- stem: 7x7 stride-2 conv after ``fixed_padding`` (3 pixels each side; the application's own
  ``ZeroPadding2D`` layers become no-ops), batch norm, activation, then a 3x3 stride-2
  max-pool with TF 'SAME' padding (not the application's zero-padded 'VALID' pool);
- bottleneck blocks (Keras ``block1``): 1x1 conv **with the stride** -> 3x3 conv (stride 1,
  'SAME') -> 1x1 conv to 4x the width; the first block of each stage has a projection
  shortcut (1x1 conv with the stride + batch norm); add, then the activation;
- no conv has a bias; every conv has ``max(int(filters * depth_multiplier), min_depth)``
  filters;
- batch norm: epsilon 1e-5, decay 0.997, with gamma, and ReLU -- or, with
  ``override_base_feature_extractor_hyperparams``, the extractor's ``conv_hyperparams``
  batch norm and activation (the TF2 zoo configs: epsilon 1e-3, decay 0.997, ReLU6).

``forward(images) -> [C2, C3, C4, C5]``: the stage outputs (``conv{2..5}_block{N}_out``),
strides 4, 8, 16, 32.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import MaxPool2dSame

# Blocks per stage (conv2..conv5) of each depth.
RESNET_V1_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_STAGE_FILTERS = (64, 128, 256, 512)
_STEM_FILTERS = 64

# _LayersOverride without conv_hyperparams: FreezableBatchNorm(epsilon=1e-5, momentum=0.997,
# scale=True), ReLU, Keras l2(0.0001) (= slim L2 weight 0.0002: Keras l2 has no 1/2).
DEFAULT_HYPERPARAMS = ConvHyperparams(
    activation="RELU",
    batch_norm=BatchNormParams(momentum=1.0 - 0.997, epsilon=1e-5, scale=True, center=True),
    weight_decay=0.0002,
)


class _ConvNorm(nn.Sequential):
    """A bias-free conv and its batch norm (identity without batch norm)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 hyperparams: ConvHyperparams) -> None:
        # 7x7/s2 (fixed_padding 3) and 3x3/s1 ('SAME') both pad (k - 1) / 2 on each side;
        # 1x1/s2 'SAME' pads nothing.
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(kernel_size - 1) // 2, bias=False)
        initialize_weight(conv.weight, hyperparams.initializer)
        norm = (make_batch_norm(out_channels, hyperparams.batch_norm)
                if hyperparams.batch_norm is not None else nn.Identity())
        super().__init__(conv, norm)


class Bottleneck(nn.Module):
    """Keras ``block1``: ``[B, C_in, H, W] -> [B, 4 * width, H / stride, W / stride]``."""

    def __init__(self, *, in_channels: int, width: int, out_channels: int, stride: int,
                 projection_shortcut: bool, hyperparams: ConvHyperparams) -> None:
        super().__init__()
        self.shortcut = (_ConvNorm(in_channels, out_channels, 1, stride, hyperparams)
                         if projection_shortcut else None)
        self.conv1 = _ConvNorm(in_channels, width, 1, stride, hyperparams)
        self.conv2 = _ConvNorm(width, width, 3, 1, hyperparams)
        self.conv3 = _ConvNorm(width, out_channels, 1, 1, hyperparams)
        self.activation = make_activation(hyperparams.activation)

    def forward(self, features: Tensor) -> Tensor:
        shortcut = features if self.shortcut is None else self.shortcut(features)
        residual = self.activation(self.conv1(features))
        residual = self.activation(self.conv2(residual))
        return self.activation(self.conv3(residual) + shortcut)

    def keras_layers(self) -> list[str]:
        """This block's weighted layers in Keras' (topological) layer order, as module names."""
        names = ["conv1.0", "conv1.1", "conv2.0", "conv2.1"]
        if self.shortcut is not None:
            return [*names, "shortcut.0", "conv3.0", "shortcut.1", "conv3.1"]
        return [*names, "conv3.0", "conv3.1"]


class ResNetV1(nn.Module):
    """The ResNet v1 base (no classifier). ``forward(images [B, 3, H, W]) -> [C2, C3, C4, C5]``.

    ``out_channels`` lists the channels of the four stage outputs.
    """

    def __init__(self, *, depth: int, depth_multiplier: float = 1.0, min_depth: int = 8,
                 hyperparams: ConvHyperparams = DEFAULT_HYPERPARAMS) -> None:
        super().__init__()
        if depth not in RESNET_V1_BLOCKS:
            raise ValueError(f"ResNet v1 depth must be one of {sorted(RESNET_V1_BLOCKS)}, "
                             f"got {depth}")
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self._batch_norm = hyperparams.batch_norm

        def filters(count: int) -> int:
            return max(int(count * depth_multiplier), min_depth)

        channels = filters(_STEM_FILTERS)
        self.stem = _ConvNorm(3, channels, 7, 2, hyperparams)
        self.stem_activation = make_activation(hyperparams.activation)
        self.pool = MaxPool2dSame(3, 2)
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        for stage, (num_blocks, width) in enumerate(zip(RESNET_V1_BLOCKS[depth], _STAGE_FILTERS)):
            blocks = []
            for block in range(num_blocks):
                out_channels = filters(4 * width)
                blocks.append(Bottleneck(
                    in_channels=channels, width=filters(width), out_channels=out_channels,
                    stride=2 if block == 0 and stage > 0 else 1,
                    projection_shortcut=block == 0, hyperparams=hyperparams,
                ))
                channels = out_channels
            self.stages.append(nn.Sequential(*blocks))
            self.out_channels.append(channels)

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.pool(self.stem_activation(self.stem(images)))  # [B, 64, H/4, W/4]
        outputs = []
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        return outputs

    def tf2_variable_map(self) -> dict[str, Target]:
        """``layer_with_weights-N/...`` (keys relative to the Keras functional model, e.g. an
        extractor's ``classification_backbone/``) -> state_dict names relative to this module.

        N counts the model's weighted layers in Keras' topological order: stem conv and
        norm, then per block conv1, norm1, conv2, norm2, [shortcut conv,] conv3,
        [shortcut norm,] norm3.
        """
        names = ["stem.0", "stem.1"]
        for stage_index, stage in enumerate(self.stages):
            assert isinstance(stage, nn.Sequential)
            for block_index, block in enumerate(stage):
                assert isinstance(block, Bottleneck)
                prefix = f"stages.{stage_index}.{block_index}"
                names.extend(f"{prefix}.{name}" for name in block.keras_layers())
        if self._batch_norm is None:  # norms are identities: only the convs are layers
            names = [name for name in names if name.endswith(".0")]
        targets: dict[str, Target] = {}
        for index, name in enumerate(names):
            tf_prefix = f"layer_with_weights-{index}"
            if name.endswith(".0"):
                targets.update(conv_targets(tf_prefix, name, bias=False))
            else:
                assert self._batch_norm is not None
                norm = batch_norm_targets(tf_prefix, name)
                targets.update(drop_absent_batch_norm_variables(norm, self._batch_norm))
        return targets


__all__ = ["DEFAULT_HYPERPARAMS", "RESNET_V1_BLOCKS", "Bottleneck", "ResNetV1"]
