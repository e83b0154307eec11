"""Faster R-CNN's two heads, as the OD API's Keras Faster R-CNN builds them.

- :class:`RegionProposalHead` (first stage): ``FirstStageRPNFeatures`` (a 'SAME'
  ``kernel_size`` conv of ``depth`` filters with ``atrous_rate`` dilation, the
  ``first_stage_box_predictor_conv_hyperparams`` batch norm if any, then ReLU6 -- always ReLU6,
  whatever the hyperparams' activation) and a ``ConvolutionalBoxPredictor`` with 1x1 box and
  objectness (background, object) convs.
- :class:`MaskRcnnBoxPredictor` (second stage, ``mask_rcnn_box_predictor``): spatial mean of
  each proposal's features, [dropout], then a dense layer (Keras defaults: Glorot-uniform
  kernel, zero bias) and the ``fc_hyperparams`` batch norm if any, for box codes
  (``num_classes`` x 4, or 4 with ``share_box_across_classes``) and for class logits
  (``num_classes + 1``, column 0 background).
- :class:`MaskRcnnMaskHead` (third stage, ``predict_instance_masks``): the Keras
  ``MaskRCNNMaskHead`` over each box's classifier features, mask logits per class (or one,
  ``masks_are_class_agnostic``) of ``mask_height x mask_width``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.heads.box_predictors import ConvolutionalBoxPredictor
from objdet.models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import make_conv2d
from objdet.models.necks.fpn import keras_use_bias


class RegionProposalHead(nn.Module):
    """``features [B, C, H, W] -> (box_encodings [B, H*W*K, 4], objectness [B, H*W*K, 2])``;
    with ``num_levels`` maps (a pyramid, finest first) the first conv is shared and each level
    has its own box and objectness convs, outputs concatenated level by level."""

    def __init__(self, *, in_channels: int, depth: int, kernel_size: int, atrous_rate: int,
                 num_anchors_per_location: int, hyperparams: ConvHyperparams,
                 num_levels: int = 1) -> None:
        super().__init__()
        self.weight_decay = hyperparams.weight_decay
        self._batch_norm = hyperparams.batch_norm
        conv = make_conv2d(in_channels, depth, kernel_size, dilation=atrous_rate,
                           bias=keras_use_bias(hyperparams))
        initialize_weight(conv.weight, hyperparams.initializer)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers: list[nn.Module] = [conv]
        if hyperparams.batch_norm is not None:
            layers.append(make_batch_norm(depth, hyperparams.batch_norm))
        layers.append(nn.ReLU6())
        self.first_conv = nn.Sequential(*layers)
        self.box_predictor = ConvolutionalBoxPredictor(
            in_channels=[depth] * num_levels,
            num_anchors_per_location=[num_anchors_per_location] * num_levels,
            num_class_slots=2, hyperparams=hyperparams, kernel_size=1)

    def forward(self, features: Tensor | list[Tensor]) -> tuple[Tensor, Tensor]:
        maps = [features] if isinstance(features, Tensor) else features
        return self.box_predictor([self.first_conv(level) for level in maps])

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/`` (two OD API objects: the first conv's Sequential and the
        first-stage box predictor)."""
        targets = conv_targets("_first_stage_box_predictor_first_conv/layer_with_weights-0",
                               "first_conv.0", bias=self.first_conv[0].bias is not None)
        if self._batch_norm is not None:
            targets.update(drop_absent_batch_norm_variables(batch_norm_targets(
                "_first_stage_box_predictor_first_conv/layer_with_weights-1", "first_conv.1"),
                self._batch_norm))
        for key, target in self.box_predictor.tf2_variable_map().items():
            targets[f"_first_stage_box_predictor/{key}"] = Target(
                f"box_predictor.{target.name}", target.layout)
        return targets


