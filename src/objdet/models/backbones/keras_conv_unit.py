"""The conv (+ batch norm) (+ activation) unit of the OD API's Keras MobileNets.

The OD API builds its Keras MobileNets (``keras_models/mobilenet_v1.py`` / ``mobilenet_v2.py``)
by handing the Keras application a ``_LayersOverride``: every conv is padded TF 'SAME' (or
``fixed_padding`` with ``use_explicit_padding``), never has a bias, and is followed by a
``FreezableBatchNorm`` and ReLU6 -- or, with ``override_base_feature_extractor_hyperparams``,
by the batch norm and activation of the extractor's ``conv_hyperparams``. This module builds
that unit and its TF2 variable map.
"""

from __future__ import annotations

from torch import nn

from objdet.models.checkpoints.variable_map import (
    Target,
    batch_norm_targets,
    conv_targets,
)
from objdet.models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import PaddingMode, make_conv2d

# _LayersOverride without conv_hyperparams: FreezableBatchNorm(epsilon=1e-3,
# momentum=0.9997) (Keras momentum = the decay; PyTorch's is 1 - decay) and ReLU6.
DEFAULT_BASE_HYPERPARAMS = ConvHyperparams(
    activation="RELU_6",
    batch_norm=BatchNormParams(momentum=1.0 - 0.9997, epsilon=0.001, scale=True, center=True),
    weight_decay=0.00004,
    regularize_depthwise=True,
)


def keras_conv_unit(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    hyperparams: ConvHyperparams,
    padding: PaddingMode,
    stride: int = 1,
    depthwise: bool = False,
    activation: bool = True,
) -> nn.Sequential:
    """``Sequential(conv[, batch_norm][, activation])``, the conv without a bias (the Keras
    application asks for ``use_bias=False`` and the override keeps it). ``padding`` applies to
    kernels > 1 ('SAME' for a 1x1 conv pads nothing)."""
    conv = make_conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        groups=in_channels if depthwise else 1,
        bias=False,
        padding=padding if kernel_size > 1 else "same",
    )
    layers: list[nn.Module] = [conv]
    if hyperparams.batch_norm is not None:
        layers.append(make_batch_norm(out_channels, hyperparams.batch_norm))
    if activation:
        layers.append(make_activation(hyperparams.activation))
    return nn.Sequential(*layers)


def keras_unit_targets(
    unit: nn.Sequential, torch_prefix: str, first_index: int, hyperparams: ConvHyperparams
) -> tuple[dict[str, Target], int]:
    """The variables of a :func:`keras_conv_unit` stored as ``layer_with_weights-N`` (N from
    ``first_index``: the conv, then its batch norm). Returns (targets, next index)."""
    conv = unit[0]
    assert isinstance(conv, nn.Conv2d)
    depthwise = conv.groups > 1
    targets = conv_targets(
        f"layer_with_weights-{first_index}", f"{torch_prefix}.0", depthwise=depthwise, bias=False
    )
    index = first_index + 1
    batch_norm = hyperparams.batch_norm
    if batch_norm is not None:
        norm_targets = batch_norm_targets(f"layer_with_weights-{index}", f"{torch_prefix}.1")
        targets.update(drop_absent_batch_norm_variables(norm_targets, batch_norm))
        index += 1
    return targets, index


def drop_absent_batch_norm_variables(
    targets: dict[str, Target], batch_norm: BatchNormParams
) -> dict[str, Target]:
    """Keras stores no ``gamma`` with ``scale: false`` and no ``beta`` with ``center: false``."""
    absent = set()
    if not batch_norm.scale:
        absent.add("/gamma/")
    if not batch_norm.center:
        absent.add("/beta/")
    return {key: target for key, target in targets.items()
            if not any(name in key for name in absent)}
