"""SSD slim ResNet v1 FPN (RetinaNet) extractors: ``ssd_resnet{50,101,152}_v1_fpn`` (TF1).

As the OD API's ``SSDResnetV1FpnFeatureExtractor`` (``models/ssd_resnet_v1_fpn_feature_
extractor.py``): slim's ``resnet_v1_{depth}``
(:class:`~objdet.models.backbones.resnet_v1_slim.ResNetV1Slim`) with
``store_non_strided_activations=True``, so ``block1..block4`` come out at strides 4, 8, 16,
32 (level ``l`` = ``block{l-1}``); blocks ``fpn.min_level - 1 .. min(fpn.max_level, 5) - 1``
go through the TF1 ``fpn_top_down_feature_maps``
(:class:`~objdet.models.necks.slim_fpn.SlimFpnTopDown`: 1x1 projections with bias, the
*unsmoothed* sums upsampled, 3x3 smoothing + batch norm + activation on each output), and
levels above 5 come from 3x3 stride-2 'SAME' ``slim.conv2d`` layers (``bottom_up_block{l}``)
applied one after the other to the level-5 map. Unlike the Keras extractor, this one honours ``fpn { min_level max_level
additional_layer_depth }``.

Widths: base blocks ``max(int(d * depth_multiplier), min_depth)`` (``min_base_depth`` is the
config's ``min_depth``; the stem stays 64), pyramid layers
``max(int(additional_layer_depth * depth_multiplier), min_depth)``. The base runs under
``resnet_arg_scope()`` (batch norm decay 0.997 / epsilon 1e-5, ReLU, L2 0.0001), or with
``override_base_feature_extractor_hyperparams`` under ``conv_hyperparams``, which always
build the pyramid. Preprocessing: 0..255 minus the VGG channel means.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.resnet_v1_slim import (
    DEFAULT_HYPERPARAMS,
    ResNetV1Slim,
    resnet_v1_slim_blocks,
)
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.preprocessing import subtract_channel_means
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.slim_conv import slim_conv_unit
from objdet.models.necks.slim_fpn import SlimFpnTopDown

# shape_utils.check_min_image_dim(129, ...) in the OD API's extract_features.
MIN_IMAGE_SIZE = 129
# fpn_min_level maps to block{min_level - 1}: levels 2..5 are the four ResNet blocks.
_BASE_LEVELS = range(2, 6)


class SSDResNetV1FpnSlimFeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, H, W]) -> list`` of ``max_level - min_level + 1`` maps
    (finest first, level ``l`` of stride ``2**l``, ``out_channels`` each)."""

    def __init__(self, *, base: ResNetV1Slim, min_level: int, max_level: int, depth: int,
                 hyperparams: ConvHyperparams) -> None:
        super().__init__()
        if min_level not in _BASE_LEVELS:
            raise ValueError(f"fpn.min_level must be in 2..5 (ResNet blocks 1..4), got "
                             f"{min_level}")
        if max_level < min_level:
            raise ValueError(f"fpn.max_level {max_level} < fpn.min_level {min_level}")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self.min_level, self.max_level = min_level, max_level
        self.base_max_level = min(max_level, 5)
        self.classification_backbone = base
        taps = base.out_channels[min_level - 2 : self.base_max_level - 1]
        self.fpn = SlimFpnTopDown(in_channels=taps, depth=depth, hyperparams=hyperparams)
        # bottom_up_block{l}: slim.conv2d 3x3 stride 2 'SAME' under conv_hyperparams
        self.coarse_layers = nn.ModuleList(
            slim_conv_unit(depth, depth, 3, stride=2, hyperparams=hyperparams, padding="same")
            for _ in range(self.base_max_level, max_level))
        self.out_channels = [depth] * (max_level - min_level + 1)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> 0..255 minus the channel means."""
        return subtract_channel_means(images)

    def forward(self, images: Tensor) -> list[Tensor]:
        if min(images.shape[-2:]) < MIN_IMAGE_SIZE:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is too small: the ResNet "
                             f"FPN extractor needs height and width >= {MIN_IMAGE_SIZE}")
        blocks = self.classification_backbone(images)  # [block1..block4], strides 4..32
        maps = self.fpn(blocks[self.min_level - 2 : self.base_max_level - 1])
        last = maps[-1]
        for layer in self.coarse_layers:
            last = layer(last)  # [B, depth, ceil(H / 2), ceil(W / 2)]
            maps.append(last)
        return maps


def build_ssd_resnet_v1_fpn_slim(depth: int, params: FeatureExtractorParams
                                 ) -> SSDResNetV1FpnSlimFeatureExtractor:
    """The ``ssd_resnet{depth}_v1_fpn`` extractor for ``params``.

    Raises ValueError without ``fpn { }``, for ``use_explicit_padding`` (the OD API raises
    too), ``use_depthwise`` (the OD API ignores it; objdet refuses rather than ignore a
    field, as for the Keras extractor) and ``force_use_bias`` (slim hyperparams raise).
    """
    if params.fpn is None:
        raise ValueError("ssd_resnet*_v1_fpn needs an fpn { min_level max_level } block")
    if params.bifpn is not None:
        raise ValueError("ssd_resnet*_v1_fpn takes fpn { }, not bifpn { }")
    if params.padding == "explicit":
        raise ValueError("use_explicit_padding is not a valid option of this extractor "
                         "(the OD API refuses it too)")
    if params.use_depthwise:
        raise ValueError("use_depthwise is not an option of this extractor (the OD API "
                         "ignores it)")
    hyperparams = params.hyperparams
    if hyperparams.force_use_bias:
        raise ValueError("conv_hyperparams.force_use_bias is a Keras-only option (the OD "
                         "API's slim hyperparams refuse it)")
    base_hyperparams = hyperparams if params.override_base_hyperparams else DEFAULT_HYPERPARAMS
    blocks = resnet_v1_slim_blocks(depth, depth_multiplier=params.depth_multiplier,
                                   min_base_depth=params.min_depth)
    base = ResNetV1Slim(blocks=blocks, hyperparams=base_hyperparams,
                        store_non_strided_activations=True)
    pyramid_depth = max(int(params.fpn.additional_layer_depth * params.depth_multiplier),
                        params.min_depth)
    return SSDResNetV1FpnSlimFeatureExtractor(
        base=base, min_level=params.fpn.min_level, max_level=params.fpn.max_level,
        depth=pyramid_depth, hyperparams=hyperparams)


def build_ssd_resnet50_v1_fpn_slim(params: FeatureExtractorParams
                                   ) -> SSDResNetV1FpnSlimFeatureExtractor:
    """``ssd_resnet50_v1_fpn``."""
    return build_ssd_resnet_v1_fpn_slim(50, params)


def build_ssd_resnet101_v1_fpn_slim(params: FeatureExtractorParams
                                    ) -> SSDResNetV1FpnSlimFeatureExtractor:
    """``ssd_resnet101_v1_fpn``."""
    return build_ssd_resnet_v1_fpn_slim(101, params)


def build_ssd_resnet152_v1_fpn_slim(params: FeatureExtractorParams
                                    ) -> SSDResNetV1FpnSlimFeatureExtractor:
    """``ssd_resnet152_v1_fpn``."""
    return build_ssd_resnet_v1_fpn_slim(152, params)
