"""CenterNet's ``mobilenet_v2_fpn`` (and ``mobilenet_v2_fpn_sep_conv``) extractor.

As the OD API's ``CenterNetMobileNetV2FPNFeatureExtractor``: the OD API's Keras MobileNet v2
(:mod:`objdet.models.backbones.keras_mobilenet_v2`; ``alpha`` = ``depth_multiplier``, no
``min_depth``, batch norm epsilon 1e-3, ReLU6) tapped at ``block_2_add``, ``block_5_add``,
``block_9_add`` and ``out_relu``; then ``out_relu -> 1x1 conv (64)`` and for
``(block_9, 64 -> 32), (block_5, 32 -> 24), (block_2, 24 -> 24)``: 2x upsampling
(``upsampling_interpolation``), + a 1x1 conv of the tap, a 3x3 'SAME' conv (separable with
``use_separable_conv``) to the next width, batch norm (Keras defaults), ReLU.
``forward(preprocessed [B, 3, H, W]) -> [features [B, 24, H / 4, W / 4]]``.

Preprocessing (``tf.keras.applications.mobilenet_v2.preprocess_input``): ``x / 127.5 - 1``.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.backbones.keras_conv_unit import DEFAULT_BASE_HYPERPARAMS
from objdet.models.backbones.keras_mobilenet_v2 import KerasMobileNetV2
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.layers.separable_conv import SeparableConv2d, separable_conv_targets

# The OD API's CenterNet has no regularization losses (``regularization_losses() -> []``), so
# the backbone's Keras L2 regularizers never reach the training loss: no weight decay.
BASE_HYPERPARAMS = dataclasses.replace(DEFAULT_BASE_HYPERPARAMS, weight_decay=0.0)
TAPS = ("block_2", "block_5", "block_9", "out_relu")
KERAS_DEFAULT_EPSILON = 1e-3
OUT_CHANNELS = 24


class CenterNetMobileNetV2Fpn(nn.Module):
    """The extractor (module docstring). ``out_stride`` 4, one feature output."""

    out_stride = 4
    num_feature_outputs = 1

    def __init__(self, *, depth_multiplier: float = 1.0, use_separable_conv: bool = False,
                 upsampling_interpolation: str = "nearest") -> None:
        super().__init__()
        if upsampling_interpolation not in ("nearest", "bilinear"):
            raise ValueError("upsampling_interpolation must be 'nearest' or 'bilinear', got "
                             f"{upsampling_interpolation!r}")
        self.upsampling_interpolation = upsampling_interpolation
        self.classification_backbone = KerasMobileNetV2(
            endpoints=TAPS, depth_multiplier=depth_multiplier, min_depth=0,
            hyperparams=BASE_HYPERPARAMS)
        tap_channels = self.classification_backbone.out_channels
        self.top = nn.Conv2d(tap_channels[3], 64, 1)
        widths, next_widths = (64, 32, 24), (32, 24, 24)
        self.laterals = nn.ModuleList(nn.Conv2d(tap_channels[level], width, 1)
                                      for level, width in zip((2, 1, 0), widths))
        self.use_separable_conv = use_separable_conv
        self.smooth = nn.ModuleList(
            nn.Sequential(
                SeparableConv2d(width, next_width, 3) if use_separable_conv
                else nn.Conv2d(width, next_width, 3, padding=1),
                nn.BatchNorm2d(next_width, eps=KERAS_DEFAULT_EPSILON, momentum=0.01),
                nn.ReLU())
            for width, next_width in zip(widths, next_widths))
        self.out_channels = [OUT_CHANNELS]

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """0..255 (after channel means/stds) -> [-1, 1]."""
        return images / 127.5 - 1.0

    def forward(self, images: Tensor) -> list[Tensor]:
        taps = self.classification_backbone(images)
        top_down = self.top(taps[3])
        for level, lateral, smooth in zip((2, 1, 0), self.laterals, self.smooth):
            if self.upsampling_interpolation == "nearest":
                top_down = F.interpolate(top_down, scale_factor=2.0, mode="nearest")
            else:  # Keras UpSampling2D bilinear = tf.image.resize (half-pixel centres)
                top_down = F.interpolate(top_down, scale_factor=2.0, mode="bilinear",
                                         align_corners=False)
            top_down = smooth(top_down + lateral(taps[level]))
        return [top_down]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``: MobileNet v2 under ``_base_model/``,
        the top-down layers under ``_feature_extractor_model/`` (``layer_with_weights-0`` is
        the MobileNet)."""
        targets = {f"_base_model/{key}": Target(f"classification_backbone.{target.name}",
                                                target.layout)
                   for key, target in self.classification_backbone.tf2_variable_map().items()}
        names = ["top"]
        for index in range(3):
            names += [f"laterals.{index}", f"smooth.{index}.0", f"smooth.{index}.1"]
        for offset, name in enumerate(names, start=1):
            prefix = f"_feature_extractor_model/layer_with_weights-{offset}"
            if name.startswith("smooth") and name.endswith(".1"):
                targets.update(batch_norm_targets(prefix, name))
            elif name.startswith("smooth") and self.use_separable_conv:
                targets.update(separable_conv_targets(prefix, name, bias=True))
            else:
                targets.update(conv_targets(prefix, name))
        return targets


__all__ = ["CenterNetMobileNetV2Fpn"]
