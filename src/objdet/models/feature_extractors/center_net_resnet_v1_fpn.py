"""CenterNet's ResNet v1 FPN extractors: ``resnet_v1_50_fpn``, ``resnet_v1_101_fpn``.

As the OD API's ``CenterNetResnetV1FpnFeatureExtractor``. Its base is
``tf.keras.applications.ResNet{50,101}`` itself -- not the OD API's ``keras_models.resnet_v1``
that :mod:`objdet.models.backbones.resnet_v1` mirrors -- so the structure differs from SSD's:

- every conv has a bias; batch norm epsilon 1.001e-5 (Keras momentum 0.99), ReLU;
- stem: 3-pixel zero padding, 7x7 stride-2 'VALID' conv, batch norm, ReLU, 1-pixel zero
  padding, 3x3 stride-2 'VALID' max-pool (symmetric, unlike TF 'SAME'; after a ReLU zero
  padding never wins the max, so it is PyTorch's ``MaxPool2d(3, 2, padding=1)``);
- bottlenecks (Keras ``block1``): 1x1 conv with the stride, 3x3 'SAME' (stride 1), 1x1 to 4x
  the width; the first block of each stage has a 1x1 projection shortcut.

The top-down pathway (its own, not SSD's FPN): ``C5 -> 1x1 conv (256)``; then for
``(C4, 256 -> 128), (C3, 128 -> 64), (C2, 64 -> 64)``: nearest 2x upsampling + a 1x1 conv of
the stage output, a 3x3 'SAME' conv to the next width, batch norm (Keras defaults: epsilon
1e-3), ReLU. ``forward(preprocessed [B, 3, H, W]) -> [features [B, 64, H / 4, W / 4]]``.

Preprocessing (``tf.keras.applications.resnet.preprocess_input``, 'caffe' mode) after the
meta-architecture's ``(x - channel_means) / channel_stds``: RGB -> BGR, minus the ImageNet
BGR means, on the 0..255 scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets

# blocks per stage conv2..conv5
RESNET_BLOCKS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_STAGE_WIDTHS = (64, 128, 256, 512)
KERAS_APPLICATION_EPSILON = 1.001e-5
KERAS_DEFAULT_EPSILON = 1e-3
# tf.keras.applications caffe preprocessing: BGR means on 0..255.
CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)
OUT_CHANNELS = 64
OUT_STRIDE = 4


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int, stride: int
               ) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=(kernel_size - 1) // 2)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels, eps=KERAS_APPLICATION_EPSILON,
                                              momentum=0.01))


class ApplicationBottleneck(nn.Module):
    """Keras applications ``block1``: ``[B, C_in, H, W] -> [B, 4 * width, H / s, W / s]``."""

    def __init__(self, in_channels: int, width: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.shortcut = _conv_norm(in_channels, 4 * width, 1, stride) if projection else None
        self.conv1 = _conv_norm(in_channels, width, 1, stride)
        self.conv2 = _conv_norm(width, width, 3, 1)
        self.conv3 = _conv_norm(width, 4 * width, 1, 1)

    def forward(self, features: Tensor) -> Tensor:
        shortcut = features if self.shortcut is None else self.shortcut(features)
        residual = F.relu(self.conv1(features))
        residual = F.relu(self.conv2(residual))
        return F.relu(shortcut + self.conv3(residual))

    def keras_layers(self) -> list[str]:
        """Weighted layers in Keras' topological order (as the OD API's resnet_v1 map)."""
        names = ["conv1.0", "conv1.1", "conv2.0", "conv2.1"]
        if self.shortcut is not None:
            return [*names, "shortcut.0", "conv3.0", "shortcut.1", "conv3.1"]
        return [*names, "conv3.0", "conv3.1"]


class ApplicationResNet(nn.Module):
    """``tf.keras.applications.ResNet{50,101}(include_top=False)``:
    ``forward(images) -> [C2, C3, C4, C5]`` (strides 4..32, 256..2048 channels)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in RESNET_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_BLOCKS)}, got {depth}")
        self.stem = _conv_norm(3, 64, 7, 2)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.stages = nn.ModuleList()
        channels = 64
        for stage, (num_blocks, width) in enumerate(zip(RESNET_BLOCKS[depth], _STAGE_WIDTHS)):
            blocks = [ApplicationBottleneck(channels if block == 0 else 4 * width, width,
                                            2 if block == 0 and stage > 0 else 1, block == 0)
                      for block in range(num_blocks)]
            self.stages.append(nn.Sequential(*blocks))
            channels = 4 * width
        self.out_channels = [4 * width for width in _STAGE_WIDTHS]

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.pool(F.relu(self.stem(images)))  # [B, 64, H / 4, W / 4]
        outputs = []
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        return outputs

    def tf2_variable_map(self) -> dict[str, Target]:
        """``layer_with_weights-N/...`` of the Keras model -> names relative to this module."""
        names = ["stem.0", "stem.1"]
        for stage_index, stage in enumerate(self.stages):
            assert isinstance(stage, nn.Sequential)
            for block_index, block in enumerate(stage):
                assert isinstance(block, ApplicationBottleneck)
                names.extend(f"stages.{stage_index}.{block_index}.{name}"
                             for name in block.keras_layers())
        targets: dict[str, Target] = {}
        for index, name in enumerate(names):
            prefix = f"layer_with_weights-{index}"
            targets.update(conv_targets(prefix, name) if name.endswith(".0")
                           else batch_norm_targets(prefix, name))
        return targets


