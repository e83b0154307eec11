"""CenterNet's hourglass extractors: ``hourglass_10/20/32/52/104``.

As the OD API's ``keras_models/hourglass_network.py`` (and ``CenterNetHourglassFeature
Extractor``, which adds no preprocessing of its own). Module and attribute names are the
Keras layers' own (``downsample_input``, ``hourglass_network/0/encoder_block1/0/conv_block``,
...), so the TF2 variable map is the module tree with ``/`` for ``.``.

- ``ConvolutionalBlock``: zero padding ``k // 2`` (k 3 or 7) + 'VALID' conv (no bias) with the
  stride (k 1: 'SAME', i.e. none), batch norm (epsilon 1e-5, Keras momentum 0.1), ReLU or not;
- ``ResidualBlock``: ConvolutionalBlock(k, stride), 3x3 'SAME' conv + BN, plus the input (or
  its 1x1 strided ``skip`` conv + BN), ReLU;
- ``EncoderDecoderBlock`` (recursive): ``encoder_block1`` (same size) + upsampled
  ``decoder_block(inner_block(encoder_block2(x)))`` (half size);
- the network: a 7x7 stride-2 input block + a stride-2 residual block (stride 4), then
  ``num_hourglasses`` hourglasses, each followed by a 3x3 ``output_conv``; between two, the
  input of the next is ``intermediate_residual(relu(intermediate_conv1(x) +
  intermediate_conv2(output)))``.

``forward(images) -> list`` of ``num_hourglasses`` feature maps ``[B, C, H / 4, W / 4]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # Keras momentum 0.1 keeps 10% of the old moving average: PyTorch momentum 0.9.
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


class ConvolutionalBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        if kernel_size not in (1, 3, 7):
            raise ValueError(f"hourglass conv kernel size must be 1, 3 or 7, got {kernel_size}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, bias=False)
        self.norm = _batch_norm(out_channels)
        self.relu = relu

    def forward(self, features: Tensor) -> Tensor:
        features = self.norm(self.conv(features))
        return F.relu(features) if self.relu else features


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, skip_conv: bool = False,
                 stride: int = 1) -> None:
        super().__init__()
        self.conv_block = ConvolutionalBlock(in_channels, out_channels, 3, stride)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm = _batch_norm(out_channels)
        self.skip = (ConvolutionalBlock(in_channels, out_channels, 1, stride, relu=False)
                     if skip_conv else None)

    def forward(self, features: Tensor) -> Tensor:
        residual = self.norm(self.conv(self.conv_block(features)))
        shortcut = features if self.skip is None else self.skip(features)
        return F.relu(residual + shortcut)


class InputDownsampleBlock(nn.Module):
    """7x7 stride-2 ConvolutionalBlock + stride-2 ResidualBlock with a skip conv."""

    def __init__(self, initial_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_block = ConvolutionalBlock(3, initial_channels, 7, 2)
        self.residual_block = ResidualBlock(initial_channels, out_channels, skip_conv=True,
                                            stride=2)

    def forward(self, images: Tensor) -> Tensor:
        return self.residual_block(self.conv_block(images))


def _repeated_residual_blocks(in_channels: int, out_channels: int, num_blocks: int, *,
                              initial_stride: int = 1, residual_channels: int | None = None,
                              initial_skip_conv: bool = False) -> nn.ModuleList:
    """The OD API's ``_make_repeated_residual_blocks``."""
    residual_channels = out_channels if residual_channels is None else residual_channels
    blocks = []
    channels = in_channels
    for index in range(num_blocks - 1):
        stride = initial_stride if index == 0 else 1
        skip_conv = stride > 1 or (index == 0 and initial_skip_conv)
        blocks.append(ResidualBlock(channels, residual_channels, skip_conv=skip_conv,
                                    stride=stride))
        channels = residual_channels
    if num_blocks == 1:
        stride, skip_conv = initial_stride, initial_stride > 1
    else:
        stride, skip_conv = 1, residual_channels != out_channels
    # Keras infers input channels; a 1-block stack with a channel change gets no skip conv in
    # the OD API either (its add would fail there, as it would here).
    blocks.append(ResidualBlock(channels, out_channels, skip_conv=skip_conv, stride=stride))
    return nn.ModuleList(blocks)


def _apply(blocks: nn.ModuleList, features: Tensor) -> Tensor:
    for block in blocks:
        features = block(features)
    return features


