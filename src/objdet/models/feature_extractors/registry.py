"""The registry of SSD feature extractor types, as the OD API names them.

``SSD_FEATURE_EXTRACTORS[type](params) -> nn.Module`` with ``preprocess(images in [0, 1])``,
``forward(preprocessed [B, 3, H, W]) -> list`` of maps (finest first) and
``out_channels: list[int]``. A factory raises ValueError for settings it cannot honour; the
builder reports it as a ConfigError naming the field.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from objdet.models.feature_extractors import ssd_mobilenet
from objdet.models.feature_extractors.params import FeatureExtractorParams

# The registry of SSD feature extractor types, as the OD API names them. The ``_keras``
# names are the OD API's TF2 variants of the same networks.
SSD_FEATURE_EXTRACTORS: dict[str, Callable[[FeatureExtractorParams], nn.Module]] = {
    "ssd_mobilenet_v1": ssd_mobilenet.build_ssd_mobilenet_v1,
    "ssd_mobilenet_v1_keras": ssd_mobilenet.build_ssd_mobilenet_v1,
    "ssd_mobilenet_v2": ssd_mobilenet.build_ssd_mobilenet_v2,
    "ssd_mobilenet_v2_keras": ssd_mobilenet.build_ssd_mobilenet_v2,
    "ssd_mobilenet_v3_large": ssd_mobilenet.build_ssd_mobilenet_v3_large,
    "ssd_mobilenet_v3_large_keras": ssd_mobilenet.build_ssd_mobilenet_v3_large,
    "ssd_mobilenet_v3_small": ssd_mobilenet.build_ssd_mobilenet_v3_small,
    "ssd_mobilenet_v3_small_keras": ssd_mobilenet.build_ssd_mobilenet_v3_small,
}
