"""Faster R-CNN ResNet v1 FPN extractors: ``faster_rcnn_resnet{50,101,152}_fpn_keras``.

As the OD API's ``FasterRCNNResnetV1FpnKerasFeatureExtractor``:

- first stage: the canvas zero-padded (bottom, right) to a multiple of 32 (always: the OD API
  does not pass the config's ``pad_to_multiple`` on), a Keras ResNet v1
  (:class:`~objdet.models.backbones.resnet_v1.ResNetV1`, with the ``conv_hyperparams`` when
  ``override_base_feature_extractor_hyperparams``, else its defaults), the FPN top-down
  pathway (:class:`~objdet.models.necks.fpn.FpnTopDown`) over stages ``conv{min_level}`` ..
  ``conv{min(max_level, 5)}``, and for levels above 5 a 3x3 stride-2 'SAME' conv + batch norm
  + activation applied to the level before -> ``max_level - min_level + 1`` maps of
  ``additional_layer_depth`` channels, level ``l`` of stride ``2**l``, finest first;
- second stage (each pooled crop ``[N, C, k, k]``): flatten (NHWC order, as Keras), dense
  1024 + ReLU, the ``conv_hyperparams`` batch norm (if any), dense 1024 + ReLU ->
  ``[N, 1024, 1, 1]``. The dense layers are Keras defaults (Glorot-uniform, zero bias, no
  weight decay).

Preprocessing: 0..255 minus the VGG channel means. ``batch_norm_trainable: false`` keeps every
batch norm of the extractor on its moving statistics in training.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.backbones.resnet_v1 import DEFAULT_HYPERPARAMS, ResNetV1
from objdet.models.checkpoints.variable_map import (
    Target,
    batch_norm_targets,
    conv_targets,
    variable_key,
)
from objdet.models.feature_extractors.frozen_batch_norm import BatchNormFreezingExtractor
from objdet.models.feature_extractors.preprocessing import subtract_channel_means
from objdet.models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import make_conv2d
from objdet.models.necks.fpn import FpnTopDown, keras_use_bias

PAD_TO_MULTIPLE = 32
BOX_CLASSIFIER_UNITS = 1024
# The TF2 checkpoint's objects: the two Keras models the meta-architecture cuts.
_PROPOSAL_MODEL = "_feature_extractor_for_proposal_features"
_BOX_CLASSIFIER_MODEL = "_feature_extractor_for_box_classifier_features"


class FasterRcnnResNetFpnKerasFeatureExtractor(BatchNormFreezingExtractor):
    """``extract_proposal_features(preprocessed [B, 3, H, W]) -> list`` of maps ``[B, D,
    ceil(H/32) * 32 / 2**l, ...]`` for ``l`` in :attr:`pyramid_levels`;
    ``extract_box_classifier_features(crops [N, D, k, k]) -> [N, units, 1, 1]``."""

    def __init__(self, *, depth: int, hyperparams: ConvHyperparams,
                 override_base_hyperparams: bool = False, batch_norm_trainable: bool = False,
                 min_level: int = 2, max_level: int = 6, additional_layer_depth: int = 256,
                 crop_size: int = 7, depth_multiplier: float = 1.0, min_depth: int = 8) -> None:
        super().__init__()
        if not 2 <= min_level <= 5:
            raise ValueError(f"fpn.min_level: {min_level} is not supported; expected 2..5 "
                             "(the ResNet stages conv2..conv5)")
        if max_level < min_level:
            raise ValueError(f"fpn.max_level: {max_level} is below fpn.min_level {min_level}")
        self.pyramid_levels = list(range(min_level, max_level + 1))
        self._hyperparams = hyperparams
        self.weight_decay = hyperparams.weight_decay  # the pyramid's and coarse layers' convs
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self.classification_backbone = ResNetV1(
            depth=depth, depth_multiplier=depth_multiplier, min_depth=min_depth,
            hyperparams=hyperparams if override_base_hyperparams else DEFAULT_HYPERPARAMS)
        base_max_level = min(max_level, 5)
        taps = self.classification_backbone.out_channels[min_level - 2:base_max_level - 1]
        self.fpn = FpnTopDown(in_channels=taps, depth=additional_layer_depth,
                              hyperparams=hyperparams)
        self.coarse_layers = nn.ModuleList(
            _coarse_layer(additional_layer_depth, hyperparams)
            for _ in range(base_max_level, max_level))
        # The OD API's 1024 units; a depth multiplier (parity fixtures only) scales them too.
        units = max(int(BOX_CLASSIFIER_UNITS * depth_multiplier), min_depth)
        self.box_classifier = _BoxClassifier(additional_layer_depth * crop_size * crop_size,
                                             units, hyperparams.batch_norm)
        self.proposal_channels = additional_layer_depth
        self.box_classifier_channels = units
        self.batch_norm_trainable = batch_norm_trainable
        self.train(self.training)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> 0..255 minus the channel means."""
        return subtract_channel_means(images)

    def pyramid_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) of each map :meth:`extract_proposal_features` gives for an ``H x W`` input."""
        size = (math.ceil(height / PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE,
                math.ceil(width / PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE)
        sizes = []
        for level in self.pyramid_levels:
            if level <= 5:
                sizes.append((size[0] >> level, size[1] >> level))
            else:  # a stride-2 'SAME' conv on the level before
                sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
        return sizes

    def extract_proposal_features(self, images: Tensor) -> list[Tensor]:
        height, width = int(images.shape[2]), int(images.shape[3])
        padded = F.pad(images, (0, -width % PAD_TO_MULTIPLE, 0, -height % PAD_TO_MULTIPLE))
        stages = self.classification_backbone(padded)  # [C2, C3, C4, C5]
        first, last = self.pyramid_levels[0], min(self.pyramid_levels[-1], 5)
        maps = self.fpn(stages[first - 2:last - 1])
        for layer in self.coarse_layers:
            maps.append(layer(maps[-1]))  # [B, D, ceil(h / 2), ceil(w / 2)]
        return maps

    def extract_box_classifier_features(self, crops: Tensor) -> Tensor:
        return self.box_classifier(crops)

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/`` -> state_dict names: the first stage is the OD API's
        ``_ResnetFPN`` layer (``classification_backbone``, ``fpn_features_generator``,
        ``coarse_feature_layers``), the second its Keras Sequential box classifier."""
        targets: dict[str, Target] = {}
        parts = [("classification_backbone", "classification_backbone",
                  self.classification_backbone.tf2_variable_map()),
                 ("fpn_features_generator", "fpn", self.fpn.tf2_variable_map())]
        for tf_name, torch_name, part in parts:
            targets.update({f"{_PROPOSAL_MODEL}/{tf_name}/{key}":
                            Target(f"{torch_name}.{target.name}", target.layout)
                            for key, target in part.items()})
        batch_norm = self._hyperparams.batch_norm
        for index in range(len(self.coarse_layers)):
            tf_prefix = f"{_PROPOSAL_MODEL}/coarse_feature_layers/{index}"
            targets.update(conv_targets(f"{tf_prefix}/0", f"coarse_layers.{index}.0",
                                        bias=keras_use_bias(self._hyperparams)))
            if batch_norm is not None:
                targets.update(drop_absent_batch_norm_variables(batch_norm_targets(
                    f"{tf_prefix}/1", f"coarse_layers.{index}.1"), batch_norm))
        targets.update(self.box_classifier.tf2_variable_map(_BOX_CLASSIFIER_MODEL,
                                                            "box_classifier"))
        return targets

    def tf2_classification_map(self) -> dict[str, Target]:
        """The ResNet as a TF2 classification checkpoint holds it (``feature_extractor/...``,
        the OD API's ``restore_from_objects``) -> state_dict names."""
        return {f"feature_extractor/{key}":
                Target(f"classification_backbone.{target.name}", target.layout)
                for key, target in self.classification_backbone.tf2_variable_map().items()}


