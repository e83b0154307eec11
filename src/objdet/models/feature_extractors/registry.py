"""The registry of SSD feature extractor types, as the OD API names them.

``SSD_FEATURE_EXTRACTORS[type](params) -> nn.Module`` with ``preprocess(images in [0, 1])``,
``forward(preprocessed [B, 3, H, W]) -> list`` of maps (finest first) and
``out_channels: list[int]``. A factory raises ValueError for settings it cannot honour; the
builder reports it as a ConfigError naming the field.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from objdet.models.feature_extractors import (
    ssd_efficientdet,
    ssd_inception,
    ssd_mobilenet,
    ssd_mobilenet_fpn_keras,
    ssd_mobilenet_fpn_slim,
    ssd_mobilenet_keras,
    ssd_mobilenet_v1_slim_variants,
    ssd_resnet_fpn,
    ssd_resnet_fpn_slim,
)
from objdet.models.feature_extractors.params import FeatureExtractorParams

# The ``*_keras`` MobileNet v1/v2, FPN, ResNet and EfficientNet types are built as the OD API's
# TF2 (Keras) extractors, so that its TF2 checkpoints import (benchmarks/odapi_parity.py). The
# TF1-only types (slim ``ssd_mobilenet_v1``/``_v2``, MobileNet v3, which has no TF2 extractor
# in the OD API) keep objdet's own builds on torchvision's MobileNets.
SSD_FEATURE_EXTRACTORS: dict[str, Callable[[FeatureExtractorParams], nn.Module]] = {
    "ssd_mobilenet_v1": ssd_mobilenet.build_ssd_mobilenet_v1,
    "ssd_mobilenet_v1_keras": ssd_mobilenet_keras.build_ssd_mobilenet_v1_keras,
    "ssd_mobilenet_v2": ssd_mobilenet.build_ssd_mobilenet_v2,
    "ssd_mobilenet_v2_keras": ssd_mobilenet_keras.build_ssd_mobilenet_v2_keras,
    "ssd_mobilenet_v1_fpn_keras": ssd_mobilenet_fpn_keras.build_ssd_mobilenet_v1_fpn_keras,
    "ssd_mobilenet_v2_fpn_keras": ssd_mobilenet_fpn_keras.build_ssd_mobilenet_v2_fpn_keras,
    # TF1 (slim) MobileNet FPN / PPN / embedded and Inception types, built as the OD API's
    # slim extractors (slim FPN, pooling pyramid, multi_resolution_feature_maps).
    "ssd_mobilenet_v1_fpn": ssd_mobilenet_fpn_slim.build_ssd_mobilenet_v1_fpn,
    "ssd_mobilenet_v2_fpn": ssd_mobilenet_fpn_slim.build_ssd_mobilenet_v2_fpn,
    "ssd_mobilenet_v1_ppn": ssd_mobilenet_v1_slim_variants.build_ssd_mobilenet_v1_ppn,
    "embedded_ssd_mobilenet_v1": ssd_mobilenet_v1_slim_variants.build_embedded_ssd_mobilenet_v1,
    "ssd_inception_v2": ssd_inception.build_ssd_inception_v2,
    "ssd_inception_v3": ssd_inception.build_ssd_inception_v3,
    "ssd_mobilenet_v3_large": ssd_mobilenet.build_ssd_mobilenet_v3_large,
    "ssd_mobilenet_v3_large_keras": ssd_mobilenet.build_ssd_mobilenet_v3_large,
    "ssd_mobilenet_v3_small": ssd_mobilenet.build_ssd_mobilenet_v3_small,
    "ssd_mobilenet_v3_small_keras": ssd_mobilenet.build_ssd_mobilenet_v3_small,
    "ssd_resnet50_v1_fpn_keras": ssd_resnet_fpn.build_ssd_resnet50_v1_fpn,
    "ssd_resnet101_v1_fpn_keras": ssd_resnet_fpn.build_ssd_resnet101_v1_fpn,
    "ssd_resnet152_v1_fpn_keras": ssd_resnet_fpn.build_ssd_resnet152_v1_fpn,
    # TF1 (slim) ResNet v1 FPN, built as the OD API's slim extractor (honours fpn { }).
    "ssd_resnet50_v1_fpn": ssd_resnet_fpn_slim.build_ssd_resnet50_v1_fpn_slim,
    "ssd_resnet101_v1_fpn": ssd_resnet_fpn_slim.build_ssd_resnet101_v1_fpn_slim,
    "ssd_resnet152_v1_fpn": ssd_resnet_fpn_slim.build_ssd_resnet152_v1_fpn_slim,
    "ssd_efficientnet-b0_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b0_bifpn,
    "ssd_efficientnet-b1_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b1_bifpn,
    "ssd_efficientnet-b2_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b2_bifpn,
    "ssd_efficientnet-b3_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b3_bifpn,
    "ssd_efficientnet-b4_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b4_bifpn,
    "ssd_efficientnet-b5_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b5_bifpn,
    "ssd_efficientnet-b6_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b6_bifpn,
    "ssd_efficientnet-b7_bifpn_keras": ssd_efficientdet.build_ssd_efficientnet_b7_bifpn,
}
