"""MobileNet v1 as the OD API's TF2 ``keras_models.mobilenet_v1.mobilenet_v1`` builds it.

That is ``tf.keras.applications.MobileNet`` with the OD API's ``_LayersOverride``: convs pad
TF 'SAME' (the application's ``ZeroPadding2D`` is a no-op) or ``fixed_padding`` + 'VALID'
with ``use_explicit_padding``; batch norm + ReLU6 as in
:mod:`objdet.models.backbones.keras_conv_unit`. Channels: the application scales a conv's
filters by ``alpha`` and the override scales them *again* (``int(int(f * alpha) * alpha)``,
so ``alpha`` 0.5 gives a quarter of the width), unless ``conv_defs`` names the conv (then
``int(conv_def * alpha)``); at least ``min_depth``. Endpoints are the Keras names
``conv_pw_N_relu`` (the OD API's ``Conv2d_N_pointwise``).
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.backbones.keras_conv_unit import keras_conv_unit, keras_unit_targets
from objdet.models.checkpoints.variable_map import Target
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.padding import PaddingMode

# (stride, filters) of conv_dw_N / conv_pw_N, N = 1..13, after conv1 (32 filters, stride 2).
_BLOCKS = (
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
)
_STEM_FILTERS = 32


class KerasMobileNetV1(nn.Module):
    """The OD API's Keras MobileNet v1 without its classifier.

    ``forward(images [B, 3, H, W]) -> list`` of the ``endpoints`` (``conv_pw_N_relu``) in the
    order given. ``conv_defs`` maps a pointwise conv name (``conv_pw_12``) to its filters
    before ``alpha``, as the OD API's FPN extractor does with ``use_depthwise``.
    """

    def __init__(
        self,
        *,
        endpoints: tuple[str, ...],
        depth_multiplier: float,
        min_depth: int,
        hyperparams: ConvHyperparams,
        padding: PaddingMode = "same",
        conv_defs: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        self.hyperparams = hyperparams
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        alpha = depth_multiplier
        conv_defs = conv_defs or {}

        def filters_of(name: str, filters: int) -> int:
            scaled = int(conv_defs[name] * alpha) if name in conv_defs else int(
                int(filters * alpha) * alpha)
            return max(scaled, min_depth) if min_depth else scaled

        channels = filters_of("conv1", _STEM_FILTERS)
        self.stem = keras_conv_unit(3, channels, 3, stride=2, hyperparams=hyperparams,
                                    padding=padding)
        self.depthwise = nn.ModuleList()
        self.pointwise = nn.ModuleList()
        self.channels: dict[str, int] = {}
        for index, (stride, filters) in enumerate(_BLOCKS, start=1):
            out_channels = filters_of(f"conv_pw_{index}", filters)
            self.depthwise.append(keras_conv_unit(
                channels, channels, 3, stride=stride, depthwise=True, hyperparams=hyperparams,
                padding=padding))
            self.pointwise.append(keras_conv_unit(channels, out_channels, 1,
                                                  hyperparams=hyperparams, padding=padding))
            self.channels[f"conv_pw_{index}_relu"] = out_channels
            channels = out_channels
        unknown = [name for name in endpoints if name not in self.channels]
        if unknown:
            raise ValueError(f"unknown MobileNet v1 endpoints {unknown}")
        self.endpoints = endpoints
        self.out_channels: list[int] = [self.channels[name] for name in endpoints]

    def forward(self, images: Tensor) -> list[Tensor]:
        outputs: dict[str, Tensor] = {}
        features = self.stem(images)
        for index, (depthwise, pointwise) in enumerate(
            zip(self.depthwise, self.pointwise), start=1
        ):
            features = pointwise(depthwise(features))
            outputs[f"conv_pw_{index}_relu"] = features
        return [outputs[name] for name in self.endpoints]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys ``layer_with_weights-N/...`` relative to the Keras model (the OD API's
        ``classification_backbone``), N counting conv and batch norm layers in Keras order."""
        hyper = self.hyperparams
        targets, index = keras_unit_targets(self.stem, "stem", 0, hyper)
        for block in range(len(self.depthwise)):
            for part in ("depthwise", "pointwise"):
                unit = getattr(self, part)[block]
                more, index = keras_unit_targets(unit, f"{part}.{block}", index, hyper)
                targets.update(more)
        return targets
