"""An SSD feature extractor: a backbone's taps followed by the SSD extra layers."""

from __future__ import annotations

from torch import Tensor, nn

from objdet.models.necks.ssd_extra_layers import EXTRA_LAYER_DEPTHS, SSDExtraLayers


class SSDFeatureExtractor(nn.Module):
    """Base taps + extra layers. ``forward(preprocessed [B, 3, H, W]) -> list`` of maps.

    ``preprocess`` maps images in ``[0, 1]`` to the ``[-1, 1]`` range MobileNets expect.
    ``out_channels`` lists the channels of each returned map (at most 6 maps).
    """

    def __init__(self, *, base: nn.Module, extra_layers: SSDExtraLayers, num_layers: int) -> None:
        super().__init__()
        if not 1 <= num_layers <= len(EXTRA_LAYER_DEPTHS):
            raise ValueError(f"num_layers must be in 1..6, got {num_layers}")
        self.base = base
        self.extra_layers = extra_layers
        self.num_layers = num_layers
        base_channels: list[int] = list(base.out_channels)  # type: ignore[arg-type]
        self.out_channels = (base_channels + extra_layers.out_channels)[:num_layers]

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> [-1, 1] (the OD API's ``(2 / 255) * x - 1``)."""
        return images * 2.0 - 1.0

    def forward(self, images: Tensor) -> list[Tensor]:
        maps = list(self.base(images))
        maps.extend(self.extra_layers(maps[-1]))
        return maps[: self.num_layers]
