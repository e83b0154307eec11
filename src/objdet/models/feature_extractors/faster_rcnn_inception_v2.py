"""Faster R-CNN slim Inception v2 extractor: ``faster_rcnn_inception_v2`` (TF1).

As the OD API's ``FasterRCNNInceptionV2FeatureExtractor``
(``models/faster_rcnn_inception_v2_feature_extractor.py``) on slim's Inception v2
(:class:`~objdet.models.backbones.slim_inception.SlimInception`, every layer 'SAME'):

- first stage: ``inception_v2_base`` up to ``Mixed_4e`` (stride 16) -> the RPN's and the
  crops' map. ``first_stage_features_stride`` may be 8 or 16, as the OD API checks, but
  changes nothing in the network (the anchors' strides come from the config);
- second stage: ``Mixed_5a`` (stride 2), ``Mixed_5b``, ``Mixed_5c`` on each pooled crop --
  the OD API writes them out again, layer for layer those of ``inception_v2_base``.

``_batch_norm_arg_scope(batch_norm_scale=True)``: batch norm decay 0.9997, epsilon 0.001,
with gamma; slim's ``conv2d`` defaults (ReLU, Xavier-uniform kernels unless a layer sets its
truncated normal); no L2 (the OD API's builder passes no weight decay). Batch norm runs in
training mode only with ``batch_norm_trainable``. Depths: ``max(int(d * depth_multiplier),
16)``. Preprocessing: pixels to [-1, 1].
"""

from __future__ import annotations

from torch import Tensor

from objdet.errors import CheckpointError
from objdet.models.backbones.slim_inception import (
    INCEPTION_V2,
    SlimInception,
    endpoints_after,
    endpoints_until,
)
from objdet.models.checkpoints.variable_map import Target
from objdet.models.feature_extractors.frozen_batch_norm import BatchNormFreezingExtractor
from objdet.models.hyperparams import BatchNormParams, ConvHyperparams, InitializerParams

FIRST_STAGE_FEATURES_STRIDES = (8, 16)
MIN_IMAGE_SIZE = 33  # tf.Assert in _extract_proposal_features
MIN_DEPTH = 16
_PROPOSAL_ENDPOINT = "Mixed_4e"
_SLIM_SCOPE = ConvHyperparams(
    activation="RELU",
    batch_norm=BatchNormParams(momentum=1.0 - 0.9997, epsilon=0.001, scale=True, center=True),
    initializer=InitializerParams(kind="variance_scaling", factor=1.0, mode="FAN_AVG",
                                  uniform=True),  # slim's xavier_initializer
    weight_decay=0.0,
)


class FasterRcnnInceptionV2FeatureExtractor(BatchNormFreezingExtractor):
    """``extract_proposal_features(preprocessed [B, 3, H, W]) -> [B, C, ceil(H/16),
    ceil(W/16)]``; ``extract_box_classifier_features(crops [N, C, h, w]) -> [N, C', ceil(h/2),
    ceil(w/2)]``."""

    def __init__(self, *, first_stage_features_stride: int = 16,
                 batch_norm_trainable: bool = False, depth_multiplier: float = 1.0) -> None:
        super().__init__()
        if first_stage_features_stride not in FIRST_STAGE_FEATURES_STRIDES:
            raise ValueError(f"first_stage_features_stride must be 8 or 16, got "
                             f"{first_stage_features_stride}")
        self.first_stage = SlimInception(
            endpoints=endpoints_until(INCEPTION_V2, _PROPOSAL_ENDPOINT),
            depth_multiplier=depth_multiplier, min_depth=MIN_DEPTH, hyperparams=_SLIM_SCOPE)
        self.proposal_channels = self.first_stage.channels[_PROPOSAL_ENDPOINT]
        self.second_stage = SlimInception(
            endpoints=endpoints_after(INCEPTION_V2, _PROPOSAL_ENDPOINT),
            depth_multiplier=depth_multiplier, min_depth=MIN_DEPTH, hyperparams=_SLIM_SCOPE,
            in_channels=self.proposal_channels)
        self.box_classifier_channels = self.second_stage.channels["Mixed_5c"]
        self.weight_decay = 0.0
        self.batch_norm_trainable = batch_norm_trainable
        self.train(self.training)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> [-1, 1] (the OD API's ``2 / 255 * x - 1``)."""
        return images * 2.0 - 1.0

    def extract_proposal_features(self, images: Tensor) -> Tensor:
        if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is too small: the "
                             f"Inception v2 extractor needs height and width >= {MIN_IMAGE_SIZE}")
        return self.first_stage(images)[_PROPOSAL_ENDPOINT]

    def extract_box_classifier_features(self, crops: Tensor) -> Tensor:
        return self.second_stage(crops)["Mixed_5c"]

    def tf2_variable_map(self) -> dict[str, Target]:
        raise CheckpointError("faster_rcnn_inception_v2 is a TF1 (slim) extractor: the OD API "
                              "has no TF2 checkpoints of it, and TF1 name-based checkpoints "
                              "cannot be imported yet")

    def tf2_classification_map(self) -> dict[str, Target]:
        return self.tf2_variable_map()
