"""SSD ResNet v1 FPN (RetinaNet) feature extractors: ``ssd_resnet{50,101,152}_v1_fpn_keras``.

As the OD API's ``SSDResNetV1FpnKerasFeatureExtractor``: ResNet v1 stage outputs
``C_min..C_min(max, 5)`` (level ``l`` = stage ``conv{l}``, stride ``2**l``) go through the FPN
top-down pathway; levels above 5 come from 3x3 stride-2 'SAME' conv + batch norm + activation
layers applied one after the other to the level-5 FPN output. All pyramid layers have
``max(int(additional_layer_depth * depth_multiplier), min_depth)`` channels.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.backbones.resnet_v1 import DEFAULT_HYPERPARAMS, ResNetV1
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.feature_extractors.params import FeatureExtractorParams, FpnParams
from objdet.models.feature_extractors.preprocessing import subtract_channel_means
from objdet.models.hyperparams import initialize_weight, make_activation, make_batch_norm
from objdet.models.layers.padding import make_conv2d
from objdet.models.necks.fpn import FpnTopDown, keras_use_bias

# shape_utils.check_min_image_dim(129, ...) in the OD API's _extract_features.
MIN_IMAGE_SIZE = 129


logger = logging.getLogger(__name__)


class SSDResNetV1FpnFeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, H, W]) -> list`` of ``max_level - min_level + 1`` maps
    (finest first, level ``l`` of stride ``2**l``, ``out_channels`` each)."""

    def __init__(self, *, base: ResNetV1, min_level: int, max_level: int, depth: int,
                 params: FeatureExtractorParams) -> None:
        super().__init__()
        if not 2 <= min_level <= 5:
            raise ValueError(f"fpn.min_level must be in 2..5 (ResNet stages conv2..conv5), "
                             f"got {min_level}")
        if max_level < min_level:
            raise ValueError(f"fpn.max_level {max_level} < fpn.min_level {min_level}")
        hyperparams = params.hyperparams
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self._hyperparams = hyperparams
        self.min_level, self.max_level = min_level, max_level
        self.base_max_level = min(max_level, 5)
        self.classification_backbone = base
        taps = base.out_channels[min_level - 2 : self.base_max_level - 1]
        self.fpn = FpnTopDown(in_channels=taps, depth=depth, hyperparams=hyperparams)
        self.coarse_layers = nn.ModuleList(
            _coarse_layer(depth, params) for _ in range(self.base_max_level, max_level)
        )
        self.out_channels = [depth] * (max_level - min_level + 1)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> 0..255 minus the channel means."""
        return subtract_channel_means(images)

    def forward(self, images: Tensor) -> list[Tensor]:
        if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is too small: the ResNet "
                             f"FPN extractor needs height and width >= {MIN_IMAGE_SIZE}")
        stages = self.classification_backbone(images)  # [C2, C3, C4, C5]
        maps = self.fpn(stages[self.min_level - 2 : self.base_max_level - 1])
        last = maps[-1]
        for layer in self.coarse_layers:
            last = layer(last)  # [B, depth, ceil(H / 2), ceil(W / 2)]
            maps.append(last)
        return maps

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/`` -> state_dict names."""
        targets = {f"classification_backbone/{key}": Target(f"classification_backbone.{t.name}",
                                                             t.layout)
                   for key, t in self.classification_backbone.tf2_variable_map().items()}
        targets.update({f"_fpn_features_generator/{key}": Target(f"fpn.{t.name}", t.layout)
                        for key, t in self.fpn.tf2_variable_map().items()})
        batch_norm = self._hyperparams.batch_norm
        for index in range(len(self.coarse_layers)):
            targets.update(conv_targets(f"_coarse_feature_layers/{index}/0",
                                        f"coarse_layers.{index}.0",
                                        bias=keras_use_bias(self._hyperparams)))
            if batch_norm is not None:
                norm = batch_norm_targets(f"_coarse_feature_layers/{index}/1",
                                          f"coarse_layers.{index}.1")
                targets.update(drop_absent_batch_norm_variables(norm, batch_norm))
        return targets


