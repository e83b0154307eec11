"""Input preprocessing shared by the OD API's ResNet extractors (SSD FPN and Faster R-CNN,
Keras and slim): the VGG channel means subtracted on the 0..255 scale."""

from __future__ import annotations

import torch
from torch import Tensor

# The OD API's VGG-style channel means (RGB), subtracted on the 0..255 scale.
CHANNEL_MEANS = (123.68, 116.779, 103.939)


def subtract_channel_means(images: Tensor) -> Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] -> 0..255 minus :data:`CHANNEL_MEANS`."""
    means = torch.tensor(CHANNEL_MEANS, dtype=images.dtype, device=images.device)
    return images * 255.0 - means.view(1, 3, 1, 1)
