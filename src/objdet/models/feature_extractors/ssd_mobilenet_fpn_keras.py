"""The OD API's TF2 SSD MobileNet FPN extractors: ``ssd_mobilenet_v1_fpn_keras`` and
``ssd_mobilenet_v2_fpn_keras`` (FPNLite when ``use_depthwise``).

The Keras MobileNet is tapped at levels 2..5 (v1: ``Conv2d_3/5/11/13_pointwise``; v2:
``layer_4/7/14/19``, i.e. blocks 2, 5, 12 and ``out_relu``); ``KerasFpnTopDownFeatureMaps``
(:class:`objdet.models.necks.fpn.FpnTopDown`) runs over levels
``min_level..min(max_level, 5)`` on the *last* taps (the OD API takes
``image_features[4 - num_levels:]``, which are the named levels when ``max_level >= 5``);
levels above 5 are "coarse" 3x3 stride-2 convs on the previous map. Depths are
``max(int(additional_layer_depth * depth_multiplier), min_depth)``. With ``use_depthwise``,
v1's ``conv_pw_12``/``conv_pw_13`` have 512/256 filters before ``alpha`` (its ``conv_defs``);
v2's FPN extractor passes no ``conv_defs``, so its ``Conv_1`` keeps 1280.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.keras_mobilenet_v1 import KerasMobileNetV1
from objdet.models.backbones.keras_mobilenet_v2 import KerasMobileNetV2
from objdet.models.checkpoints.variable_map import Target, conv_targets
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.ssd_mobilenet_keras import (
    KerasMobileNet,
    base_hyperparams,
    norm_targets,
    prefixed,
)
from objdet.models.hyperparams import ConvHyperparams, make_activation, make_batch_norm
from objdet.models.layers.padding import PaddingMode, make_conv2d
from objdet.models.layers.separable_conv import SeparableConv2d, separable_conv_targets
from objdet.models.necks.fpn import FpnTopDown, keras_use_bias

_BASE_MAX_LEVEL = 5  # the MobileNets' coarsest tap, stride 32


class CoarseLayer(nn.Module):
    """``bottom_up_Conv2d_N``: ``[B, C, H, W] -> [B, C, ceil(H / 2), ceil(W / 2)]``, a 3x3
    stride-2 conv (Keras ``SeparableConv2D`` with ``use_depthwise``), norm, activation."""

    def __init__(self, *, channels: int, hyperparams: ConvHyperparams, use_depthwise: bool,
                 padding: PaddingMode) -> None:
        super().__init__()
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = True  # create_conv_block regularizes the depthwise kernel
        self.padding: PaddingMode = padding
        self.hyperparams = hyperparams
        bias = keras_use_bias(hyperparams)
        self.conv: nn.Module
        if use_depthwise:
            self.conv = SeparableConv2d(channels, channels, 3, stride=2, bias=bias,
                                        padding=padding)
        else:
            self.conv = make_conv2d(channels, channels, 3, stride=2, bias=bias, padding=padding)
        self.norm = (make_batch_norm(channels, hyperparams.batch_norm)
                     if hyperparams.batch_norm is not None else nn.Identity())
        self.activation = make_activation(hyperparams.activation)

    def forward(self, features: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv(features)))

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to the layer's Keras list (``_coarse_feature_layers/<i>/``): a
        ``fixed_padding`` Lambda first with explicit padding, then conv, norm, activation."""
        index = 1 if self.padding == "explicit" else 0
        if isinstance(self.conv, SeparableConv2d):
            targets = separable_conv_targets(str(index), "conv",
                                             bias=self.conv.pointwise.bias is not None)
        else:
            assert isinstance(self.conv, nn.Conv2d)
            targets = conv_targets(str(index), "conv", bias=self.conv.bias is not None)
        targets.update(norm_targets(str(index + 1), "norm", self.hyperparams))
        return targets