def _coarse_layer(depth: int, params: FeatureExtractorParams) -> nn.Sequential:
    """3x3 stride-2 'SAME' conv + batch norm + activation (``bottom_up_block{l}``)."""
    hyperparams = params.hyperparams
    conv = make_conv2d(depth, depth, 3, stride=2, bias=keras_use_bias(hyperparams))
    initialize_weight(conv.weight, hyperparams.initializer)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv]
    if hyperparams.batch_norm is not None:
        layers.append(make_batch_norm(depth, hyperparams.batch_norm))
    layers.append(make_activation(hyperparams.activation))
    return nn.Sequential(*layers)


def build_ssd_resnet_v1_fpn(depth: int, params: FeatureExtractorParams
                            ) -> SSDResNetV1FpnFeatureExtractor:
    """The ``ssd_resnet{depth}_v1_fpn_keras`` extractor for ``params``.

    Raises ValueError without ``fpn { }`` and for ``use_explicit_padding``/``use_depthwise``
    (the OD API ignores both for this extractor; objdet refuses rather than ignore a field).
    """
    if params.fpn is None:
        raise ValueError("ssd_resnet*_v1_fpn_keras needs an fpn { min_level max_level } block")
    if params.bifpn is not None:
        raise ValueError("ssd_resnet*_v1_fpn_keras takes fpn { }, not bifpn { }")
    if params.padding == "explicit":
        raise ValueError("use_explicit_padding is not an option of this extractor")
    if params.use_depthwise:
        raise ValueError("use_depthwise is not an option of this extractor")
    base_hyperparams = params.hyperparams if params.override_base_hyperparams else (
        DEFAULT_HYPERPARAMS)
    base = ResNetV1(depth=depth, depth_multiplier=params.depth_multiplier,
                    min_depth=params.min_depth, hyperparams=base_hyperparams)
    fpn = _odapi_fpn(params.fpn)
    pyramid_depth = max(int(fpn.additional_layer_depth * params.depth_multiplier),
                        params.min_depth)
    return SSDResNetV1FpnFeatureExtractor(base=base, min_level=fpn.min_level,
                                          max_level=fpn.max_level, depth=pyramid_depth,
                                          params=params)


def _odapi_fpn(fpn: FpnParams) -> FpnParams:
    """The pyramid the OD API really builds: its ResNet 50/101/152 FPN extractors do not
    pass ``fpn { min_level max_level additional_layer_depth }`` on to their base class, so
    it is always levels 3..7 of depth 256 (times the depth multiplier). objdet builds the
    same, so that TF2 checkpoints carry over, and says so when a config asks otherwise."""
    built = FpnParams()
    if fpn != built:
        logger.warning(
            "model.ssd.feature_extractor.fpn: the OD API's ssd_resnet*_v1_fpn_keras ignores "
            "min_level/max_level/additional_layer_depth (%d/%d/%d) and builds %d/%d/%d; "
            "objdet builds the same", fpn.min_level, fpn.max_level,
            fpn.additional_layer_depth, built.min_level, built.max_level,
            built.additional_layer_depth)
    return built


def build_ssd_resnet50_v1_fpn(params: FeatureExtractorParams) -> SSDResNetV1FpnFeatureExtractor:
    """``ssd_resnet50_v1_fpn_keras``."""
    return build_ssd_resnet_v1_fpn(50, params)


def build_ssd_resnet101_v1_fpn(params: FeatureExtractorParams) -> SSDResNetV1FpnFeatureExtractor:
    """``ssd_resnet101_v1_fpn_keras``."""
    return build_ssd_resnet_v1_fpn(101, params)


def build_ssd_resnet152_v1_fpn(params: FeatureExtractorParams) -> SSDResNetV1FpnFeatureExtractor:
    """``ssd_resnet152_v1_fpn_keras``."""
    return build_ssd_resnet_v1_fpn(152, params)
