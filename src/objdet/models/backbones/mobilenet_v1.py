"""MobileNet v1 (Howard et al. 2017) as the OD API's slim ``mobilenet_v1_base`` builds it.

Channel counts follow slim: ``depth(d) = max(int(d * depth_multiplier), min_depth)``.
Layer names follow slim's endpoints (``Conv2d_0``, ``Conv2d_1_pointwise`` …
``Conv2d_13_pointwise``) so feature extractors can tap them by name.
"""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.hyperparams import ConvHyperparams, make_conv_block
from objdet.models.layers.padding import PaddingMode

# (stride, base channels) of the 13 depthwise-separable blocks after the 3x3 stem (32 ch, s2).
_SEPARABLE_BLOCKS = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)
_STEM_CHANNELS = 32

# slim's mobilenet_v1_arg_scope defaults: BN decay 0.9997, eps 0.001, ReLU6, L2 4e-5.
DEFAULT_HYPERPARAMS = ConvHyperparams(weight_decay=0.00004, regularize_depthwise=True)


def scaled_depth(depth: int, depth_multiplier: float, min_depth: int) -> int:
    """slim's ``depth`` function: channels after the width multiplier, at least ``min_depth``."""
    return max(int(depth * depth_multiplier), min_depth)


class MobileNetV1(nn.Module):
    """The MobileNet v1 convolutional base (no classifier head).

    ``forward(images [B, 3, H, W]) -> dict`` of every slim endpoint name to its feature map;
    ``Conv2d_11_pointwise`` has stride 16 and ``Conv2d_13_pointwise`` stride 32.
    """

    def __init__(
        self,
        *,
        depth_multiplier: float = 1.0,
        min_depth: int = 8,
        hyperparams: ConvHyperparams = DEFAULT_HYPERPARAMS,
        padding: PaddingMode = "explicit",
        separable_depths: tuple[int, ...] | None = None,
    ) -> None:
        """``padding`` pads the 3x3 convs (slim's ``use_explicit_padding`` or TF 'SAME');
        ``separable_depths`` replaces the 13 pointwise base depths (slim's ``conv_defs``)."""
        super().__init__()
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        depths = tuple(depth for _, depth in _SEPARABLE_BLOCKS)
        if separable_depths is not None:
            if len(separable_depths) != len(depths):
                raise ValueError(f"separable_depths needs {len(depths)} values, "
                                 f"got {len(separable_depths)}")
            depths = separable_depths
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        layers: dict[str, nn.Module] = {}
        channels = scaled_depth(_STEM_CHANNELS, depth_multiplier, min_depth)
        layers["Conv2d_0"] = make_conv_block(3, channels, 3, stride=2, hyperparams=hyperparams,
                                             padding=padding)
        for index, ((stride, _), base_depth) in enumerate(zip(_SEPARABLE_BLOCKS, depths),
                                                           start=1):
            out_channels = scaled_depth(base_depth, depth_multiplier, min_depth)
            layers[f"Conv2d_{index}_depthwise"] = make_conv_block(
                channels, channels, 3, stride=stride, groups=channels, hyperparams=hyperparams,
                padding=padding,
            )
            layers[f"Conv2d_{index}_pointwise"] = make_conv_block(
                channels, out_channels, 1, hyperparams=hyperparams
            )
            channels = out_channels
        self.layers = nn.ModuleDict(layers)

    def endpoint_channels(self, name: str) -> int:
        """Output channels of the endpoint ``name`` (e.g. ``Conv2d_13_pointwise``)."""
        block = self.layers[name]
        return block[0].out_channels  # type: ignore[index,return-value]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        endpoints: dict[str, Tensor] = {}
        features = images
        for name, layer in self.layers.items():
            features = layer(features)
            endpoints[name] = features
        return endpoints