class CenterNetResNetV1Fpn(nn.Module):
    """The extractor (module docstring). ``out_stride`` 4, one feature output."""

    out_stride = OUT_STRIDE
    num_feature_outputs = 1

    def __init__(self, *, depth: int) -> None:
        super().__init__()
        self.classification_backbone = ApplicationResNet(depth)
        self.top = nn.Conv2d(2048, 256, 1)
        widths = (256, 128, 64)  # lateral widths for C4, C3, C2
        next_widths = (128, 64, 64)
        self.laterals = nn.ModuleList(nn.Conv2d(in_channels, width, 1) for in_channels, width
                                      in zip((1024, 512, 256), widths))
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, next_width, 3, padding=1),
                          nn.BatchNorm2d(next_width, eps=KERAS_DEFAULT_EPSILON, momentum=0.01),
                          nn.ReLU())
            for width, next_width in zip(widths, next_widths))
        self.out_channels = [OUT_CHANNELS]

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB on 0..255 (after channel means/stds) -> BGR minus means."""
        means = torch.tensor(CAFFE_BGR_MEANS, dtype=images.dtype, device=images.device)
        return images.flip(1) - means.view(1, 3, 1, 1)

    def forward(self, images: Tensor) -> list[Tensor]:
        stages = self.classification_backbone(images)  # [C2, C3, C4, C5]
        top_down = self.top(stages[3])  # [B, 256, H / 32, W / 32]
        for level, lateral, smooth in zip((2, 1, 0), self.laterals, self.smooth):
            top_down = F.interpolate(top_down, scale_factor=2.0, mode="nearest")
            top_down = smooth(top_down + lateral(stages[level]))
        return [top_down]  # [B, 64, H / 4, W / 4]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``: the ResNet under ``_base_model/``,
        the top-down layers under ``_feature_extractor_model/`` (whose ``layer_with_weights-0``
        is the ResNet itself)."""
        targets = {f"_base_model/{key}": Target(f"classification_backbone.{target.name}",
                                                target.layout)
                   for key, target in self.classification_backbone.tf2_variable_map().items()}
        # Keras order of the top-down layers: top conv, then per level the lateral conv,
        # the 3x3 conv and its batch norm.
        names = ["top"]
        for index in range(3):
            names += [f"laterals.{index}", f"smooth.{index}.0", f"smooth.{index}.1"]
        for offset, name in enumerate(names, start=1):
            prefix = f"_feature_extractor_model/layer_with_weights-{offset}"
            is_norm = name.startswith("smooth") and name.endswith(".1")
            targets.update(batch_norm_targets(prefix, name) if is_norm
                           else conv_targets(prefix, name))
        return targets


def build_center_net_resnet_v1_50_fpn() -> CenterNetResNetV1Fpn:
    return CenterNetResNetV1Fpn(depth=50)


def build_center_net_resnet_v1_101_fpn() -> CenterNetResNetV1Fpn:
    return CenterNetResNetV1Fpn(depth=101)


__all__ = [
    "ApplicationResNet",
    "CenterNetResNetV1Fpn",
    "build_center_net_resnet_v1_50_fpn",
    "build_center_net_resnet_v1_101_fpn",
]
