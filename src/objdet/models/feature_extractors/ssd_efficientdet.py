"""SSD EfficientNet + BiFPN (EfficientDet D0–D7) feature extractors.

As the OD API's ``SSDEfficientNetBiFPNKerasFeatureExtractor``: images normalized with the
ImageNet mean and standard deviation, an EfficientNet tapped at levels
``bifpn.min_level..min(bifpn.max_level, 5)`` (``_EFFICIENTNET_LEVEL_ENDPOINTS``), then a
BiFPN with ``max(bifpn.num_filters, min_depth)`` channels giving one map per level.
``bifpn.use_native_resize_op`` changes nothing: both of the OD API's nearest-neighbour
upsamplings repeat each pixel. ``bifpn.max_level <= 5`` (no level above the backbone's),
which the OD API fails to build, is taken as the BiFPN starting its passes at level 5.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from objdet.models.backbones.efficientnet import (
    DEFAULT_WEIGHT_DECAY,
    EFFICIENTNET_COEFFICIENTS,
    EfficientNet,
)
from objdet.models.checkpoints.variable_map import Target
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.necks.bifpn import BiFPN

# pyramid level -> (stack, block) of the Keras endpoint the OD API taps:
# stack_0/block_0/project_bn, stack_1/block_1/add, stack_2/block_1/add,
# stack_4/block_2/add, stack_6/block_0/project_bn (each the output of that block).
EFFICIENTNET_LEVEL_TAPS: dict[int, tuple[int, int]] = {
    1: (0, 0), 2: (1, 1), 3: (2, 1), 4: (4, 2), 5: (6, 0),
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class SSDEfficientDetFeatureExtractor(nn.Module):
    """EfficientNet taps -> BiFPN. ``forward(preprocessed [B, 3, H, W]) -> list`` of
    ``max_level - min_level + 1`` maps with ``out_channels`` channels, finest first.

    H and W must be multiples of ``2**max_level`` (the OD API fails otherwise too).
    """

    mean: Tensor  # [1, 3, 1, 1]
    std: Tensor  # [1, 3, 1, 1]

    def __init__(self, *, backbone: EfficientNet, bifpn: BiFPN) -> None:
        super().__init__()
        self.backbone = backbone
        self.bifpn = bifpn
        self.out_channels: list[int] = list(bifpn.out_channels)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def preprocess(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``(x - mean) / std`` (the OD API's
        ``(x / 255 - mean) / std`` on 0..255 pixels)."""
        return (images - self.mean) / self.std

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.bifpn(self.backbone(images))

    # Where the checkpoint keeps the backbone's weights, relative to model/_feature_extractor/
    # (what a ``classification`` fine-tune checkpoint fills).
    tf2_backbone_prefix = "_efficientnet/"

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``.

        The OD API checkpoint also holds the classifier (``classification_backbone/…``:
        ``top_conv2d``, ``top_bn``, ``logits``, and stack_6's blocks after block 0), which
        never reaches a detection map; objdet does not build them, so they stay unused.
        """
        targets: dict[str, Target] = {}
        for key, target in self.backbone.tf2_variable_map().items():
            # The classifier layers past the taps live only in the full Keras model, which
            # the checkpoint tracks as classification_backbone.
            scope = "classification_backbone" if target.layout == "ignored" else "_efficientnet"
            targets[f"{scope}/{key}"] = Target(f"backbone.{target.name}", target.layout)
        for key, target in self.bifpn.tf2_variable_map().items():
            targets[f"_bifpn_stage/{key}"] = Target(f"bifpn.{target.name}", target.layout)
        return targets


def build_ssd_efficientdet(version: str, params: FeatureExtractorParams
                           ) -> SSDEfficientDetFeatureExtractor:
    """The extractor of ``ssd_{version}_bifpn_keras`` (e.g. version ``efficientnet-b0``)."""
    if params.bifpn is None:
        raise ValueError("EfficientDet needs a bifpn { } message")
    if params.depth_multiplier != 1.0:
        raise ValueError(f"EfficientDet does not support depth_multiplier "
                         f"{params.depth_multiplier} (the OD API accepts only 1.0)")
    if params.padding == "explicit":
        raise ValueError("EfficientDet does not support use_explicit_padding")
    if params.use_depthwise:
        raise ValueError("EfficientDet does not support use_depthwise")
    if params.use_hardswish:
        raise ValueError("the OD API's EfficientDet does not read use_hardswish (it always "
                         "builds swish); remove it")
    bifpn = params.bifpn
    if not 1 <= bifpn.min_level <= 5:
        raise ValueError(f"bifpn.min_level must be in 1..5 for EfficientNet, got "
                         f"{bifpn.min_level}")
    backbone_max_level = min(5, bifpn.max_level)
    width, depth = EFFICIENTNET_COEFFICIENTS[version]
    hyperparams = params.hyperparams
    backbone = EfficientNet(
        width_coefficient=width, depth_coefficient=depth,
        taps=[EFFICIENTNET_LEVEL_TAPS[level]
              for level in range(bifpn.min_level, backbone_max_level + 1)],
        # override_base_feature_extractor_hyperparams overrides only the weight decay.
        weight_decay=(hyperparams.weight_decay if params.override_base_hyperparams
                      else DEFAULT_WEIGHT_DECAY),
    )
    neck = BiFPN(
        in_channels=backbone.out_channels, min_level=bifpn.min_level,
        max_level=bifpn.max_level, num_iterations=bifpn.num_iterations,
        num_filters=max(bifpn.num_filters, params.min_depth), hyperparams=hyperparams,
        combine_method=bifpn.combine_method,
    )
    return SSDEfficientDetFeatureExtractor(backbone=backbone, bifpn=neck)


def _factory(version: str) -> Callable[[FeatureExtractorParams], SSDEfficientDetFeatureExtractor]:
    def build(params: FeatureExtractorParams) -> SSDEfficientDetFeatureExtractor:
        return build_ssd_efficientdet(version, params)

    build.__name__ = f"build_ssd_{version.replace('-', '_')}_bifpn"
    return build


# The factories of ``ssd_efficientnet-b{N}_bifpn_keras`` (EfficientDet-D{N}).
build_ssd_efficientnet_b0_bifpn = _factory("efficientnet-b0")
build_ssd_efficientnet_b1_bifpn = _factory("efficientnet-b1")
build_ssd_efficientnet_b2_bifpn = _factory("efficientnet-b2")
build_ssd_efficientnet_b3_bifpn = _factory("efficientnet-b3")
build_ssd_efficientnet_b4_bifpn = _factory("efficientnet-b4")
build_ssd_efficientnet_b5_bifpn = _factory("efficientnet-b5")
build_ssd_efficientnet_b6_bifpn = _factory("efficientnet-b6")
build_ssd_efficientnet_b7_bifpn = _factory("efficientnet-b7")