class _DenseHead(nn.Sequential):
    """[dropout] -> dense -> [batch norm] over ``[N, C]`` features."""

    def __init__(self, in_features: int, out_features: int, *, dropout: float | None,
                 batch_norm: BatchNormParams | None) -> None:
        layers: list[nn.Module] = []
        if dropout is not None:
            layers.append(nn.Dropout(dropout))
        dense = nn.Linear(in_features, out_features)
        nn.init.xavier_uniform_(dense.weight)  # Keras Dense: glorot_uniform, zero bias
        nn.init.zeros_(dense.bias)
        layers.append(dense)
        if batch_norm is not None:
            norm = nn.BatchNorm1d(out_features, eps=batch_norm.epsilon,
                                  momentum=batch_norm.momentum)
            norm.weight.requires_grad_(batch_norm.scale)
            norm.bias.requires_grad_(batch_norm.center)
            layers.append(norm)
        super().__init__(*layers)

    def tf2_variable_map(self, tf_prefix: str, torch_prefix: str,
                         batch_norm: BatchNormParams | None) -> dict[str, Target]:
        """Keras layer list ``[Flatten, (Dropout), Dense, BN-or-identity]``."""
        targets: dict[str, Target] = {}
        keras_index = 1  # 0 is Flatten
        for position, module in enumerate(self):
            name = f"{torch_prefix}.{position}"
            if isinstance(module, nn.Linear):
                targets[f"{tf_prefix}/{keras_index}/kernel/.ATTRIBUTES/VARIABLE_VALUE"] = Target(
                    f"{name}.weight", "dense")
                targets[f"{tf_prefix}/{keras_index}/bias/.ATTRIBUTES/VARIABLE_VALUE"] = Target(
                    f"{name}.bias")
            elif isinstance(module, nn.BatchNorm1d):
                assert batch_norm is not None
                targets.update(drop_absent_batch_norm_variables(
                    batch_norm_targets(f"{tf_prefix}/{keras_index}", name), batch_norm))
            keras_index += 1
        return targets


