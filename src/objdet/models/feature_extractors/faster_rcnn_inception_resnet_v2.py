"""Faster R-CNN Inception-ResNet v2 extractors: ``faster_rcnn_inception_resnet_v2_keras``
(TF2) and ``faster_rcnn_inception_resnet_v2`` (TF1 slim).

Mirrors the OD API's ``FasterRCNNInceptionResnetV2KerasFeatureExtractor``
(``faster_rcnn_inception_resnet_v2_keras_feature_extractor.py``) and the slim
``FasterRCNNInceptionResnetV2FeatureExtractor``
(``faster_rcnn_inception_resnet_v2_feature_extractor.py``): one
:class:`~objdet.models.backbones.inception_resnet_v2.InceptionResNetV2` split in two,

- first stage: stem .. block17_20 (``block17_20_ac`` / ``PreAuxLogits``), stride
  ``first_stage_features_stride`` (16, or 8 atrous) -> the RPN's and the crops' map;
- second stage: Mixed_7a .. Conv2d_7b_1x1 on each proposal's pooled crop.

The two OD API versions build the same layers (same weights, layer for layer) and differ only
in the second stage: Keras pads Mixed_7a's stride-2 layers 'SAME', slim 'VALID' (17x17
crops give 9x9 and 8x8 maps). At stride 8 the slim extractor keeps Mixed_7a at stride 2,
while the Keras model also sets stride 1 on its 384-filter conv and max pool, so its
Mixed_7a concatenates maps of different sizes and fails for any crop over 1x1: the Keras type
refuses stride 8.

Preprocessing: 0..255 -> [-1, 1] (``(2 / 255) * x - 1``). Batch norms (no gamma; epsilon
1e-3, decay 0.9997) keep their moving statistics unless ``batch_norm_trainable`` (the OD
API's ``FreezableBatchNorm(training=False)`` / slim ``is_training=False``); weight decay is 0
(the OD API's builders pass none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor, nn

from objdet.models.backbones.inception_resnet_v2 import (
    FIRST_STAGE_CHANNELS,
    OUTPUT_STRIDES,
    SECOND_STAGE_CHANNELS,
    InceptionResNetV2,
    Padding,
    layer_targets,
)
from objdet.models.checkpoints.variable_map import Target
from objdet.models.feature_extractors.frozen_batch_norm import BatchNormFreezingExtractor

if TYPE_CHECKING:
    from objdet.models.feature_extractors.faster_rcnn_registry import FasterRcnnExtractorParams


class FasterRcnnInceptionResnetV2FeatureExtractor(BatchNormFreezingExtractor):
    """``extract_proposal_features(preprocessed [B, 3, H, W]) -> [B, 1088, H/s, W/s]``
    (s = ``first_stage_features_stride``, rounded up); ``extract_box_classifier_features(
    crops [N, 1088, h, w]) -> [N, 1536, h', w']`` (``ceil(h/2)`` with 'same' second-stage
    padding, ``(h - 1) // 2`` with 'valid')."""

    def __init__(self, *, first_stage_features_stride: int = 16,
                 second_stage_padding: Padding = "same",
                 batch_norm_trainable: bool = False) -> None:
        super().__init__()
        self.classification_backbone = InceptionResNetV2(
            output_stride=first_stage_features_stride, second_stage_padding=second_stage_padding)
        self.first_stage_features_stride = first_stage_features_stride
        self.batch_norm_trainable = batch_norm_trainable
        self.proposal_channels = FIRST_STAGE_CHANNELS
        self.box_classifier_channels = SECOND_STAGE_CHANNELS
        self.weight_decay = 0.0
        self.train(self.training)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> [-1, 1], computed as the OD API does on 0..255."""
        return (2.0 / 255.0) * (images * 255.0) - 1.0

    def extract_proposal_features(self, images: Tensor) -> Tensor:
        return self.classification_backbone.first_stage(images)

    def extract_box_classifier_features(self, crops: Tensor) -> Tensor:
        return self.classification_backbone.second_stage(crops)

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/`` -> state_dict names.

        The OD API's checkpoint holds the backbone through the two Keras models cut from it:
        ``_feature_extractor_for_proposal_features/layer_with_weights-N`` (stem .. block17_20,
        N as in the whole model) and ``_feature_extractor_for_box_classifier_features/
        layer_with_weights-M`` (Mixed_7a .. conv_7b, M counted again from 0)."""
        backbone = self.classification_backbone
        first, second = backbone.keras_layer_order()
        parts = (("_feature_extractor_for_proposal_features", first),
                 ("_feature_extractor_for_box_classifier_features", second))
        return {f"{model_name}/{key}":
                Target(f"classification_backbone.{target.name}", target.layout)
                for model_name, names in parts
                for key, target in layer_targets(names, backbone.batch_norm).items()}

    def slim_variable_map(self) -> dict[str, Target]:
        """The OD API's TF1 (slim) variable names (``FirstStageFeatureExtractor/
        InceptionResnetV2/...``, ``SecondStageFeatureExtractor/InceptionResnetV2/...``) ->
        state_dict names: what a TF1 checkpoint of either type holds."""
        targets = self.classification_backbone.slim_variable_map(
            "FirstStageFeatureExtractor/InceptionResnetV2",
            "SecondStageFeatureExtractor/InceptionResnetV2")
        return {key: Target(f"classification_backbone.{target.name}", target.layout)
                for key, target in targets.items()}

    def tf2_classification_map(self) -> dict[str, Target]:
        """The backbone as a TF2 classification checkpoint holds it: ``feature_extractor/``
        + the keys of the whole Keras model (``classification_backbone``, what the OD API
        restores for ``fine_tune_checkpoint_type: classification``) -> state_dict names."""
        return {f"feature_extractor/{key}":
                Target(f"classification_backbone.{target.name}", target.layout)
                for key, target in self.classification_backbone.tf2_variable_map().items()}


def _check_stride(stride: int, name: str) -> None:
    if stride not in OUTPUT_STRIDES:
        raise ValueError(f"first_stage_features_stride: {stride} is not supported by {name}; "
                         f"expected 8 or 16 (as the OD API)")


def build_keras(params: FasterRcnnExtractorParams) -> FasterRcnnInceptionResnetV2FeatureExtractor:
    """``faster_rcnn_inception_resnet_v2_keras``: Mixed_7a padded 'SAME'; stride 16 only."""
    name = "faster_rcnn_inception_resnet_v2_keras"
    _check_stride(params.first_stage_features_stride, name)
    if params.first_stage_features_stride == 8:
        raise ValueError(
            f"first_stage_features_stride: 8 is not supported by {name}: the OD API's Keras "
            f"model then gives Mixed_7a branches of strides 1 and 2 and its second stage fails "
            f"on any crop over 1x1; use 16, or the slim faster_rcnn_inception_resnet_v2")
    _check_full_width(params, name)
    return FasterRcnnInceptionResnetV2FeatureExtractor(
        first_stage_features_stride=16, second_stage_padding="same",
        batch_norm_trainable=params.batch_norm_trainable)


def build_slim(params: FasterRcnnExtractorParams) -> FasterRcnnInceptionResnetV2FeatureExtractor:
    """``faster_rcnn_inception_resnet_v2`` (TF1 slim): Mixed_7a padded 'VALID'; stride 8 or 16."""
    name = "faster_rcnn_inception_resnet_v2"
    _check_stride(params.first_stage_features_stride, name)
    _check_full_width(params, name)
    return FasterRcnnInceptionResnetV2FeatureExtractor(
        first_stage_features_stride=params.first_stage_features_stride,
        second_stage_padding="valid", batch_norm_trainable=params.batch_norm_trainable)


def _check_full_width(params: FasterRcnnExtractorParams, name: str) -> None:
    if params.depth_multiplier != 1.0:
        raise ValueError(f"depth_multiplier: {params.depth_multiplier} is not supported by "
                         f"{name}; the OD API's Inception-ResNet v2 has full width only (1.0)")


# Faster R-CNN feature extractor type -> factory (FASTER_RCNN_FEATURE_EXTRACTORS entries).
FASTER_RCNN_INCEPTION_RESNET_V2_EXTRACTORS: dict[
    str, Callable[[FasterRcnnExtractorParams], nn.Module]] = {
    "faster_rcnn_inception_resnet_v2_keras": build_keras,
    "faster_rcnn_inception_resnet_v2": build_slim,
}
