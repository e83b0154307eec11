"""The OD API's TF2 (Keras) SSD MobileNet feature extractors.

- ``ssd_mobilenet_v1_keras`` / ``ssd_mobilenet_v2_keras``: the Keras MobileNet taps
  ``conv_pw_11_relu``/``conv_pw_13_relu`` (v1) or ``block_13_expand_relu``/``out_relu``
  (v2), then ``KerasMultiResolutionFeatureMaps``' extra layers (``layer_depth [-1, -1, 512,
  256, 256, 128]``, a 1x1 conv to half depth, a 3x3 stride-2 conv or depthwise + 1x1).
- ``ssd_mobilenet_v1_fpn_keras`` / ``ssd_mobilenet_v2_fpn_keras`` (FPNLite with
  ``use_depthwise``): taps at levels 2..5, ``KerasFpnTopDownFeatureMaps`` over levels
  ``min_level..min(max_level, 5)``, then stride-2 3x3 "coarse" convs up to ``max_level``.

The backbone's batch norm and activation are the network's own (eps 1e-3, decay 0.9997,
ReLU6) unless ``override_base_feature_extractor_hyperparams``. Every module maps its TF2
checkpoint variables (keys relative to ``model/_feature_extractor/``).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from objdet.models.backbones.keras_conv_unit import (
    DEFAULT_BASE_HYPERPARAMS,
    drop_absent_batch_norm_variables,
)
from objdet.models.backbones.keras_mobilenet_v1 import KerasMobileNetV1
from objdet.models.backbones.keras_mobilenet_v2 import KerasMobileNetV2
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.ssd_feature_extractor import SSDFeatureExtractor
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.padding import PaddingMode
from objdet.models.necks.ssd_extra_layers import SSDExtraLayers

KerasMobileNet = KerasMobileNetV1 | KerasMobileNetV2


def base_hyperparams(params: FeatureExtractorParams) -> ConvHyperparams:
    """The backbone's hyperparams: the network's defaults, or the config's with
    ``override_base_feature_extractor_hyperparams`` (whose regularizer the OD API also puts
    on the depthwise kernels)."""
    if not params.override_base_hyperparams:
        return DEFAULT_BASE_HYPERPARAMS
    return replace(params.hyperparams, regularize_depthwise=True)


def norm_targets(tf_prefix: str, torch_prefix: str, hyperparams: ConvHyperparams
                  ) -> dict[str, Target]:
    if hyperparams.batch_norm is None:
        return {}
    return drop_absent_batch_norm_variables(
        batch_norm_targets(tf_prefix, torch_prefix), hyperparams.batch_norm)


def _block_targets(tf_prefix: str, torch_prefix: str, block: nn.Sequential, first_index: int,
                   hyperparams: ConvHyperparams) -> tuple[dict[str, Target], int]:
    """A ``make_conv_block`` (conv, [norm], activation) stored at Keras list indices
    ``first_index`` (conv), +1 (norm or identity Lambda), +2 (activation Lambda)."""
    conv = block[0]
    assert isinstance(conv, nn.Conv2d)
    targets = conv_targets(f"{tf_prefix}/{first_index}", f"{torch_prefix}.0",
                           depthwise=conv.groups > 1, bias=conv.bias is not None)
    targets.update(norm_targets(f"{tf_prefix}/{first_index + 1}", f"{torch_prefix}.1",
                                 hyperparams))
    return targets, first_index + 3


def multi_resolution_targets(extra: SSDExtraLayers, *, tf_prefix: str, torch_prefix: str,
                             hyperparams: ConvHyperparams, padding: PaddingMode,
                             first_map_index: int = 2) -> dict[str, Target]:
    """``KerasMultiResolutionFeatureMaps.convolutions/<map>/<layer>`` -> ``SSDExtraLayers``.

    Each new map's Keras list holds the 1x1 conv, norm, activation, then (with explicit
    padding) a ``fixed_padding`` Lambda, then the stride-2 conv(s), each with norm and
    activation; the Lambdas have no variables but take list indices.
    """
    targets: dict[str, Target] = {}
    for offset, block in enumerate(extra.blocks):
        assert isinstance(block, nn.Sequential)
        keras_prefix = f"{tf_prefix}/convolutions/{first_map_index + offset}"
        index = 0
        for part_index, part in enumerate(block):
            assert isinstance(part, nn.Sequential)
            if part_index == 1 and padding == "explicit":
                index += 1  # the fixed_padding Lambda
            more, index = _block_targets(keras_prefix, f"{torch_prefix}.blocks.{offset}."
                                         f"{part_index}", part, index, hyperparams)
            targets.update(more)
    return targets


def prefixed(prefix: str, targets: dict[str, Target], torch_prefix: str) -> dict[str, Target]:
    return {f"{prefix}/{key}": Target(f"{torch_prefix}.{target.name}", target.layout)
            for key, target in targets.items()}


class SSDMobileNetKerasFeatureExtractor(SSDFeatureExtractor):
    """Keras MobileNet taps + the multi-resolution extra layers (see the module docstring).

    ``generator_name`` is the attribute the OD API keeps the extra layers under
    (``feature_map_generator`` in v2, ``_feature_map_generator`` in v1).
    """

    def __init__(self, *, base: KerasMobileNet, extra_layers: SSDExtraLayers, num_layers: int,
                 extra_hyperparams: ConvHyperparams, padding: PaddingMode,
                 generator_name: str) -> None:
        super().__init__(base=base, extra_layers=extra_layers, num_layers=num_layers)
        self.extra_hyperparams = extra_hyperparams
        self.padding: PaddingMode = padding
        self.generator_name = generator_name

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_feature_extractor/``."""
        assert isinstance(self.base, KerasMobileNetV1 | KerasMobileNetV2)
        targets = prefixed("classification_backbone", self.base.tf2_variable_map(), "base")
        targets.update(multi_resolution_targets(
            self.extra_layers, tf_prefix=self.generator_name, torch_prefix="extra_layers",
            hyperparams=self.extra_hyperparams, padding=self.padding))
        return targets


