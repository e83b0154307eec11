"""MobileNet v2 as the OD API's TF2 ``keras_models.mobilenet_v2.mobilenet_v2`` builds it.

That is ``tf.keras.applications.MobileNetV2`` with the OD API's ``_LayersOverride``:

- every conv pads TF 'SAME' (asymmetric for stride 2; the application's ``ZeroPadding2D``
  becomes a no-op) or, with ``use_explicit_padding``, ``fixed_padding`` + 'VALID';
- a conv with fewer than ``min_depth`` filters gets ``min_depth``, except the ``*_expand``
  convs (``expansion * in_channels``);
- ``Conv_1`` has ``_make_divisible(1280 * alpha, 8)`` filters also when ``alpha < 1``
  (or the ``conv_defs`` value, FPNLite's 256);
- batch norm and activation: ``FreezableBatchNorm(eps 1e-3, momentum 0.9997)`` + ReLU6, or
  the extractor's ``conv_hyperparams`` with ``override_base_feature_extractor_hyperparams``.

The application decides a block's residual from its *own* width (before ``min_depth``), so
with ``min_depth`` a block whose in and out channels are equal may still have no residual;
this module reproduces that. Keras endpoint names are kept: ``block_13_expand_relu``
(the OD API's ``layer_15/expansion_output``), ``block_N`` (block N's output: its
``block_N_add`` or ``block_N_project_BN``) and ``out_relu`` (``layer_19``).
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.keras_conv_unit import keras_conv_unit, keras_unit_targets
from objdet.models.checkpoints.variable_map import Target
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.padding import PaddingMode

# (expansion, filters, stride) of blocks 0..16 of tf.keras.applications.MobileNetV2.
_BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
_LAST_CONV_FILTERS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Keras MobileNetV2's ``_make_divisible``: nearest multiple of ``divisor``, never more
    than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """``block_N``: [1x1 expand,] 3x3 depthwise, 1x1 project (no activation) [+ input]."""

    def __init__(
        self,
        *,
        in_channels: int,
        expanded_channels: int | None,
        out_channels: int,
        stride: int,
        residual: bool,
        hyperparams: ConvHyperparams,
        padding: PaddingMode,
    ) -> None:
        super().__init__()
        unit = {"hyperparams": hyperparams, "padding": padding}
        self.expand = None
        channels = in_channels
        if expanded_channels is not None:
            self.expand = keras_conv_unit(in_channels, expanded_channels, 1, **unit)  # type: ignore[arg-type]
            channels = expanded_channels
        self.depthwise = keras_conv_unit(
            channels, channels, 3, stride=stride, depthwise=True, **unit  # type: ignore[arg-type]
        )
        self.project = keras_conv_unit(channels, out_channels, 1, activation=False, **unit)  # type: ignore[arg-type]
        self.residual = residual

    def forward_with_expansion(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, C_in, H, W]`` -> (block output ``[B, C_out, H/s, W/s]``, expansion output)."""
        expanded = features if self.expand is None else self.expand(features)
        output = self.project(self.depthwise(expanded))
        if self.residual:
            output = output + features
        return output, expanded

    def forward(self, features: Tensor) -> Tensor:
        return self.forward_with_expansion(features)[0]


class KerasMobileNetV2(nn.Module):
    """The OD API's Keras MobileNet v2 without its classifier.

    ``forward(images [B, 3, H, W]) -> list`` of the ``endpoints`` (names in the module
    docstring), in the order given. ``hyperparams`` are the conv_hyperparams with
    ``override_base_feature_extractor_hyperparams`` and the network's defaults otherwise
    (:data:`~objdet.models.backbones.keras_conv_unit.DEFAULT_BASE_HYPERPARAMS`).
    """

    def __init__(
        self,
        *,
        endpoints: tuple[str, ...],
        depth_multiplier: float,
        min_depth: int,
        hyperparams: ConvHyperparams,
        padding: PaddingMode = "same",
        last_conv_filters: int = _LAST_CONV_FILTERS,
    ) -> None:
        super().__init__()
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        self.hyperparams = hyperparams
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        alpha = depth_multiplier

        def with_min_depth(filters: int) -> int:
            return max(filters, min_depth) if min_depth else filters

        channels = with_min_depth(make_divisible(32 * alpha, 8))
        self.stem = keras_conv_unit(3, channels, 3, stride=2, hyperparams=hyperparams,
                                    padding=padding)
        self.blocks = nn.ModuleList()
        self.channels: dict[str, int] = {}
        for index, (expansion, filters, stride) in enumerate(_BLOCKS):
            application_filters = make_divisible(int(filters * alpha), 8)
            out_channels = with_min_depth(application_filters)
            expanded = None if index == 0 else expansion * channels
            self.blocks.append(InvertedResidual(
                in_channels=channels, expanded_channels=expanded, out_channels=out_channels,
                stride=stride, residual=stride == 1 and channels == application_filters,
                hyperparams=hyperparams, padding=padding))
            self.channels[f"block_{index}"] = out_channels
            if expanded is not None:
                self.channels[f"block_{index}_expand_relu"] = expanded
            channels = out_channels
        if alpha < 1.0:
            last_conv_filters = make_divisible(last_conv_filters * alpha, 8)
        last_conv_filters = with_min_depth(last_conv_filters)
        self.last_conv = keras_conv_unit(channels, last_conv_filters, 1,
                                         hyperparams=hyperparams, padding=padding)
        self.channels["out_relu"] = last_conv_filters
        unknown = [name for name in endpoints if name not in self.channels]
        if unknown:
            raise ValueError(f"unknown MobileNet v2 endpoints {unknown}")
        self.endpoints = endpoints
        self.out_channels: list[int] = [self.channels[name] for name in endpoints]

    def forward(self, images: Tensor) -> list[Tensor]:
        outputs: dict[str, Tensor] = {}
        features = self.stem(images)
        for index, block in enumerate(self.blocks):
            assert isinstance(block, InvertedResidual)
            features, expanded = block.forward_with_expansion(features)
            outputs[f"block_{index}"] = features
            outputs[f"block_{index}_expand_relu"] = expanded
        outputs["out_relu"] = self.last_conv(features)
        return [outputs[name] for name in self.endpoints]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys ``layer_with_weights-N/...`` relative to the Keras model (the OD API's
        ``classification_backbone``), N counting conv and batch norm layers in Keras order."""
        hyper = self.hyperparams
        targets, index = keras_unit_targets(self.stem, "stem", 0, hyper)
        for block_index, block in enumerate(self.blocks):
            assert isinstance(block, InvertedResidual)
            for part in ("expand", "depthwise", "project"):
                unit = getattr(block, part)
                if unit is not None:
                    more, index = keras_unit_targets(
                        unit, f"blocks.{block_index}.{part}", index, hyper
                    )
                    targets.update(more)
        more, index = keras_unit_targets(self.last_conv, "last_conv", index, hyper)
        targets.update(more)
        return targets
