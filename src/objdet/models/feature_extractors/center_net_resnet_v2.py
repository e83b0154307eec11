"""CenterNet's ResNet v2 extractors: ``resnet_v2_50``, ``resnet_v2_101``.

As the OD API's ``CenterNetResnetFeatureExtractor``: ``tf.keras.applications.ResNet{50,101}V2``
(pre-activation) up to ``conv5_block3_out`` (before its ``post_bn``, which is in the
checkpoint but unused), then three times: 3x3 'SAME' conv, batch norm, ReLU, 3x3 stride-2
'SAME' transposed conv, batch norm, ReLU, with 256, 128 and 64 filters (Keras default batch
norm: epsilon 1e-3). ``forward(preprocessed) -> [features [B, 64, H / 4, W / 4]]``.

The application's pre-activation blocks (Keras ``block2``): batch norm + ReLU of the input
(``preact``), then 1x1 conv (no bias), BN, ReLU, 1-pixel zero padding + 3x3 conv with the
stride (no bias), BN, ReLU, 1x1 conv (bias) to 4x the width; the shortcut is a 1x1 conv of
``preact`` in a stage's first block, else the input subsampled by the stride. Each stage
strides in its *last* block (conv2..conv4; conv5 not at all). Batch norm epsilon 1.001e-5.

Preprocessing (``tf.keras.applications.resnet_v2.preprocess_input``): ``x / 127.5 - 1``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.checkpoints.variable_map import (
    Target,
    batch_norm_targets,
    conv_targets,
    ignored_targets,
)

RESNET_V2_BLOCKS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_STAGE_WIDTHS = (64, 128, 256, 512)
_STAGE_STRIDES = (2, 2, 2, 1)
EPSILON = 1.001e-5
KERAS_DEFAULT_EPSILON = 1e-3


def _norm(channels: int, epsilon: float = EPSILON) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=epsilon, momentum=0.01)


class PreactBottleneck(nn.Module):
    """Keras applications ``block2``: ``[B, C_in, H, W] -> [B, 4 * width, H / s, W / s]``."""

    def __init__(self, in_channels: int, width: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.stride = stride
        self.preact = _norm(in_channels)
        self.shortcut = nn.Conv2d(in_channels, 4 * width, 1) if projection else None
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm1 = _norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.norm2 = _norm(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1)

    def forward(self, features: Tensor) -> Tensor:
        preact = F.relu(self.preact(features))
        if self.shortcut is not None:
            shortcut = self.shortcut(preact)
        else:  # MaxPooling2D(1, strides=stride): a subsampling
            shortcut = features[:, :, :: self.stride, :: self.stride]
        residual = F.relu(self.norm1(self.conv1(preact)))
        residual = F.relu(self.norm2(self.conv2(residual)))
        return shortcut + self.conv3(residual)

    def keras_layers(self) -> list[str]:
        """Weighted layers in Keras' topological order."""
        names = ["preact", "conv1", "norm1", "conv2", "norm2"]
        return [*names, "shortcut", "conv3"] if self.shortcut is not None else [*names, "conv3"]


