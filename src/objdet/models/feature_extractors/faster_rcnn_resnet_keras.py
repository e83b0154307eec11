"""Faster R-CNN ResNet v1 extractors: ``faster_rcnn_resnet{50,101,152}_keras``.

As the OD API's ``FasterRCNNResnetKerasFeatureExtractor``: one Keras ResNet v1
(:class:`~objdet.models.backbones.resnet_v1.ResNetV1`, built with ``conv_hyperparams=None``:
batch norm epsilon 1e-5 / decay 0.997, ReLU, and weight decay 0) split in two:

- first stage: stem .. ``conv4_block{N}_out`` (stride 16) -> the RPN's and the crops' map;
- second stage: ``conv5`` (its first block has stride 2) applied to each proposal's pooled
  crop -> box classifier features.

Preprocessing: 0..255 minus the VGG channel means. With ``batch_norm_trainable: false`` (the
OD API's default) batch norms keep their moving statistics in training too (gamma and beta
still train).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from objdet.models.backbones.resnet_v1 import DEFAULT_HYPERPARAMS, ResNetV1
from objdet.models.checkpoints.variable_map import Target
from objdet.models.feature_extractors.frozen_batch_norm import BatchNormFreezingExtractor
from objdet.models.feature_extractors.preprocessing import subtract_channel_means

FIRST_STAGE_FEATURES_STRIDE = 16


class FasterRcnnResNetKerasFeatureExtractor(BatchNormFreezingExtractor):
    """``extract_proposal_features(preprocessed [B, 3, H, W]) -> [B, C4, ceil(H/16), ceil(W/16)]``;
    ``extract_box_classifier_features(crops [N, C4, h, w]) -> [N, C5, ceil(h/2), ceil(w/2)]``."""

    def __init__(self, *, depth: int, batch_norm_trainable: bool = False,
                 depth_multiplier: float = 1.0, min_depth: int = 8) -> None:
        super().__init__()
        hyperparams = dataclasses.replace(DEFAULT_HYPERPARAMS, weight_decay=0.0)
        self.classification_backbone = ResNetV1(depth=depth, depth_multiplier=depth_multiplier,
                                                min_depth=min_depth, hyperparams=hyperparams)
        self.batch_norm_trainable = batch_norm_trainable
        self.proposal_channels = self.classification_backbone.out_channels[2]
        self.box_classifier_channels = self.classification_backbone.out_channels[3]
        self.weight_decay = 0.0
        self.train(self.training)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> 0..255 minus the channel means."""
        return subtract_channel_means(images)

    def extract_proposal_features(self, images: Tensor) -> Tensor:
        backbone = self.classification_backbone
        features = backbone.pool(backbone.stem_activation(backbone.stem(images)))
        for stage in backbone.stages[:3]:
            features = stage(features)
        return features  # conv4_block{N}_out

    def extract_box_classifier_features(self, crops: Tensor) -> Tensor:
        return self.classification_backbone.stages[3](crops)  # conv5_block3_out

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/`` -> state_dict names.

        The OD API's checkpoint holds the ResNet through the two Keras models cut from it:
        ``_feature_extractor_for_proposal_features/layer_with_weights-N`` (stem .. conv4, N
        as in the whole ResNet) and ``_feature_extractor_for_box_classifier_features/
        layer_with_weights-M`` (conv5, M counted again from 0, in the same order)."""
        whole = self.classification_backbone.tf2_variable_map()
        first_conv5 = min(_layer_index(key) for key, target in whole.items()
                          if target.name.startswith("stages.3."))
        targets: dict[str, Target] = {}
        for key, target in whole.items():
            index = _layer_index(key)
            if index < first_conv5:
                tf_key = f"_feature_extractor_for_proposal_features/{key}"
            else:
                rest = key.split("/", 1)[1]
                tf_key = (f"_feature_extractor_for_box_classifier_features/"
                          f"layer_with_weights-{index - first_conv5}/{rest}")
            targets[tf_key] = Target(f"classification_backbone.{target.name}", target.layout)
        return targets

    def tf2_classification_map(self) -> dict[str, Target]:
        """The ResNet as a TF2 classification checkpoint holds it: ``feature_extractor/...``
        (keys of the whole Keras ResNet) -> state_dict names."""
        return {f"feature_extractor/{key}":
                Target(f"classification_backbone.{target.name}", target.layout)
                for key, target in self.classification_backbone.tf2_variable_map().items()}


def _layer_index(key: str) -> int:
    """``'layer_with_weights-12/kernel/...'`` -> 12."""
    return int(key.split("/", 1)[0].removeprefix("layer_with_weights-"))


def build_faster_rcnn_resnet_keras(
    depth: int, *, batch_norm_trainable: bool, depth_multiplier: float = 1.0
) -> FasterRcnnResNetKerasFeatureExtractor:
    """``faster_rcnn_resnet{depth}_keras``. ``depth_multiplier`` is not a config field (the
    OD API's extractor always builds full width); parity fixtures use it to stay small."""
    return FasterRcnnResNetKerasFeatureExtractor(
        depth=depth, batch_norm_trainable=batch_norm_trainable, depth_multiplier=depth_multiplier)


# Faster R-CNN feature extractor type -> ResNet depth.
FASTER_RCNN_RESNET_KERAS_DEPTHS: dict[str, int] = {
    "faster_rcnn_resnet50_keras": 50,
    "faster_rcnn_resnet101_keras": 101,
    "faster_rcnn_resnet152_keras": 152,
}