class MaskRcnnBoxPredictor(nn.Module):
    """``features [N, C, h, w] -> (box_encodings [N, num_boxes, 4], class_logits [N, K + 1])``
    with ``num_boxes`` 1 (shared across classes) or ``num_classes``."""

    def __init__(self, *, in_channels: int, num_classes: int, share_box_across_classes: bool,
                 use_dropout: bool, dropout_keep_probability: float,
                 fc_batch_norm: BatchNormParams | None, box_code_size: int = 4) -> None:
        super().__init__()
        self.num_boxes = 1 if share_box_across_classes else num_classes
        self.box_code_size = box_code_size
        self._batch_norm = fc_batch_norm
        self._use_dropout = use_dropout
        dropout = 1.0 - dropout_keep_probability if use_dropout else None
        self.box_head = _DenseHead(in_channels, self.num_boxes * box_code_size,
                                   dropout=dropout, batch_norm=fc_batch_norm)
        self.class_head = _DenseHead(in_channels, num_classes + 1, dropout=dropout,
                                     batch_norm=fc_batch_norm)
        self.weight_decay = 0.0  # the OD API's dense layers take no regularizer

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        pooled = features.mean(dim=(2, 3))  # [N, C]
        box_encodings = self.box_head(pooled).reshape(-1, self.num_boxes, self.box_code_size)
        return box_encodings, self.class_head(pooled)

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_mask_rcnn_box_predictor/``."""
        targets = self.box_head.tf2_variable_map(
            "_box_prediction_head/_box_encoder_layers", "box_head", self._batch_norm)
        targets.update(self.class_head.tf2_variable_map(
            "_class_prediction_head/_class_predictor_layers", "class_head", self._batch_norm))
        return targets


def mask_conv_depth(num_feature_channels: int, num_classes: int) -> int:
    """The OD API's ``_get_mask_predictor_conv_depth`` (``mask_prediction_conv_depth: 0``):
    2 ** round((2 log2(channels) + 3 log2(classes)) / 5)."""
    weighted = 2.0 * math.log2(num_feature_channels) + 3.0 * math.log2(num_classes)
    return int(2.0 ** round(weighted / 5.0))


class NearestUpsample(nn.Module):
    """``[N, C, h, w] -> [N, C, h * height_scale, w * width_scale]``, each value repeated (the
    OD API's ``ops.nearest_neighbor_upsampling``); the scales are ``mask_size // h`` of the
    input, as the Keras head computes them from its input shape."""

    def __init__(self, mask_height: int, mask_width: int) -> None:
        super().__init__()
        self.mask_height, self.mask_width = mask_height, mask_width

    def forward(self, features: Tensor) -> Tensor:
        height_scale = self.mask_height // int(features.shape[2])
        width_scale = self.mask_width // int(features.shape[3])
        return features.repeat_interleave(height_scale, dim=2).repeat_interleave(width_scale, dim=3)


class MaskRcnnMaskHead(nn.Module):
    """``features [N, C, h, w] -> mask logits [N, num_masks, mask_height, mask_width]``, the
    OD API's Keras ``MaskRCNNMaskHead`` (predictors/heads/keras_mask_head.py).

    Without ``convolve_then_upsample`` the features are first resized bilinearly
    (``align_corners=True``) to the mask size; then ``num_conv_layers - 1`` 3x3 'SAME' convs
    of ``conv_depth`` filters, each with the hyperparams' batch norm (if any) and activation;
    with ``convolve_then_upsample`` a nearest upsampling to the mask size and one more such
    conv follow; last a 3x3 conv with bias to ``num_masks`` (1 if class agnostic, else
    ``num_classes``) logits. :attr:`layers` keeps the Keras ``_mask_predictor_layers`` order
    (an absent batch norm is an identity there too), so checkpoint indices line up."""

    def __init__(self, *, in_channels: int, num_classes: int, mask_height: int, mask_width: int,
                 conv_depth: int, num_conv_layers: int, masks_are_class_agnostic: bool,
                 convolve_then_upsample: bool, hyperparams: ConvHyperparams) -> None:
        super().__init__()
        if num_conv_layers < 1:
            raise ValueError(f"mask_prediction_num_conv_layers must be >= 1, got {num_conv_layers}")
        self.mask_height, self.mask_width = mask_height, mask_width
        self.num_masks = 1 if masks_are_class_agnostic else num_classes
        self.convolve_then_upsample = convolve_then_upsample
        self.weight_decay = hyperparams.weight_decay
        self._batch_norm = hyperparams.batch_norm
        depth = conv_depth or mask_conv_depth(in_channels, num_classes)
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_conv_layers - 1):
            layers.extend(self._conv_block(channels, depth, hyperparams))
            channels = depth
        if convolve_then_upsample:
            layers.append(NearestUpsample(mask_height, mask_width))
            layers.extend(self._conv_block(channels, depth, hyperparams))
            channels = depth
        last = make_conv2d(channels, self.num_masks, 3, bias=True)
        initialize_weight(last.weight, hyperparams.initializer)
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]
        layers.append(last)
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def _conv_block(in_channels: int, depth: int, hyperparams: ConvHyperparams) -> list[nn.Module]:
        """Conv, batch norm (or identity), activation: three Keras list entries."""
        conv = make_conv2d(in_channels, depth, 3, bias=keras_use_bias(hyperparams))
        initialize_weight(conv.weight, hyperparams.initializer)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        norm = (nn.Identity() if hyperparams.batch_norm is None
                else make_batch_norm(depth, hyperparams.batch_norm))
        return [conv, norm, make_activation(hyperparams.activation)]

    def forward(self, features: Tensor) -> Tensor:
        if not self.convolve_then_upsample:
            features = F.interpolate(features, size=(self.mask_height, self.mask_width),
                                     mode="bilinear", align_corners=True)
        return self.layers(features)  # [N, num_masks, mask_height, mask_width]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_mask_rcnn_box_predictor/``."""
        prefix = "_third_stage_heads/mask_predictions/_mask_predictor_layers"
        targets: dict[str, Target] = {}
        for position, module in enumerate(self.layers):
            if isinstance(module, nn.Conv2d):
                targets.update(conv_targets(f"{prefix}/{position}", f"layers.{position}",
                                            bias=module.bias is not None))
            elif isinstance(module, nn.BatchNorm2d):
                assert self._batch_norm is not None
                targets.update(drop_absent_batch_norm_variables(
                    batch_norm_targets(f"{prefix}/{position}", f"layers.{position}"),
                    self._batch_norm))
        return targets