class EncoderDecoderBlock(nn.Module):
    def __init__(self, num_stages: int, channel_dims: list[int], blocks_per_stage: list[int],
                 ) -> None:
        super().__init__()
        out_channels, downsampled = channel_dims[0], channel_dims[1]
        self.encoder_block1 = _repeated_residual_blocks(out_channels, out_channels,
                                                        blocks_per_stage[0])
        self.encoder_block2 = _repeated_residual_blocks(
            out_channels, downsampled, blocks_per_stage[0], initial_stride=2,
            initial_skip_conv=out_channels != downsampled)
        if num_stages > 1:
            self.inner_block = nn.ModuleList([EncoderDecoderBlock(
                num_stages - 1, channel_dims[1:], blocks_per_stage[1:])])
        else:
            self.inner_block = _repeated_residual_blocks(downsampled, downsampled,
                                                         blocks_per_stage[1])
        self.decoder_block = _repeated_residual_blocks(
            downsampled, out_channels, blocks_per_stage[0], residual_channels=downsampled)

    def forward(self, features: Tensor) -> Tensor:
        encoded = _apply(self.encoder_block1, features)
        inner = _apply(self.inner_block, _apply(self.encoder_block2, features))
        decoded = _apply(self.decoder_block, inner)
        return encoded + F.interpolate(decoded, scale_factor=2.0, mode="nearest")


@dataclass(frozen=True)
class HourglassSpec:
    input_channels: int
    channel_dims: tuple[int, ...]
    blocks_per_stage: tuple[int, ...]
    num_hourglasses: int = 1


def _single(num_channels: int, multiples: tuple[int, ...], blocks: tuple[int, ...]
            ) -> HourglassSpec:
    return HourglassSpec(num_channels, tuple(num_channels * m for m in multiples), blocks)


# The OD API's center_net_hourglass_feature_extractor factories.
HOURGLASS_SPECS: dict[str, HourglassSpec] = {
    "hourglass_10": _single(32, (2, 2), (1, 1)),
    "hourglass_20": _single(48, (2, 2, 3), (1, 2, 2)),
    "hourglass_32": _single(48, (2, 2, 3, 3), (2, 2, 2, 2)),
    "hourglass_52": _single(64, (2, 2, 3, 3, 3, 4), (2, 2, 2, 2, 2, 4)),
    "hourglass_104": HourglassSpec(128, (256, 256, 384, 384, 384, 512), (2, 2, 2, 2, 2, 4),
                                   num_hourglasses=2),
}


class HourglassNetwork(nn.Module):
    """The network (module docstring); attribute names are the OD API's."""

    def __init__(self, spec: HourglassSpec) -> None:
        super().__init__()
        width = spec.channel_dims[0]
        num_stages = len(spec.channel_dims) - 1
        self.downsample_input = InputDownsampleBlock(spec.input_channels, width)
        self.hourglass_network = nn.ModuleList(
            EncoderDecoderBlock(num_stages, list(spec.channel_dims), list(spec.blocks_per_stage))
            for _ in range(spec.num_hourglasses))
        self.output_conv = nn.ModuleList(ConvolutionalBlock(width, width, 3)
                                         for _ in range(spec.num_hourglasses))
        between = spec.num_hourglasses - 1
        self.intermediate_conv1 = nn.ModuleList(ConvolutionalBlock(width, width, 1, relu=False)
                                                for _ in range(between))
        self.intermediate_conv2 = nn.ModuleList(ConvolutionalBlock(width, width, 1, relu=False)
                                                for _ in range(between))
        self.intermediate_residual = nn.ModuleList(ResidualBlock(width, width)
                                                   for _ in range(between))
        self.width = width

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.downsample_input(images)  # [B, width, H / 4, W / 4]
        outputs = []
        for index, (hourglass, output_conv) in enumerate(zip(self.hourglass_network,
                                                             self.output_conv)):
            output = output_conv(hourglass(features))
            outputs.append(output)
            if index < len(self.intermediate_residual):
                merged = F.relu(self.intermediate_conv1[index](features)
                                + self.intermediate_conv2[index](output))
                features = self.intermediate_residual[index](merged)
        return outputs


class CenterNetHourglass(nn.Module):
    """``hourglass_*``: ``forward(preprocessed) -> list`` of feature maps, stride 4."""

    out_stride = 4
    tf2_backbone_prefix = "_network/"  # what a classification checkpoint holds

    def __init__(self, spec: HourglassSpec) -> None:
        super().__init__()
        self._network = HourglassNetwork(spec)
        self.num_feature_outputs = spec.num_hourglasses
        self.out_channels = [self._network.width] * spec.num_hourglasses

    @property
    def classification_backbone(self) -> nn.Module:
        return self._network

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """No preprocessing beyond the config's channel means/stds."""
        return images

    def forward(self, images: Tensor) -> list[Tensor]:
        return self._network(images)

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``: the module tree under ``_network/``
        (module paths with ``/``)."""
        targets: dict[str, Target] = {}
        for name, module in self.named_modules():
            prefix = name.replace(".", "/")
            if isinstance(module, nn.Conv2d):
                targets.update(conv_targets(prefix, name, bias=False))
            elif isinstance(module, nn.BatchNorm2d):
                targets.update(batch_norm_targets(prefix, name))
        return targets


__all__ = ["HOURGLASS_SPECS", "CenterNetHourglass", "HourglassNetwork", "HourglassSpec"]
