"""EfficientDet's bidirectional feature pyramid (BiFPN, Tan et al. 2020), as the OD API's
``KerasBiFpnFeatureMaps`` builds it (``models/bidirectional_feature_pyramid_generators.py``).

The network is a list of *nodes* (:func:`bifpn_nodes`), each computed from earlier ones:
the backbone's levels are nodes ``0_up_lvl_{l}``; levels above the backbone's are made by
downsampling (``0_up_lvl_6`` from ``0_up_lvl_5`` …); then each of ``num_iterations`` passes
adds a top-down (``{i}_dn_lvl_{l}``) and a bottom-up (``{i}_up_lvl_{l}``) node per level.
A node resamples each input (a 1x1 conv + batch norm first when the input's channels are
not ``num_filters``, which the OD API assumes of every backbone level; then 'SAME' max
pooling with kernel ``s + 1`` to go down, nearest-neighbour repetition to go up), combines
them (``fast_attention``: ``sum_i relu(w_i) x_i / (sum_i relu(w_i) + 1e-4)``;
``weighted_sum``: ``sum_i w_i x_i``; ``sum``; ``attention``, meant as softmax weights, is a
plain sum in the OD API, see :class:`Combine`), then applies activation -> 3x3 separable conv
-> batch norm. The outputs are the last node of each level, finest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from objdet.models.checkpoints.variable_map import (
    Target,
    batch_norm_targets,
    conv_targets,
    variable_key,
)
from objdet.models.hyperparams import (
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
)
from objdet.models.layers.padding import MaxPool2dSame, make_conv2d

COMBINE_METHODS = ("fast_attention", "attention", "weighted_sum", "sum")
_FAST_ATTENTION_EPSILON = 1e-4


@dataclass(frozen=True)
class BiFpnNode:
    """One node: its OD API name, pyramid level and the names of its input nodes."""

    name: str
    level: int
    inputs: tuple[str, ...]
    post_combine: bool = True  # False for the extra levels made from the backbone's


def bifpn_nodes(*, min_level: int, max_level: int, input_max_level: int,
                num_iterations: int) -> list[BiFpnNode]:
    """The OD API's ``_create_bifpn_node_config``, without the backbone's own levels."""
    nodes = [BiFpnNode(f"0_up_lvl_{level}", level, (f"0_up_lvl_{level - 1}",), False)
             for level in range(input_max_level + 1, max_level + 1)]
    for iteration in range(1, num_iterations + 1):
        for level in reversed(range(min_level, max_level)):
            same_level = (f"{iteration - 1}_up_lvl_{level}"
                          if level > min_level or iteration == 1
                          else f"{iteration - 1}_dn_lvl_{level}")
            # With no level above the backbone's the OD API fails here (IndexError); objdet
            # takes the backbone's top level, the node the pass would start from.
            previous = nodes[-1].name if nodes else f"0_up_lvl_{max_level}"
            nodes.append(BiFpnNode(f"{iteration}_dn_lvl_{level}", level,
                                   (same_level, previous)))
        for level in range(min_level + 1, max_level + 1):
            inputs = [f"{iteration - 1}_up_lvl_{level}"]
            if level < max_level:
                inputs.append(f"{iteration}_dn_lvl_{level}")
            inputs.append(nodes[-1].name)
            nodes.append(BiFpnNode(f"{iteration}_up_lvl_{level}", level, tuple(inputs)))
    return nodes


class Resample(nn.Module):
    """An input of a node brought to its level: [1x1 conv + batch norm] (``project``), then
    max-pool down (kernel ``s + 1``, stride ``s``, 'SAME') or repeat up by ``s``."""

    def __init__(self, *, in_channels: int, out_channels: int, scale: int, project: bool,
                 hyperparams: ConvHyperparams) -> None:
        super().__init__()
        self.conv: nn.Conv2d | None = None
        self.norm: nn.Module | None = None
        if project:
            self.conv = _conv(in_channels, out_channels, 1, hyperparams)
            self.norm = _norm(out_channels, hyperparams)
        self.scale = scale  # > 1: downsample by it; < 0: upsample by -scale; 1: keep
        self.pool = MaxPool2dSame(scale + 1, scale) if scale > 1 else None

    def forward(self, features: Tensor) -> Tensor:
        if self.conv is not None:
            features = self.conv(features)
            if self.norm is not None:
                features = self.norm(features)
        if self.pool is not None:
            return self.pool(features)
        if self.scale < 0:
            # TF's reshape/broadcast upsampling and resize_nearest_neighbor (no corner
            # alignment, no half-pixel centres) agree for integer scales: each pixel repeated.
            return F.interpolate(features, scale_factor=-self.scale, mode="nearest")
        return features


class Combine(nn.Module):
    """Weighted combination of a node's resampled inputs ``[B, C, H, W]`` (same shapes)."""

    def __init__(self, *, method: str, num_inputs: int) -> None:
        super().__init__()
        if method not in COMBINE_METHODS:
            raise ValueError(f"bifpn.combine_method must be one of {COMBINE_METHODS}, "
                             f"got {method!r}")
        self.method = method
        # Keras' per_input_weights: shape [num_inputs, 1], initialized to ones.
        self.weights = nn.Parameter(torch.ones(num_inputs, 1)) if method != "sum" else None

    def forward(self, inputs: list[Tensor]) -> Tensor:
        # spatial sizes only: the batch size may be symbolic (export with a dynamic batch)
        shapes = {(int(x.shape[-2]), int(x.shape[-1])) for x in inputs}
        if len(shapes) != 1:
            raise ValueError(f"BiFPN inputs of one node differ in size {sorted(shapes)}: the "
                             "image height and width must be multiples of 2**max_level")
        stacked = torch.stack(inputs, dim=-1)  # [B, C, H, W, num_inputs]
        if self.weights is None:
            return stacked.sum(dim=-1)
        weights = self.weights[:, 0]
        if self.method == "attention":
            # The OD API takes the softmax of its [num_inputs, 1] weights over the last axis,
            # so every weight is exactly 1 (and gets no gradient): 'attention' sums.
            weights = torch.softmax(self.weights, dim=-1)[:, 0]
        elif self.method == "fast_attention":
            weights = torch.relu(weights)
            weights = weights / (weights.sum() + _FAST_ATTENTION_EPSILON)
        return (stacked * weights).sum(dim=-1)