def _check_no_pyramid(params: FeatureExtractorParams) -> None:
    if params.fpn is not None or params.bifpn is not None:
        raise ValueError("this extractor has no feature pyramid; remove fpn/bifpn or use its "
                         "_fpn_keras type")


def build_ssd_mobilenet_v1_keras(params: FeatureExtractorParams) -> SSDMobileNetKerasFeatureExtractor:
    """``ssd_mobilenet_v1_keras``: taps ``Conv2d_11_pointwise`` and ``Conv2d_13_pointwise``."""
    _check_no_pyramid(params)
    base = KerasMobileNetV1(
        endpoints=("conv_pw_11_relu", "conv_pw_13_relu"), depth_multiplier=params.depth_multiplier,
        min_depth=params.min_depth, hyperparams=base_hyperparams(params), padding=params.padding)
    return _assemble(base, params, generator_name="_feature_map_generator")


def build_ssd_mobilenet_v2_keras(params: FeatureExtractorParams) -> SSDMobileNetKerasFeatureExtractor:
    """``ssd_mobilenet_v2_keras``: taps ``layer_15/expansion_output`` and ``layer_19``."""
    _check_no_pyramid(params)
    base = KerasMobileNetV2(
        endpoints=("block_13_expand_relu", "out_relu"), depth_multiplier=params.depth_multiplier,
        min_depth=params.min_depth, hyperparams=base_hyperparams(params), padding=params.padding)
    return _assemble(base, params, generator_name="feature_map_generator")


def _assemble(base: KerasMobileNet, params: FeatureExtractorParams, *, generator_name: str
              ) -> SSDMobileNetKerasFeatureExtractor:
    extra = SSDExtraLayers(in_channels=base.out_channels[-1], params=params)
    if params.hyperparams.batch_norm is not None and not params.hyperparams.batch_norm.center:
        raise ValueError("conv_hyperparams.batch_norm.center: false is not supported by the "
                         "Keras SSD extra layers (their convs would need a bias)")
    return SSDMobileNetKerasFeatureExtractor(
        base=base, extra_layers=extra, num_layers=params.num_layers,
        extra_hyperparams=params.hyperparams, padding=params.padding,
        generator_name=generator_name)
