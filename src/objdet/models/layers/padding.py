"""TensorFlow's padding rules for convolutions and pooling.

TF ``padding='SAME'`` pads ``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)`` in all,
the smaller half before: a 3x3 stride-2 conv on an even-sized map pads 0 before and 1
after, where PyTorch's symmetric ``padding=1`` pads 1 and 1 and so samples other pixels.
The OD API's ``use_explicit_padding`` instead pads ``k - 1`` in all, the smaller half
before (``fixed_padding``), then convolves 'VALID': for odd kernels that is PyTorch's
symmetric ``k // 2``.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

PaddingMode = Literal["same", "explicit"]


def same_padding_amounts(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) TF 'SAME' padding along one axis of ``size`` pixels."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def pad_same(features: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int] = (1, 1), value: float = 0.0) -> Tensor:
    """Pad ``[B, C, H, W]`` as TF 'SAME' would before a 'VALID' conv or pool."""
    top, bottom = same_padding_amounts(int(features.shape[-2]), kernel[0], stride[0], dilation[0])
    left, right = same_padding_amounts(int(features.shape[-1]), kernel[1], stride[1], dilation[1])
    if top == bottom and left == right and top == 0 and left == 0:
        return features
    return F.pad(features, (left, right, top, bottom), value=value)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TF 'SAME' padding (computed from the input size at each call).

    Constructed like ``nn.Conv2d``; its ``padding`` argument is ignored. Where 'SAME' is
    symmetric (stride 1, odd kernel) the padding is static and this is plain ``nn.Conv2d``.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        kernel, stride, dilation = self.kernel_size, self.stride, self.dilation
        self._static = all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel)
        if self._static:
            self.padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))

    def forward(self, features: Tensor) -> Tensor:
        if self._static:
            return super().forward(features)
        padded = pad_same(features, self.kernel_size, self.stride, self.dilation)  # type: ignore[arg-type]
        return self._conv_forward(padded, self.weight, self.bias)


class MaxPool2dSame(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TF 'SAME' padding: padded cells never win (pad with -inf)."""

    def forward(self, features: Tensor) -> Tensor:
        kernel = _pair(self.kernel_size)
        stride = _pair(self.stride if self.stride is not None else self.kernel_size)
        padded = pad_same(features, kernel, stride, value=-math.inf)
        return F.max_pool2d(padded, kernel, stride)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def make_conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                groups: int = 1, bias: bool = True, dilation: int = 1,
                padding: PaddingMode = "same") -> nn.Conv2d:
    """A conv padded as the OD API pads it: TF 'SAME' or ``use_explicit_padding``."""
    if padding == "same":
        return Conv2dSame(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                          bias=bias, dilation=dilation)
    if padding != "explicit":
        raise ValueError(f"padding must be 'same' or 'explicit', got {padding!r}")
    if kernel_size % 2 == 0:
        raise ValueError(f"explicit padding of an even kernel ({kernel_size}) is not supported")
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                     bias=bias, dilation=dilation, padding=(kernel_size - 1) * dilation // 2)


__all__ = ["Conv2dSame", "MaxPool2dSame", "PaddingMode", "make_conv2d", "pad_same",
           "same_padding_amounts"]
