"""The bases of the OD API's TF1 (slim) SSD extractors, with the hyperparameters slim gives them.

A slim extractor builds its base under the network's own ``arg_scope`` and, with
``override_base_feature_extractor_hyperparams``, under the config's ``conv_hyperparams`` scope
too (which wins, and whose ``weights_regularizer`` also covers depthwise kernels).

- MobileNet v1 (``mobilenet_v1.mobilenet_v1_arg_scope``): batch norm decay 0.9997, epsilon
  0.001, ``center`` without ``scale``; truncated normal (0.09) kernels; L2 4e-5; ReLU6;
  depthwise kernels decayed only with ``regularize_depthwise`` (the FPN and PPN extractors
  set it, the embedded one does not).
- MobileNet v2 (``mobilenet_v2.training_scope(bn_decay=0.9997)``): the same, with a scaled
  batch norm, and depthwise kernels never decayed. Its ``V2_DEF`` defaults are set *inside*
  the config's scope, so even with the override the base keeps batch norm with ``center``
  and ``scale`` and ReLU6 (decay, epsilon, initializer and regularizer come from the config).
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from objdet.models.backbones.mobilenet_v1 import MobileNetV1
from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.hyperparams import BatchNormParams, ConvHyperparams, InitializerParams

_SLIM_MOBILENET_INITIALIZER = InitializerParams(kind="truncated_normal", stddev=0.09)

MOBILENET_V1_ARG_SCOPE = ConvHyperparams(
    activation="RELU_6",
    batch_norm=BatchNormParams(momentum=1.0 - 0.9997, epsilon=0.001, scale=False, center=True),
    initializer=_SLIM_MOBILENET_INITIALIZER,
    weight_decay=0.00004,
)
MOBILENET_V2_TRAINING_SCOPE = ConvHyperparams(
    activation="RELU_6",
    batch_norm=BatchNormParams(momentum=1.0 - 0.9997, epsilon=0.001, scale=True, center=True),
    initializer=_SLIM_MOBILENET_INITIALIZER,
    weight_decay=0.00004,
)


def check_slim_hyperparams(params: FeatureExtractorParams) -> None:
    """What ``hyperparams_builder.build`` (the slim builder) refuses."""
    if params.hyperparams.force_use_bias:
        raise ValueError("conv_hyperparams.force_use_bias is only supported by Keras extractors")


def slim_scope(hyperparams: ConvHyperparams) -> ConvHyperparams:
    """The config's ``conv_hyperparams`` as a slim scope: its regularizer decays depthwise
    kernels too (``regularize_depthwise`` is a Keras-only field)."""
    return replace(hyperparams, regularize_depthwise=True)


def mobilenet_v1_hyperparams(params: FeatureExtractorParams, *,
                             regularize_depthwise: bool) -> ConvHyperparams:
    """The hyperparameters of a slim MobileNet v1 base (see the module docstring)."""
    if params.override_base_hyperparams:
        return slim_scope(params.hyperparams)
    return replace(MOBILENET_V1_ARG_SCOPE, regularize_depthwise=regularize_depthwise)


def mobilenet_v2_hyperparams(params: FeatureExtractorParams) -> ConvHyperparams:
    """The hyperparameters of a slim MobileNet v2 base (see the module docstring)."""
    if not params.override_base_hyperparams:
        return MOBILENET_V2_TRAINING_SCOPE
    config = params.hyperparams
    norm = MOBILENET_V2_TRAINING_SCOPE.batch_norm
    if config.batch_norm is not None:
        norm = replace(config.batch_norm, center=True, scale=True)
    return replace(config, activation="RELU_6", batch_norm=norm, regularize_depthwise=True)


class MobileNetV1Endpoints(nn.Module):
    """A slim MobileNet v1 returning the endpoints ``names`` (e.g. ``Conv2d_11_pointwise``)
    as a list, in that order; ``out_channels`` are their depths."""

    def __init__(self, *, network: MobileNetV1, names: tuple[str, ...]) -> None:
        super().__init__()
        self.network = network
        self.names = names
        self.weight_decay: float = network.weight_decay
        self.regularize_depthwise: bool = network.regularize_depthwise
        self.out_channels: list[int] = [network.endpoint_channels(name) for name in names]

    def forward(self, images: Tensor) -> list[Tensor]:
        endpoints = self.network(images)
        return [endpoints[name] for name in self.names]


def preprocess_minus_one_to_one(images: Tensor) -> Tensor:
    """``[B, 3, H, W]`` in [0, 1] -> [-1, 1] (the OD API's ``(2 / 255) * x - 1``)."""
    return images * 2.0 - 1.0


__all__ = ["MOBILENET_V1_ARG_SCOPE", "MOBILENET_V2_TRAINING_SCOPE", "MobileNetV1Endpoints",
           "check_slim_hyperparams", "mobilenet_v1_hyperparams", "mobilenet_v2_hyperparams",
           "preprocess_minus_one_to_one", "slim_scope"]
