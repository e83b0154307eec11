"""The registry of Faster R-CNN feature extractor types, as the OD API names them.

``FASTER_RCNN_FEATURE_EXTRACTORS[type](params) -> FasterRcnnFeatureExtractor`` (the protocol
in :mod:`objdet.models.meta_arch.faster_rcnn`): ``preprocess``, ``extract_proposal_features``
(the RPN's and the crops' map, stride ``first_stage_features_stride``),
``extract_box_classifier_features`` (each pooled crop -> second-stage features),
``proposal_channels`` and ``box_classifier_channels``. A factory raises ValueError, starting
with the ``feature_extractor`` field's name, for a setting it cannot honour; the builder
reports it as a ConfigError under the config path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from objdet.models.feature_extractors import (
    faster_rcnn_inception_resnet_v2,
    faster_rcnn_inception_v2,
    faster_rcnn_resnet_keras,
    faster_rcnn_resnet_slim,
)


@dataclass(frozen=True)
class FasterRcnnExtractorParams:
    """The ``feature_extractor`` settings of a Faster R-CNN config, as plain values.

    ``depth_multiplier`` is not a config field (the OD API builds full-width backbones);
    tiny parity fixtures set it to stay small."""

    first_stage_features_stride: int = 16
    batch_norm_trainable: bool = False
    depth_multiplier: float = 1.0


def _resnet_keras(depth: int, params: FasterRcnnExtractorParams) -> nn.Module:
    stride = faster_rcnn_resnet_keras.FIRST_STAGE_FEATURES_STRIDE
    if params.first_stage_features_stride != stride:
        raise ValueError(f"first_stage_features_stride: {params.first_stage_features_stride} is "
                         f"not supported; expected {stride} (the OD API's Keras ResNet "
                         f"extractors allow only {stride})")
    return faster_rcnn_resnet_keras.build_faster_rcnn_resnet_keras(
        depth, batch_norm_trainable=params.batch_norm_trainable,
        depth_multiplier=params.depth_multiplier)


def _resnet_slim(depth: int, params: FasterRcnnExtractorParams) -> nn.Module:
    # Raises "first_stage_features_stride must be 8 or 16, ..." as the OD API does.
    return faster_rcnn_resnet_slim.build_faster_rcnn_resnet_slim(
        depth, first_stage_features_stride=params.first_stage_features_stride,
        batch_norm_trainable=params.batch_norm_trainable,
        depth_multiplier=params.depth_multiplier)


FASTER_RCNN_FEATURE_EXTRACTORS: dict[str, Callable[[FasterRcnnExtractorParams], nn.Module]] = {
    name: partial(_resnet_keras, depth)
    for name, depth in faster_rcnn_resnet_keras.FASTER_RCNN_RESNET_KERAS_DEPTHS.items()
}
# The TF1 (slim) ResNet v1 extractors: faster_rcnn_resnet{50,101,152}.
FASTER_RCNN_FEATURE_EXTRACTORS.update(
    (name, partial(_resnet_slim, depth))
    for name, depth in faster_rcnn_resnet_slim.FASTER_RCNN_RESNET_SLIM_DEPTHS.items())
# Inception-ResNet v2: faster_rcnn_inception_resnet_v2_keras (TF2) and
# faster_rcnn_inception_resnet_v2 (TF1 slim), one backbone module.
FASTER_RCNN_FEATURE_EXTRACTORS.update(
    faster_rcnn_inception_resnet_v2.FASTER_RCNN_INCEPTION_RESNET_V2_EXTRACTORS)
# The TF1 (slim) Inception v2 extractor.
FASTER_RCNN_FEATURE_EXTRACTORS["faster_rcnn_inception_v2"] = lambda params: (
    faster_rcnn_inception_v2.FasterRcnnInceptionV2FeatureExtractor(
        first_stage_features_stride=params.first_stage_features_stride,
        batch_norm_trainable=params.batch_norm_trainable,
        depth_multiplier=params.depth_multiplier))
