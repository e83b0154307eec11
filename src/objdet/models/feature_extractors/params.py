"""What a ``feature_extractor`` message says, as plain values every SSD extractor takes.

The SSD builder fills :class:`FeatureExtractorParams` from the config; extractor factories
(``SSD_FEATURE_EXTRACTORS``) receive it and never see the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.padding import PaddingMode


@dataclass(frozen=True)
class FpnParams:
    """``fpn { }``: pyramid levels ``min_level..max_level`` (stride ``2**level``) and the
    channel depth of the pyramid's layers."""

    min_level: int = 3
    max_level: int = 7
    additional_layer_depth: int = 256


@dataclass(frozen=True)
class BiFpnParams:
    """``bifpn { }``: EfficientDet's BiFPN levels, iterations, width and node combination."""

    min_level: int = 3
    max_level: int = 7
    num_iterations: int = 3
    num_filters: int = 64
    combine_method: str = "fast_attention"
    use_native_resize_op: bool = False


@dataclass(frozen=True)
class FeatureExtractorParams:
    """The ``feature_extractor`` settings SSD extractors understand.

    ``padding`` is ``"explicit"`` with ``use_explicit_padding`` and TF's ``"same"`` otherwise
    (see :mod:`objdet.models.layers.padding`). ``fpn``/``bifpn`` are set when the config has
    that pyramid; an extractor that needs one and has none is a ConfigError in the builder.
    """

    depth_multiplier: float
    min_depth: int
    hyperparams: ConvHyperparams
    num_layers: int = 6
    use_depthwise: bool = False
    override_base_hyperparams: bool = False
    padding: PaddingMode = "same"
    fpn: FpnParams | None = None
    bifpn: BiFpnParams | None = None
    use_hardswish: bool = False