class ApplicationResNetV2(nn.Module):
    """``ResNet{50,101}V2(include_top=False)`` up to ``conv5_block3_out``:
    ``forward(images) -> [B, 2048, H / 32, W / 32]``."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in RESNET_V2_BLOCKS:
            raise ValueError(f"ResNet v2 depth must be one of {sorted(RESNET_V2_BLOCKS)}, "
                             f"got {depth}")
        self.stem = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.pool = nn.MaxPool2d(3, 2)  # after a 1-pixel zero padding (not -inf: no ReLU before)
        blocks: list[nn.Module] = []
        channels = 64
        for num_blocks, width, stride in zip(RESNET_V2_BLOCKS[depth], _STAGE_WIDTHS,
                                             _STAGE_STRIDES):
            for block in range(num_blocks):
                blocks.append(PreactBottleneck(channels, width,
                                               stride if block == num_blocks - 1 else 1,
                                               block == 0))
                channels = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.post_norm_channels = channels

    def forward(self, images: Tensor) -> Tensor:
        features = self.pool(F.pad(self.stem(images), (1, 1, 1, 1)))
        return self.blocks(features)

    def tf2_variable_map(self) -> dict[str, Target]:
        """``layer_with_weights-N/...`` of the Keras model -> names relative to this module
        (``post_bn``, the last, is ``ignored``: the extractor taps before it)."""
        names = ["stem"]
        for index, block in enumerate(self.blocks):
            assert isinstance(block, PreactBottleneck)
            names.extend(f"blocks.{index}.{name}" for name in block.keras_layers())
        targets: dict[str, Target] = {}
        for index, name in enumerate(names):
            prefix = f"layer_with_weights-{index}"
            if name.rsplit(".", 1)[-1].startswith(("preact", "norm")):
                targets.update(batch_norm_targets(prefix, name))
            else:
                targets.update(conv_targets(prefix, name, bias=name.endswith(
                    ("stem", "shortcut", "conv3"))))
        targets.update(ignored_targets(f"layer_with_weights-{len(names)}"))  # post_bn
        return targets


class TransposedConvSame(nn.ConvTranspose2d):
    """Keras ``Conv2DTranspose(kernel 3, stride 2, padding='same')``: ``[B, C, h, w] ->
    [B, C', 2h, 2w]``; TF keeps the first ``2h`` rows of the full ``2h + 1`` (PyTorch's
    ``padding=1, output_padding=1`` would keep the last)."""

    def forward(self, features: Tensor, output_size: list[int] | None = None) -> Tensor:
        full = super().forward(features)  # [B, C', 2h + 1, 2w + 1]
        return full[:, :, : 2 * features.shape[2], : 2 * features.shape[3]]


class CenterNetResNetV2(nn.Module):
    """The extractor (module docstring). ``out_stride`` 4, one feature output."""

    out_stride = 4
    num_feature_outputs = 1

    def __init__(self, *, depth: int) -> None:
        super().__init__()
        self.classification_backbone = ApplicationResNetV2(depth)
        layers: list[nn.Module] = []
        channels = 2048
        for filters in (256, 128, 64):
            layers += [nn.Conv2d(channels, filters, 3, padding=1),
                       _norm(filters, KERAS_DEFAULT_EPSILON), nn.ReLU(),
                       TransposedConvSame(filters, filters, 3, stride=2),
                       _norm(filters, KERAS_DEFAULT_EPSILON), nn.ReLU()]
            channels = filters
        self.upsampling = nn.Sequential(*layers)
        self.out_channels = [64]

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """0..255 (after channel means/stds) -> [-1, 1]."""
        return images / 127.5 - 1.0

    def forward(self, images: Tensor) -> list[Tensor]:
        return [self.upsampling(self.classification_backbone(images))]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``: the ResNet under ``_base_model/``,
        the upsampling layers under ``_feature_extractor_model/layer_with_weights-1..12``."""
        targets = {f"_base_model/{key}": Target(f"classification_backbone.{target.name}",
                                                target.layout)
                   for key, target in self.classification_backbone.tf2_variable_map().items()}
        weighted = [str(index) for index, layer in enumerate(self.upsampling)
                    if not isinstance(layer, nn.ReLU)]
        for offset, index in enumerate(weighted, start=1):
            prefix = f"_feature_extractor_model/layer_with_weights-{offset}"
            name = f"upsampling.{index}"
            targets.update(batch_norm_targets(prefix, name)
                           if isinstance(self.upsampling[int(index)], nn.BatchNorm2d)
                           else conv_targets(prefix, name))
        return targets


__all__ = ["ApplicationResNetV2", "CenterNetResNetV2", "PreactBottleneck", "TransposedConvSame"]