class PostCombine(nn.Module):
    """activation -> 3x3 separable conv ('SAME') -> batch norm (the OD API's order)."""

    def __init__(self, *, channels: int, hyperparams: ConvHyperparams) -> None:
        super().__init__()
        self.activation = make_activation(hyperparams.activation)
        depthwise = make_conv2d(channels, channels, 3, groups=channels, bias=False)
        initialize_weight(depthwise.weight, hyperparams.initializer)
        self.depthwise = depthwise
        self.pointwise = _conv(channels, channels, 1, hyperparams)
        self.norm = _norm(channels, hyperparams)

    def forward(self, features: Tensor) -> Tensor:
        features = self.pointwise(self.depthwise(self.activation(features)))
        return self.norm(features) if self.norm is not None else features


def _use_bias(hyperparams: ConvHyperparams) -> bool:
    norm = hyperparams.batch_norm
    return hyperparams.force_use_bias or norm is None or not norm.center


def _conv(in_channels: int, out_channels: int, kernel_size: int,
          hyperparams: ConvHyperparams) -> nn.Conv2d:
    conv = make_conv2d(in_channels, out_channels, kernel_size, bias=_use_bias(hyperparams))
    initialize_weight(conv.weight, hyperparams.initializer)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _norm(channels: int, hyperparams: ConvHyperparams) -> nn.Module | None:
    if hyperparams.batch_norm is None:
        return None
    return make_batch_norm(channels, hyperparams.batch_norm)


class BiFpnNodeModule(nn.Module):
    """The layers of one node: a :class:`Resample` per input, a combine, a post-combine."""

    def __init__(self, *, inputs: list[Resample], combine: Combine | None,
                 post_combine: PostCombine | None) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(inputs)
        self.combine = combine
        self.post_combine = post_combine


