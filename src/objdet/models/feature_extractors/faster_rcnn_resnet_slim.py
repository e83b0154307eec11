"""Faster R-CNN slim ResNet v1 extractors: ``faster_rcnn_resnet{50,101,152}`` (TF1).

As the OD API's ``FasterRCNNResnetV1FeatureExtractor``
(``models/faster_rcnn_resnet_v1_feature_extractor.py``) on slim's ResNet v1
(:class:`~objdet.models.backbones.resnet_v1_slim.ResNetV1Slim`):

- first stage: ``resnet_v1_{depth}`` with ``output_stride=first_stage_features_stride``
  (8 or 16; past it the strides become atrous rates), its ``block3`` end point -> the RPN's
  and the crops' map. (The OD API also builds ``block4`` there, but never uses its output.)
- second stage: a fresh ``block4`` -- three bottlenecks of depth 2048 / bottleneck 512, all
  at **stride 1** -- applied to each proposal's pooled crop, so the box classifier features
  keep the crop's size (the Keras extractor halves it).

``resnet_arg_scope(batch_norm_epsilon=1e-5, batch_norm_scale=True, weight_decay=0.0)``: batch
norm decay 0.997, ReLU, variance scaling init, and no L2 (the OD API's builder passes no
weight decay). Batch norm runs in training mode only with ``batch_norm_trainable`` (else it
keeps its moving statistics; gamma and beta still train, as slim's variables do).
Preprocessing: 0..255 minus the VGG channel means.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from objdet.errors import CheckpointError
from objdet.models.backbones.resnet_v1_slim import (
    DEFAULT_HYPERPARAMS,
    ResNetV1Slim,
    SlimBlock,
    UnitPlan,
    block_variable_map,
    make_units,
    resnet_v1_slim_blocks,
)
from objdet.models.checkpoints.variable_map import Target
from objdet.models.feature_extractors.frozen_batch_norm import BatchNormFreezingExtractor
from objdet.models.feature_extractors.preprocessing import subtract_channel_means

FIRST_STAGE_FEATURES_STRIDES = (8, 16)
# tf.Assert in _extract_proposal_features: height and width >= 33.
MIN_IMAGE_SIZE = 33
# The second stage's block4: depth 2048, bottleneck 512, three units of stride 1.
_SECOND_STAGE_BASE_DEPTH = 512
_SECOND_STAGE_UNITS = 3


class FasterRcnnResNetSlimFeatureExtractor(BatchNormFreezingExtractor):
    """``extract_proposal_features(preprocessed [B, 3, H, W]) -> [B, C3, ceil(H/s), ceil(W/s)]``
    (``s = first_stage_features_stride``); ``extract_box_classifier_features(crops [N, C3, h,
    w]) -> [N, C4, h, w]``."""

    def __init__(self, *, depth: int, first_stage_features_stride: int = 16,
                 batch_norm_trainable: bool = False, depth_multiplier: float = 1.0,
                 min_base_depth: int = 8) -> None:
        super().__init__()
        if first_stage_features_stride not in FIRST_STAGE_FEATURES_STRIDES:
            raise ValueError(f"first_stage_features_stride must be 8 or 16, got "
                             f"{first_stage_features_stride}")
        self.architecture = f"resnet_v1_{depth}"
        hyperparams = dataclasses.replace(DEFAULT_HYPERPARAMS, weight_decay=0.0)
        blocks = resnet_v1_slim_blocks(depth, depth_multiplier=depth_multiplier,
                                       min_base_depth=min_base_depth)
        self.first_stage = ResNetV1Slim(blocks=blocks[:3], hyperparams=hyperparams,
                                        output_stride=first_stage_features_stride)
        block4 = SlimBlock(max(int(_SECOND_STAGE_BASE_DEPTH * depth_multiplier), min_base_depth),
                           _SECOND_STAGE_UNITS, 1)
        self.second_stage = make_units(block4, [UnitPlan(stride=1, rate=1)] * block4.num_units,
                                       self.first_stage.out_channels[-1], hyperparams)
        self.weight_decay = 0.0
        self.batch_norm_trainable = batch_norm_trainable
        self.first_stage_features_stride = first_stage_features_stride
        self.proposal_channels = self.first_stage.out_channels[-1]
        self.box_classifier_channels = 4 * block4.base_depth
        self.train(self.training)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> 0..255 minus the channel means."""
        return subtract_channel_means(images)

    def extract_proposal_features(self, images: Tensor) -> Tensor:
        if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is too small: the slim "
                             f"ResNet extractor needs height and width >= {MIN_IMAGE_SIZE}")
        return self.first_stage(images)[-1]  # resnet_v1_{depth}/block3

    def extract_box_classifier_features(self, crops: Tensor) -> Tensor:
        return self.second_stage(crops)  # block4 at stride 1

    def slim_variable_map(self) -> dict[str, Target]:
        """The OD API's TF1 variable names
        (``FirstStageFeatureExtractor/resnet_v1_50/...``,
        ``SecondStageFeatureExtractor/resnet_v1_50/block4/...``) -> state_dict names."""
        first = self.first_stage.slim_variable_map(
            f"FirstStageFeatureExtractor/{self.architecture}")
        targets = {key: Target(f"first_stage.{target.name}", target.layout)
                   for key, target in first.items()}
        targets.update(block_variable_map(
            self.second_stage, f"SecondStageFeatureExtractor/{self.architecture}/block4",
            "second_stage"))
        return targets

    def tf2_variable_map(self) -> dict[str, Target]:
        raise CheckpointError(
            f"faster_rcnn_{self.architecture.removeprefix('resnet_v1_')} is a TF1 (slim) "
            "extractor: the OD API has no TF2 checkpoints of it, and TF1 name-based "
            "checkpoints cannot be imported yet")

    def tf2_classification_map(self) -> dict[str, Target]:
        return self.tf2_variable_map()


def build_faster_rcnn_resnet_slim(
    depth: int, *, first_stage_features_stride: int, batch_norm_trainable: bool,
    depth_multiplier: float = 1.0,
) -> FasterRcnnResNetSlimFeatureExtractor:
    """``faster_rcnn_resnet{depth}``. ``depth_multiplier`` is not a config field (the OD
    API's extractor always builds full width); tests use it to stay small."""
    return FasterRcnnResNetSlimFeatureExtractor(
        depth=depth, first_stage_features_stride=first_stage_features_stride,
        batch_norm_trainable=batch_norm_trainable, depth_multiplier=depth_multiplier)


# Faster R-CNN feature extractor type -> ResNet depth.
FASTER_RCNN_RESNET_SLIM_DEPTHS: dict[str, int] = {
    "faster_rcnn_resnet50": 50,
    "faster_rcnn_resnet101": 101,
    "faster_rcnn_resnet152": 152,
}
