"""Inception v2 and v3 bases as tf_slim's ``nets/inception_v2.inception_v2_base`` and
``nets/inception_v3.inception_v3_base`` build them for the OD API's ``ssd_inception_v2`` /
``ssd_inception_v3`` extractors.

Every conv is ``slim.conv2d`` under the extractor's ``conv_hyperparams`` scope (norm and
activation from the config; a layer's own ``trunc_normal(stddev)`` initializer wins), with
``depth(d) = max(int(d * depth_multiplier), min_depth)`` filters. Inception v2 pads
everything TF 'SAME' and starts with a 7x7 ``separable_conv2d`` (channel multiplier
``min(int(depth(64) / 3), 8)``); Inception v3's stem and its reduction blocks pad 'VALID',
its ``Mixed`` blocks 'SAME'. 'SAME' average pools leave the padding out of the mean (TF),
which torchvision's Inception v3 (``count_include_pad=True``, ReLU, fixed widths) does not:
hence this module. Layer and scope names are slim's (``Mixed_4c/Branch_1/Conv2d_0b_3x3``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.slim_conv import (
    AvgPool2dSlim,
    MaxPool2dSlim,
    SlimPadding,
    slim_conv_unit,
    slim_separable_unit,
)


@dataclass(frozen=True)
class Conv:
    """``slim.conv2d(depth(depth), kernel, stride)`` named ``scope``."""

    scope: str
    depth: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: SlimPadding | None = None  # None: the block's default
    init_stddev: float | None = None


@dataclass(frozen=True)
class Pool:
    """``slim.max_pool2d`` / ``slim.avg_pool2d`` (3x3) named ``scope``."""

    scope: str
    kind: str  # "max" or "avg"
    stride: int = 1
    padding: SlimPadding | None = None


@dataclass(frozen=True)
class Split:
    """Two convs on the same input, concatenated (Inception v3's ``Mixed_7b/7c``)."""

    first: Conv
    second: Conv


Layer = Conv | Pool | Split
Branch = tuple[Layer, ...]


@dataclass(frozen=True)
class Mixed:
    """An inception block: its branches (``Branch_0`` ...) concatenated along channels."""

    name: str
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class Separable:
    """Inception v2's ``Conv2d_1a_7x7``: a 7x7 stride-2 ``separable_conv2d``."""

    scope: str
    depth: int


Endpoint = Conv | Pool | Mixed | Separable


class ConcatBranches(nn.Module):
    """``[B, C, H, W] -> [B, sum(C_i), H', W']``: ``branches`` applied to one input, concatenated."""

    def __init__(self, branches: dict[str, nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleDict(branches)

    def forward(self, features: Tensor) -> Tensor:
        return torch.cat([branch(features) for branch in self.branches.values()], dim=1)


def _scaled(depth: int, depth_multiplier: float, min_depth: int) -> int:
    return max(int(depth * depth_multiplier), min_depth)


class SlimInception(nn.Module):
    """``forward(images [B, 3, H, W]) -> dict`` of every endpoint name to its map.

    ``endpoints`` is the network as data (:data:`INCEPTION_V2`, :data:`INCEPTION_V3`);
    ``channels[name]`` is the depth of each endpoint.
    """

    def __init__(self, *, endpoints: Sequence[tuple[Endpoint, SlimPadding]],
                 depth_multiplier: float, min_depth: int, hyperparams: ConvHyperparams,
                 in_channels: int = 3) -> None:
        """``in_channels``: the input's depth (3 for images; a later part of the network,
        e.g. Faster R-CNN's second stage, starts from an endpoint's)."""
        super().__init__()
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = True  # slim's scope regularizer covers depthwise kernels
        self._hyperparams = hyperparams
        self._multiplier = depth_multiplier
        self._min_depth = min_depth
        self.layers = nn.ModuleDict()
        self.channels: dict[str, int] = {}
        channels = in_channels
        for spec, padding in endpoints:
            module, channels = self._build(spec, channels, padding)
            name = spec.name if isinstance(spec, Mixed) else spec.scope
            self.layers[name] = module
            self.channels[name] = channels

    def _depth(self, depth: int) -> int:
        return _scaled(depth, self._multiplier, self._min_depth)

    def _build(self, spec: Endpoint | Split, channels: int, padding: SlimPadding
               ) -> tuple[nn.Module, int]:
        if isinstance(spec, Conv):
            out = self._depth(spec.depth)
            return slim_conv_unit(channels, out, spec.kernel, stride=spec.stride,
                                  hyperparams=self._hyperparams,
                                  padding=spec.padding or padding,
                                  init_stddev=spec.init_stddev), out
        if isinstance(spec, Pool):
            pool_class = MaxPool2dSlim if spec.kind == "max" else AvgPool2dSlim
            return pool_class(3, spec.stride, spec.padding or padding), channels
        if isinstance(spec, Separable):
            out = self._depth(spec.depth)
            multiplier = min(int(out / 3), 8)
            return slim_separable_unit(channels, out, 7, stride=2, depth_multiplier=multiplier,
                                       hyperparams=self._hyperparams, padding=padding,
                                       init_stddev=1.0), out
        if isinstance(spec, Split):
            first, first_out = self._build(spec.first, channels, padding)
            second, second_out = self._build(spec.second, channels, padding)
            return ConcatBranches({spec.first.scope: first, spec.second.scope: second}), \
                first_out + second_out
        branches: dict[str, nn.Module] = {}
        total = 0
        for index, branch in enumerate(spec.branches):
            layers: dict[str, nn.Module] = {}
            branch_channels = channels
            for layer in branch:
                module, branch_channels = self._build(layer, branch_channels, padding)
                name = (layer.first.scope + "+" + layer.second.scope
                        if isinstance(layer, Split) else layer.scope)
                layers[name] = module
            branches[f"Branch_{index}"] = nn.Sequential(_named(layers))
            total += branch_channels
        return ConcatBranches(branches), total

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        endpoints: dict[str, Tensor] = {}
        features = images
        for name, layer in self.layers.items():
            features = layer(features)
            endpoints[name] = features
        return endpoints


def _named(layers: dict[str, nn.Module]) -> OrderedDict[str, nn.Module]:
    # nn.Sequential(OrderedDict) keeps slim's scope names as attribute names
    return OrderedDict((name.replace("+", "_and_"), module) for name, module in layers.items())


def _mixed_v2(name: str, b0: int, b1: tuple[int, int], b2: tuple[int, int, int],
              pool: str, b3: int) -> Mixed:
    return Mixed(name, (
        (Conv("Conv2d_0a_1x1", b0, (1, 1)),),
        (Conv("Conv2d_0a_1x1", b1[0], (1, 1), init_stddev=0.09),
         Conv("Conv2d_0b_3x3", b1[1], (3, 3))),
        (Conv("Conv2d_0a_1x1", b2[0], (1, 1), init_stddev=0.09),
         Conv("Conv2d_0b_3x3", b2[1], (3, 3)), Conv("Conv2d_0c_3x3", b2[2], (3, 3))),
        (Pool(f"{'Avg' if pool == 'avg' else 'Max'}Pool_0a_3x3", pool),
         Conv("Conv2d_0b_1x1", b3, (1, 1), init_stddev=0.1)),
    ))


def _reduction_v2(name: str, b0: tuple[int, int], b1: tuple[int, int, int]) -> Mixed:
    return Mixed(name, (
        (Conv("Conv2d_0a_1x1", b0[0], (1, 1), init_stddev=0.09),
         Conv("Conv2d_1a_3x3", b0[1], (3, 3), stride=2)),
        (Conv("Conv2d_0a_1x1", b1[0], (1, 1), init_stddev=0.09),
         Conv("Conv2d_0b_3x3", b1[1], (3, 3)), Conv("Conv2d_1a_3x3", b1[2], (3, 3), stride=2)),
        (Pool("MaxPool_1a_3x3", "max", stride=2),),
    ))


# inception_v2_base up to Mixed_5c; every layer pads 'SAME'.
INCEPTION_V2: tuple[tuple[Endpoint, SlimPadding], ...] = tuple((spec, "same") for spec in (
    Separable("Conv2d_1a_7x7", 64),
    Pool("MaxPool_2a_3x3", "max", stride=2),
    Conv("Conv2d_2b_1x1", 64, (1, 1), init_stddev=0.1),
    Conv("Conv2d_2c_3x3", 192, (3, 3)),
    Pool("MaxPool_3a_3x3", "max", stride=2),
    _mixed_v2("Mixed_3b", 64, (64, 64), (64, 96, 96), "avg", 32),
    _mixed_v2("Mixed_3c", 64, (64, 96), (64, 96, 96), "avg", 64),
    _reduction_v2("Mixed_4a", (128, 160), (64, 96, 96)),
    _mixed_v2("Mixed_4b", 224, (64, 96), (96, 128, 128), "avg", 128),
    _mixed_v2("Mixed_4c", 192, (96, 128), (96, 128, 128), "avg", 128),
    _mixed_v2("Mixed_4d", 160, (128, 160), (128, 160, 160), "avg", 96),
    _mixed_v2("Mixed_4e", 96, (128, 192), (160, 192, 192), "avg", 96),
    _reduction_v2("Mixed_5a", (128, 192), (192, 256, 256)),
    _mixed_v2("Mixed_5b", 352, (192, 320), (160, 224, 224), "avg", 128),
    _mixed_v2("Mixed_5c", 352, (192, 320), (192, 224, 224), "max", 128),
))


def _mixed_35(name: str, pool_depth: int, b1_names: tuple[str, str]) -> Mixed:
    return Mixed(name, (
        (Conv("Conv2d_0a_1x1", 64, (1, 1)),),
        (Conv(b1_names[0], 48, (1, 1)), Conv(b1_names[1], 64, (5, 5))),
        (Conv("Conv2d_0a_1x1", 64, (1, 1)), Conv("Conv2d_0b_3x3", 96, (3, 3)),
         Conv("Conv2d_0c_3x3", 96, (3, 3))),
        (Pool("AvgPool_0a_3x3", "avg"), Conv("Conv2d_0b_1x1", pool_depth, (1, 1))),
    ))


def _mixed_17(name: str, width: int) -> Mixed:
    return Mixed(name, (
        (Conv("Conv2d_0a_1x1", 192, (1, 1)),),
        (Conv("Conv2d_0a_1x1", width, (1, 1)), Conv("Conv2d_0b_1x7", width, (1, 7)),
         Conv("Conv2d_0c_7x1", 192, (7, 1))),
        (Conv("Conv2d_0a_1x1", width, (1, 1)), Conv("Conv2d_0b_7x1", width, (7, 1)),
         Conv("Conv2d_0c_1x7", width, (1, 7)), Conv("Conv2d_0d_7x1", width, (7, 1)),
         Conv("Conv2d_0e_1x7", 192, (1, 7))),
        (Pool("AvgPool_0a_3x3", "avg"), Conv("Conv2d_0b_1x1", 192, (1, 1))),
    ))


def _mixed_8(name: str, b1_second: str) -> Mixed:
    return Mixed(name, (
        (Conv("Conv2d_0a_1x1", 320, (1, 1)),),
        (Conv("Conv2d_0a_1x1", 384, (1, 1)),
         Split(Conv("Conv2d_0b_1x3", 384, (1, 3)), Conv(b1_second, 384, (3, 1)))),
        (Conv("Conv2d_0a_1x1", 448, (1, 1)), Conv("Conv2d_0b_3x3", 384, (3, 3)),
         Split(Conv("Conv2d_0c_1x3", 384, (1, 3)), Conv("Conv2d_0d_3x1", 384, (3, 1)))),
        (Pool("AvgPool_0a_3x3", "avg"), Conv("Conv2d_0b_1x1", 192, (1, 1))),
    ))


# inception_v3_base up to Mixed_7c: the stem pads 'VALID' (but Conv2d_2b_3x3), the Mixed
# blocks 'SAME' (but their stride-2 layers).
INCEPTION_V3: tuple[tuple[Endpoint, SlimPadding], ...] = (
    (Conv("Conv2d_1a_3x3", 32, (3, 3), stride=2), "valid"),
    (Conv("Conv2d_2a_3x3", 32, (3, 3)), "valid"),
    (Conv("Conv2d_2b_3x3", 64, (3, 3), padding="same"), "valid"),
    (Pool("MaxPool_3a_3x3", "max", stride=2), "valid"),
    (Conv("Conv2d_3b_1x1", 80, (1, 1)), "valid"),
    (Conv("Conv2d_4a_3x3", 192, (3, 3)), "valid"),
    (Pool("MaxPool_5a_3x3", "max", stride=2), "valid"),
    (_mixed_35("Mixed_5b", 32, ("Conv2d_0a_1x1", "Conv2d_0b_5x5")), "same"),
    (_mixed_35("Mixed_5c", 64, ("Conv2d_0b_1x1", "Conv_1_0c_5x5")), "same"),
    (_mixed_35("Mixed_5d", 64, ("Conv2d_0a_1x1", "Conv2d_0b_5x5")), "same"),
    (Mixed("Mixed_6a", (
        (Conv("Conv2d_1a_1x1", 384, (3, 3), stride=2, padding="valid"),),
        (Conv("Conv2d_0a_1x1", 64, (1, 1)), Conv("Conv2d_0b_3x3", 96, (3, 3)),
         Conv("Conv2d_1a_1x1", 96, (3, 3), stride=2, padding="valid")),
        (Pool("MaxPool_1a_3x3", "max", stride=2, padding="valid"),),
    )), "same"),
    (_mixed_17("Mixed_6b", 128), "same"),
    (_mixed_17("Mixed_6c", 160), "same"),
    (_mixed_17("Mixed_6d", 160), "same"),
    (_mixed_17("Mixed_6e", 192), "same"),
    (Mixed("Mixed_7a", (
        (Conv("Conv2d_0a_1x1", 192, (1, 1)),
         Conv("Conv2d_1a_3x3", 320, (3, 3), stride=2, padding="valid")),
        (Conv("Conv2d_0a_1x1", 192, (1, 1)), Conv("Conv2d_0b_1x7", 192, (1, 7)),
         Conv("Conv2d_0c_7x1", 192, (7, 1)),
         Conv("Conv2d_1a_3x3", 192, (3, 3), stride=2, padding="valid")),
        (Pool("MaxPool_1a_3x3", "max", stride=2, padding="valid"),),
    )), "same"),
    (_mixed_8("Mixed_7b", "Conv2d_0b_3x1"), "same"),
    (_mixed_8("Mixed_7c", "Conv2d_0c_3x1"), "same"),
)


def endpoints_after(network: Sequence[tuple[Endpoint, SlimPadding]], last: str
                    ) -> tuple[tuple[Endpoint, SlimPadding], ...]:
    """The endpoints of ``network`` that follow ``last``."""
    names = [spec.name if isinstance(spec, Mixed) else spec.scope for spec, _ in network]
    return tuple(network[names.index(last) + 1:])


def endpoints_until(network: Sequence[tuple[Endpoint, SlimPadding]], final: str
                    ) -> tuple[tuple[Endpoint, SlimPadding], ...]:
    """The endpoints of ``network`` up to and including ``final`` (slim's ``final_endpoint``)."""
    names = [spec.name if isinstance(spec, Mixed) else spec.scope for spec, _ in network]
    return tuple(network[: names.index(final) + 1])


__all__ = ["INCEPTION_V2", "INCEPTION_V3", "ConcatBranches", "SlimInception", "endpoints_after",
           "endpoints_until"]
