"""TF 'SAME' padding: the amounts TF uses, and convs/pools that apply them."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from objdet.models.layers.padding import (
    Conv2dSame,
    MaxPool2dSame,
    make_conv2d,
    same_padding_amounts,
)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (320, 3, 2, (0, 1)),  # even input, stride 2: the extra pixel goes after
        (321, 3, 2, (1, 1)),
        (10, 3, 1, (1, 1)),
        (10, 1, 2, (0, 0)),
        (7, 7, 2, (3, 3)),
        (224, 7, 2, (2, 3)),  # ResNet's stem on an even input
        (5, 3, 3, (0, 1)),
        (2, 5, 1, (2, 2)),
    ],
)
def test_same_padding_amounts_follow_tensorflow(size, kernel, stride, expected):
    assert same_padding_amounts(size, kernel, stride) == expected


def test_strided_conv_pads_after_on_even_inputs():
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, 3, stride=2)
    features = torch.randn(1, 2, 8, 6)
    expected = F.conv2d(F.pad(features, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(features), expected)
    symmetric = F.conv2d(features, conv.weight, conv.bias, stride=2, padding=1)
    assert not torch.allclose(conv(features), symmetric)


def test_strided_conv_pads_symmetrically_on_odd_inputs():
    torch.manual_seed(1)
    conv = Conv2dSame(2, 3, 3, stride=2)
    features = torch.randn(1, 2, 9, 7)
    expected = F.conv2d(features, conv.weight, conv.bias, stride=2, padding=1)
    assert torch.allclose(conv(features), expected)


def test_stride_one_is_plain_conv_with_static_padding():
    conv = Conv2dSame(2, 2, 3)
    assert conv.padding == (1, 1)
    features = torch.randn(1, 2, 6, 6)
    assert torch.allclose(conv(features), F.conv2d(features, conv.weight, conv.bias, padding=1))


def test_max_pool_never_takes_the_padding():
    pool = MaxPool2dSame(3, 2)
    features = -torch.ones(1, 1, 4, 4)  # zero padding would win over every value
    assert pool(features).shape == (1, 1, 2, 2)
    assert torch.equal(pool(features), -torch.ones(1, 1, 2, 2))


def test_explicit_padding_is_symmetric_and_rejects_even_kernels():
    conv = make_conv2d(2, 2, 3, stride=2, padding="explicit")
    assert conv.padding == (1, 1) and type(conv) is torch.nn.Conv2d
    with pytest.raises(ValueError, match="even kernel"):
        make_conv2d(2, 2, 2, padding="explicit")
    with pytest.raises(ValueError, match="'same' or 'explicit'"):
        make_conv2d(2, 2, 3, padding="valid")  # type: ignore[arg-type]