class SSDMobileNetFpnKerasFeatureExtractor(nn.Module):
    """``forward(preprocessed [B, 3, H, W]) -> list`` of ``max_level - min_level + 1`` maps
    (finest first, stride ``2**level``), each ``out_channels[i]`` deep."""

    def __init__(self, *, base: KerasMobileNet, fpn: FpnTopDown, coarse_layers: list[CoarseLayer]
                 ) -> None:
        super().__init__()
        self.base = base
        self.fpn = fpn
        self.coarse_layers = nn.ModuleList(coarse_layers)
        self.num_fpn_levels = len(fpn.in_channels)
        self.out_channels: list[int] = list(fpn.out_channels) + [fpn.depth] * len(coarse_layers)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> [-1, 1] (the OD API's ``(2 / 255) * x - 1``)."""
        return images * 2.0 - 1.0

    def forward(self, images: Tensor) -> list[Tensor]:
        taps = self.base(images)
        maps = self.fpn(taps[len(taps) - self.num_fpn_levels:])
        last = maps[-1]
        for layer in self.coarse_layers:
            last = layer(last)
            maps.append(last)
        return maps

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``."""
        assert isinstance(self.base, KerasMobileNetV1 | KerasMobileNetV2)
        targets = prefixed("classification_backbone", self.base.tf2_variable_map(), "base")
        targets.update(prefixed("_fpn_features_generator", self.fpn.tf2_variable_map(), "fpn"))
        for index, layer in enumerate(self.coarse_layers):
            assert isinstance(layer, CoarseLayer)
            targets.update(prefixed(f"_coarse_feature_layers/{index}", layer.tf2_variable_map(),
                                    f"coarse_layers.{index}"))
        return targets


def _assemble(base: KerasMobileNet, params: FeatureExtractorParams
              ) -> SSDMobileNetFpnKerasFeatureExtractor:
    assert params.fpn is not None
    fpn_params = params.fpn
    base_max_level = min(fpn_params.max_level, _BASE_MAX_LEVEL)
    num_levels = base_max_level + 1 - fpn_params.min_level
    depth = max(int(fpn_params.additional_layer_depth * params.depth_multiplier), params.min_depth)
    fpn = FpnTopDown(in_channels=base.out_channels[len(base.out_channels) - num_levels:],
                     depth=depth, hyperparams=params.hyperparams,
                     use_depthwise=params.use_depthwise, padding=params.padding)
    coarse = [CoarseLayer(channels=depth, hyperparams=params.hyperparams,
                          use_depthwise=params.use_depthwise, padding=params.padding)
              for _ in range(base_max_level + 1, fpn_params.max_level + 1)]
    return SSDMobileNetFpnKerasFeatureExtractor(base=base, fpn=fpn, coarse_layers=coarse)


def _check_levels(params: FeatureExtractorParams) -> None:
    if params.fpn is None:
        raise ValueError("this extractor needs an fpn { } block")
    if not 2 <= params.fpn.min_level <= _BASE_MAX_LEVEL:
        raise ValueError(f"fpn.min_level must be in 2..{_BASE_MAX_LEVEL} (MobileNet taps), "
                         f"got {params.fpn.min_level}")
    if params.bifpn is not None:
        raise ValueError("bifpn is not supported by this extractor")


def build_ssd_mobilenet_v1_fpn_keras(params: FeatureExtractorParams
                                     ) -> SSDMobileNetFpnKerasFeatureExtractor:
    """``ssd_mobilenet_v1_fpn_keras``: taps ``Conv2d_3/5/11/13_pointwise``."""
    _check_levels(params)
    conv_defs = {"conv_pw_12": 512, "conv_pw_13": 256} if params.use_depthwise else None
    base = KerasMobileNetV1(
        endpoints=("conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"),
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=base_hyperparams(params), padding=params.padding, conv_defs=conv_defs)
    return _assemble(base, params)


def build_ssd_mobilenet_v2_fpn_keras(params: FeatureExtractorParams
                                     ) -> SSDMobileNetFpnKerasFeatureExtractor:
    """``ssd_mobilenet_v2_fpn_keras`` (FPNLite with ``use_depthwise``): taps ``layer_4``,
    ``layer_7``, ``layer_14`` and ``layer_19``."""
    _check_levels(params)
    base = KerasMobileNetV2(
        endpoints=("block_2", "block_5", "block_12", "out_relu"),
        depth_multiplier=params.depth_multiplier, min_depth=params.min_depth,
        hyperparams=base_hyperparams(params), padding=params.padding)
    return _assemble(base, params)