class _BoxClassifier(nn.Module):
    """``crops [N, C, k, k] -> [N, units, 1, 1]``: flatten in Keras' (k, k, C) order, dense
    + ReLU, [batch norm], dense + ReLU."""

    weight_decay = 0.0  # Keras Dense layers without a regularizer

    def __init__(self, in_features: int, units: int, batch_norm: BatchNormParams | None
                 ) -> None:
        super().__init__()
        self.first = _keras_dense(in_features, units)
        self.batch_norm_params = batch_norm
        self.norm: nn.Module = nn.Identity()
        if batch_norm is not None:
            norm = nn.BatchNorm1d(units, eps=batch_norm.epsilon, momentum=batch_norm.momentum)
            norm.weight.requires_grad_(batch_norm.scale)
            norm.bias.requires_grad_(batch_norm.center)
            self.norm = norm
        self.second = _keras_dense(units, units)

    def forward(self, crops: Tensor) -> Tensor:
        flat = crops.permute(0, 2, 3, 1).flatten(1)  # [N, k * k * C] as Keras flattens NHWC
        features = self.norm(F.relu(self.first(flat)))
        return F.relu(self.second(features))[:, :, None, None]  # [N, units, 1, 1]

    def tf2_variable_map(self, tf_prefix: str, torch_prefix: str) -> dict[str, Target]:
        """The Keras Sequential's weighted layers: dense, [batch norm], dense."""
        names = ["first", *(["norm"] if self.batch_norm_params is not None else []), "second"]
        targets: dict[str, Target] = {}
        for index, name in enumerate(names):
            layer = f"{tf_prefix}/layer_with_weights-{index}"
            if name == "norm":
                assert self.batch_norm_params is not None
                targets.update(drop_absent_batch_norm_variables(
                    batch_norm_targets(layer, f"{torch_prefix}.norm"), self.batch_norm_params))
            else:
                targets[variable_key(f"{layer}/kernel")] = Target(
                    f"{torch_prefix}.{name}.weight", "dense")
                targets[variable_key(f"{layer}/bias")] = Target(f"{torch_prefix}.{name}.bias")
        return targets


def _keras_dense(in_features: int, out_features: int) -> nn.Linear:
    dense = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(dense.weight)  # Keras Dense: glorot_uniform, zero bias
    nn.init.zeros_(dense.bias)
    return dense


def _coarse_layer(depth: int, hyperparams: ConvHyperparams) -> nn.Sequential:
    """3x3 stride-2 'SAME' conv + batch norm + activation (``bottom_up_block{l}``)."""
    conv = make_conv2d(depth, depth, 3, stride=2, bias=keras_use_bias(hyperparams))
    initialize_weight(conv.weight, hyperparams.initializer)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv]
    if hyperparams.batch_norm is not None:
        layers.append(make_batch_norm(depth, hyperparams.batch_norm))
    layers.append(make_activation(hyperparams.activation))
    return nn.Sequential(*layers)


# Faster R-CNN feature extractor type -> ResNet depth.
FASTER_RCNN_RESNET_FPN_KERAS_DEPTHS: dict[str, int] = {
    "faster_rcnn_resnet50_fpn_keras": 50,
    "faster_rcnn_resnet101_fpn_keras": 101,
    "faster_rcnn_resnet152_fpn_keras": 152,
}