class BiFPN(nn.Module):
    """``forward(backbone maps for levels min_level..input_max_level, finest first) -> list``
    of ``max_level - min_level + 1`` maps with ``num_filters`` channels, finest first."""

    def __init__(self, *, in_channels: list[int], min_level: int, max_level: int,
                 num_iterations: int, num_filters: int, hyperparams: ConvHyperparams,
                 combine_method: str = "fast_attention") -> None:
        super().__init__()
        if num_iterations < 1:
            raise ValueError(f"bifpn.num_iterations must be >= 1, got {num_iterations}")
        if not in_channels or min_level + len(in_channels) - 1 > max_level:
            raise ValueError(f"BiFPN levels {min_level}..{max_level} cannot take "
                             f"{len(in_channels)} backbone maps")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = True  # the OD API sets depthwise_regularizer too
        self.hyperparams_batch_norm = hyperparams.batch_norm
        input_max_level = min_level + len(in_channels) - 1
        # node name -> (index in the list of maps, level, channels, is a backbone map)
        known: dict[str, tuple[int, int, int, bool]] = {
            f"0_up_lvl_{min_level + offset}": (offset, min_level + offset, channels, True)
            for offset, channels in enumerate(in_channels)
        }
        self.node_specs = bifpn_nodes(min_level=min_level, max_level=max_level,
                                      input_max_level=input_max_level,
                                      num_iterations=num_iterations)
        self.node_inputs: list[list[int]] = []  # indices into the list of maps, per node
        nodes = []
        for spec in self.node_specs:
            resamples, indices = [], []
            for name in spec.inputs:
                index, level, channels, from_backbone = known[name]
                # The OD API gives backbone maps no channel count, so it projects every use
                # of one (even with num_filters channels); node outputs have num_filters.
                resamples.append(Resample(
                    in_channels=channels, out_channels=num_filters,
                    scale=_scale(level, spec.level),
                    project=from_backbone or channels != num_filters, hyperparams=hyperparams))
                indices.append(index)
            combine = (Combine(method=combine_method, num_inputs=len(resamples))
                       if len(resamples) > 1 else None)
            post = (PostCombine(channels=num_filters, hyperparams=hyperparams)
                    if spec.post_combine else None)
            nodes.append(BiFpnNodeModule(inputs=resamples, combine=combine, post_combine=post))
            self.node_inputs.append(indices)
            known[spec.name] = (len(in_channels) + len(nodes) - 1, spec.level, num_filters, False)
        self.nodes = nn.ModuleList(nodes)
        self.num_outputs = max_level - min_level + 1
        self.out_channels = [num_filters] * self.num_outputs

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        maps = list(features)
        for node, indices in zip(self.nodes, self.node_inputs):
            assert isinstance(node, BiFpnNodeModule)
            resampled = [resample(maps[index]) for resample, index in zip(node.inputs, indices)]
            combined = node.combine(resampled) if node.combine is not None else resampled[0]
            if node.post_combine is not None:
                combined = node.post_combine(combined)
            maps.append(combined)
        return maps[-self.num_outputs:]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to the OD API's ``KerasBiFpnFeatureMaps`` (``_bifpn_stage``)."""
        targets: dict[str, Target] = {}
        for node_index, node in enumerate(self.nodes):
            assert isinstance(node, BiFpnNodeModule)
            prefix = f"nodes.{node_index}"
            for input_index, resample in enumerate(node.inputs):
                assert isinstance(resample, Resample)
                if resample.conv is None:
                    continue
                tf_block = f"node_input_blocks/{node_index}/{input_index}/1"
                torch_block = f"{prefix}.inputs.{input_index}"
                targets.update(conv_targets(f"{tf_block}/0", f"{torch_block}.conv",
                                            bias=resample.conv.bias is not None))
                if resample.norm is not None:
                    targets.update(self._norm_targets(f"{tf_block}/1", f"{torch_block}.norm"))
            if node.combine is not None and node.combine.weights is not None:
                targets[variable_key(f"node_combine_op/{node_index}/bifpn_combine_weights")] = (
                    Target(f"{prefix}.combine.weights"))
            if node.post_combine is not None:
                tf_block = f"node_post_combine_block/{node_index}"
                torch_block = f"{prefix}.post_combine"
                targets[variable_key(f"{tf_block}/1/depthwise_kernel")] = Target(
                    f"{torch_block}.depthwise.weight", "depthwise")
                targets[variable_key(f"{tf_block}/1/pointwise_kernel")] = Target(
                    f"{torch_block}.pointwise.weight", "conv")
                if node.post_combine.pointwise.bias is not None:
                    targets[variable_key(f"{tf_block}/1/bias")] = Target(
                        f"{torch_block}.pointwise.bias")
                if node.post_combine.norm is not None:
                    targets.update(self._norm_targets(f"{tf_block}/2", f"{torch_block}.norm"))
        return targets

    def _norm_targets(self, tf_prefix: str, torch_prefix: str) -> dict[str, Target]:
        targets = batch_norm_targets(tf_prefix, torch_prefix)
        params = self.hyperparams_batch_norm
        assert params is not None
        if not params.scale:
            targets.pop(variable_key(f"{tf_prefix}/gamma"))
        if not params.center:
            targets.pop(variable_key(f"{tf_prefix}/beta"))
        return targets


def _scale(input_level: int, output_level: int) -> int:
    """Resampling factor: ``2**d`` down for ``d > 0`` levels up the pyramid, ``-2**d`` up."""
    if output_level >= input_level:
        return 2 ** (output_level - input_level)
    return -(2 ** (input_level - output_level))

