"""R-FCN's second-stage box predictor (``rfcn_box_predictor``), as the OD API's
``RfcnBoxPredictor`` (slim) and ``RfcnKerasBoxPredictor`` build it.

Over the box classifier feature map (the whole map, not per-proposal crops):

- ``reduce_depth``: 1x1 conv to ``depth`` channels, the conv_hyperparams' batch norm if any,
  then their activation;
- ``refined_locations``: 1x1 conv to ``bins * num_classes * box_code_size`` channels
  (+ batch norm if configured, no activation), position-sensitively pooled per proposal
  (:func:`~objdet.models.layers.position_sensitive_crop.position_sensitive_crop_and_pool`)
  -> box codes for every class;
- ``class_predictions``: 1x1 conv to ``bins * (num_classes + 1)`` channels, pooled the same
  way -> class logits, column 0 background.

Convs have a bias only without batch norm (or with ``force_use_bias``), as slim and Keras.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.hyperparams import (
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.position_sensitive_crop import (
    bin_crop_size,
    position_sensitive_crop_and_pool,
)


def _conv(in_channels: int, out_channels: int, hyperparams: ConvHyperparams,
          activation: bool) -> nn.Sequential:
    """1x1 conv [+ batch norm] [+ activation] with the conv_hyperparams' initializer."""
    use_norm = hyperparams.batch_norm is not None
    conv = nn.Conv2d(in_channels, out_channels, 1,
                     bias=(not use_norm) or hyperparams.force_use_bias)
    initialize_weight(conv.weight, hyperparams.initializer)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv]
    if hyperparams.batch_norm is not None:
        layers.append(make_batch_norm(out_channels, hyperparams.batch_norm))
    if activation:
        layers.append(make_activation(hyperparams.activation))
    return nn.Sequential(*layers)


class RfcnBoxPredictor(nn.Module):
    """``(features [B, C, H, W], proposals [B, P, 4] x1, y1, x2, y2 fractions of the canvas)
    -> (box_encodings [B*P, num_classes, box_code_size], class_logits [B*P, num_classes + 1])``."""

    def __init__(self, *, in_channels: int, num_classes: int, hyperparams: ConvHyperparams,
                 num_spatial_bins: tuple[int, int] = (3, 3), depth: int = 1024,
                 crop_size: tuple[int, int] = (12, 12), box_code_size: int = 4) -> None:
        super().__init__()
        bin_crop_size(crop_size, num_spatial_bins)  # ValueError now, not at the first forward
        self.num_classes, self.box_code_size = num_classes, box_code_size
        self.num_spatial_bins, self.crop_size = num_spatial_bins, crop_size
        self.weight_decay = hyperparams.weight_decay
        bins = num_spatial_bins[0] * num_spatial_bins[1]
        self.reduce_depth = _conv(in_channels, depth, hyperparams, activation=True)
        self.refined_locations = _conv(depth, bins * num_classes * box_code_size, hyperparams,
                                       activation=False)
        self.class_predictions = _conv(depth, bins * (num_classes + 1), hyperparams,
                                       activation=False)

    def forward(self, features: Tensor, proposals: Tensor) -> tuple[Tensor, Tensor]:
        net = self.reduce_depth(features)
        box_encodings = position_sensitive_crop_and_pool(
            self.refined_locations(net), proposals, self.crop_size, self.num_spatial_bins)
        class_logits = position_sensitive_crop_and_pool(
            self.class_predictions(net), proposals, self.crop_size, self.num_spatial_bins)
        return box_encodings.reshape(-1, self.num_classes, self.box_code_size), class_logits
