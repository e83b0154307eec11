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
    faster_rcnn_resnet_fpn_keras,
    faster_rcnn_resnet_keras,
    faster_rcnn_resnet_slim,
)
from objdet.models.feature_extractors.params import FpnParams
from objdet.models.hyperparams import ConvHyperparams


@dataclass(frozen=True)
class FasterRcnnExtractorParams:
    """The ``feature_extractor`` settings of a Faster R-CNN config, as plain values.

    ``depth_multiplier`` is not a config field (the OD API builds full-width backbones);
    tiny parity fixtures set it to stay small."""

    first_stage_features_stride: int = 16
    batch_norm_trainable: bool = False
    depth_multiplier: float = 1.0
    # The FPN extractors' fields (None / False / None where the config leaves them out);
    # ``crop_size`` is the pooled crop's side (``initial_crop_size`` after the max-pool).
    conv_hyperparams: ConvHyperparams | None = None
    override_base_feature_extractor_hyperparams: bool = False
    fpn: FpnParams | None = None
    pad_to_multiple: int | None = None
    crop_size: int = 7


def _resnet_keras(depth: int, params: FasterRcnnExtractorParams) -> nn.Module:
    stride = faster_rcnn_resnet_keras.FIRST_STAGE_FEATURES_STRIDE
    if params.first_stage_features_stride != stride:
        raise ValueError(f"first_stage_features_stride: {params.first_stage_features_stride} is "
                         f"not supported; expected {stride} (the OD API's Keras ResNet "
                         f"extractors allow only {stride})")
    return faster_rcnn_resnet_keras.build_faster_rcnn_resnet_keras(
        depth, batch_norm_trainable=params.batch_norm_trainable,
        depth_multiplier=params.depth_multiplier)


def _resnet_fpn_keras(depth: int, params: FasterRcnnExtractorParams) -> nn.Module:
    """As the OD API's model builder: ``fpn { }`` absent means levels 2..6 of depth 256."""
    if params.first_stage_features_stride not in (8, 16):
        raise ValueError(f"first_stage_features_stride: {params.first_stage_features_stride} "
                         "is not supported; expected 8 or 16 (unused by the FPN extractors, "
                         "which the OD API checks all the same)")
    if params.conv_hyperparams is None:
        raise ValueError("conv_hyperparams: missing; the FPN extractors build their pyramid "
                         "layers from it, as the OD API")
    if params.pad_to_multiple is not None and params.pad_to_multiple != (
            faster_rcnn_resnet_fpn_keras.PAD_TO_MULTIPLE):
        raise ValueError(f"pad_to_multiple: {params.pad_to_multiple} is not supported; the OD "
                         "API's FPN extractors always pad to "
                         f"{faster_rcnn_resnet_fpn_keras.PAD_TO_MULTIPLE}")
    fpn = params.fpn if params.fpn is not None else FpnParams(min_level=2, max_level=6)
    return faster_rcnn_resnet_fpn_keras.FasterRcnnResNetFpnKerasFeatureExtractor(
        depth=depth, hyperparams=params.conv_hyperparams,
        override_base_hyperparams=params.override_base_feature_extractor_hyperparams,
        batch_norm_trainable=params.batch_norm_trainable, min_level=fpn.min_level,
        max_level=fpn.max_level, additional_layer_depth=fpn.additional_layer_depth,
        crop_size=params.crop_size, depth_multiplier=params.depth_multiplier)


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
# The Keras ResNet v1 FPN extractors: faster_rcnn_resnet{50,101,152}_fpn_keras.
FASTER_RCNN_FEATURE_EXTRACTORS.update(
    (name, partial(_resnet_fpn_keras, depth))
    for name, depth in faster_rcnn_resnet_fpn_keras.FASTER_RCNN_RESNET_FPN_KERAS_DEPTHS.items())
# The extractor types that take conv_hyperparams, override_base_feature_extractor_hyperparams
# and fpn (the OD API passes them to any Keras extractor; the others fail on them).
FPN_FEATURE_EXTRACTORS = frozenset(faster_rcnn_resnet_fpn_keras.FASTER_RCNN_RESNET_FPN_KERAS_DEPTHS)
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
