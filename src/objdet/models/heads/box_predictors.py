"""SSD box predictors: ``convolutional_box_predictor`` and
``weight_shared_convolutional_box_predictor``.

Both map feature maps ``[B, C_l, H_l, W_l]`` to ``box_encodings [B, A, code_size]`` and
``class_logits [B, A, K]`` (K = classes + background column), anchors ordered as the anchor
generators order them: map, row, column, anchor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from objdet.models.hyperparams import (
    ConvHyperparams,
    make_activation,
    make_batch_norm,
    make_conv_block,
)


def _flatten_predictions(output: Tensor, values_per_anchor: int) -> Tensor:
    """``[B, a * v, H, W]`` -> ``[B, H * W * a, v]`` (row, column, anchor order)."""
    batch = output.shape[0]
    return output.permute(0, 2, 3, 1).reshape(batch, -1, values_per_anchor)


def _prediction_layer(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int,
    use_depthwise: bool,
    hyperparams: ConvHyperparams,
    bias_init: float = 0.0,
) -> nn.Sequential:
    """A prediction conv with bias and no norm/activation; with ``use_depthwise``, a depthwise
    ``kernel_size`` conv (+ norm + activation) then a 1x1 conv, as the OD API's heads."""
    layers: list[nn.Module] = []
    if use_depthwise:
        layers.extend(
            make_conv_block(
                in_channels, in_channels, kernel_size, groups=in_channels, hyperparams=hyperparams
            )
        )
        kernel_size = 1
    predictor = make_conv_block(
        in_channels,
        out_channels,
        kernel_size,
        hyperparams=hyperparams,
        with_norm_and_activation=False,
    )[0]
    assert isinstance(predictor, nn.Conv2d) and predictor.bias is not None
    nn.init.constant_(predictor.bias, bias_init)
    layers.append(predictor)
    return nn.Sequential(*layers)


class ConvolutionalBoxPredictor(nn.Module):
    """One head per feature map (no weight sharing), as the OD API's ``ConvolutionalBoxPredictor``.

    ``num_layers_before_predictor`` 1x1 conv blocks of depth
    ``clamp(C_l, min_depth, max_depth)`` precede the box and class predictor convs.
    """

    def __init__(
        self,
        *,
        in_channels: list[int],
        num_anchors_per_location: list[int],
        num_class_slots: int,
        hyperparams: ConvHyperparams,
        kernel_size: int = 1,
        num_layers_before_predictor: int = 0,
        min_depth: int = 0,
        max_depth: int = 0,
        use_dropout: bool = False,
        dropout_keep_probability: float = 0.8,
        apply_sigmoid_to_scores: bool = False,
        class_prediction_bias_init: float = 0.0,
        use_depthwise: bool = False,
        box_code_size: int = 4,
        box_encodings_clip_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(num_anchors_per_location):
            raise ValueError(
                f"{len(in_channels)} feature maps but anchors for {len(num_anchors_per_location)}"
            )
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self.num_class_slots, self.box_code_size = num_class_slots, box_code_size
        self.apply_sigmoid_to_scores = apply_sigmoid_to_scores
        self.box_encodings_clip_range = box_encodings_clip_range
        self.towers, self.box_heads, self.class_heads = (
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
        )
        for channels, num_anchors in zip(in_channels, num_anchors_per_location):
            tower: list[nn.Module] = []
            if num_layers_before_predictor > 0:
                depth = max(min(channels, max_depth), min_depth)
                for _ in range(num_layers_before_predictor):
                    tower.append(make_conv_block(channels, depth, 1, hyperparams=hyperparams))
                    channels = depth
            self.towers.append(nn.Sequential(*tower))
            self.box_heads.append(
                _prediction_layer(
                    channels,
                    num_anchors * box_code_size,
                    kernel_size=kernel_size,
                    use_depthwise=use_depthwise,
                    hyperparams=hyperparams,
                )
            )
            class_head = _prediction_layer(
                channels,
                num_anchors * num_class_slots,
                kernel_size=kernel_size,
                use_depthwise=use_depthwise,
                hyperparams=hyperparams,
                bias_init=class_prediction_bias_init,
            )
            if use_dropout:
                class_head = nn.Sequential(nn.Dropout(1.0 - dropout_keep_probability), *class_head)
            self.class_heads.append(class_head)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Feature maps -> ``box_encodings [B, A, code]``, ``class_logits [B, A, K]``."""
        boxes, classes = [], []
        for feature, tower, box_head, class_head in zip(
            features, self.towers, self.box_heads, self.class_heads
        ):
            feature = tower(feature)
            boxes.append(_flatten_predictions(box_head(feature), self.box_code_size))
            classes.append(_flatten_predictions(class_head(feature), self.num_class_slots))
        box_encodings = torch.cat(boxes, dim=1)  # [B, A, code]
        class_logits = torch.cat(classes, dim=1)  # [B, A, K]
        if self.box_encodings_clip_range is not None:
            box_encodings = box_encodings.clamp(*self.box_encodings_clip_range)
        if self.apply_sigmoid_to_scores:
            class_logits = class_logits.sigmoid()
        return box_encodings, class_logits


class _SharedTower(nn.Module):
    """Convs shared across feature maps, each followed by a per-map batch norm (BN statistics
    differ per resolution, so the OD API does not share them) and the activation."""

    def __init__(
        self,
        *,
        depth: int,
        num_layers: int,
        num_maps: int,
        kernel_size: int,
        use_depthwise: bool,
        hyperparams: ConvHyperparams,
    ) -> None:
        super().__init__()
        use_norm = hyperparams.batch_norm is not None
        self.convs = nn.ModuleList()
        for _ in range(num_layers):
            conv = make_conv_block(
                depth,
                depth,
                1 if use_depthwise else kernel_size,
                hyperparams=hyperparams,
                with_norm_and_activation=False,
            )
            if use_depthwise:
                depthwise = make_conv_block(
                    depth,
                    depth,
                    kernel_size,
                    groups=depth,
                    hyperparams=hyperparams,
                    with_norm_and_activation=False,
                )
                conv = nn.Sequential(*depthwise, *conv)
            if use_norm:
                last = conv[-1]
                assert isinstance(last, nn.Conv2d)
                last.bias = None  # batch norm supplies the offset
            self.convs.append(conv)
        batch_norm = hyperparams.batch_norm
        self.norms = nn.ModuleList(
            nn.ModuleList(
                make_batch_norm(depth, batch_norm) if batch_norm else nn.Identity()
                for _ in range(num_maps)
            )
            for _ in range(num_layers)
        )
        self.activation = make_activation(hyperparams.activation)

    def forward(self, feature: Tensor, map_index: int) -> Tensor:
        for conv, norms in zip(self.convs, self.norms):
            assert isinstance(norms, nn.ModuleList)
            feature = self.activation(norms[map_index](conv(feature)))
        return feature


class WeightSharedConvolutionalBoxPredictor(nn.Module):
    """One head shared by all feature maps (RetinaNet style), as the OD API's
    ``WeightSharedConvolutionalBoxPredictor``.

    Maps whose channels differ from ``depth`` are first projected by a per-map 1x1 conv
    block (a shared conv needs equal channels). Then ``num_layers_before_predictor`` shared
    ``kernel_size`` convs (one tower for boxes and one for classes, or a single tower with
    ``share_prediction_tower``) and shared predictor convs. Every map needs the same number
    of anchors per location.
    """

    def __init__(
        self,
        *,
        in_channels: list[int],
        num_anchors_per_location: list[int],
        num_class_slots: int,
        hyperparams: ConvHyperparams,
        depth: int,
        num_layers_before_predictor: int = 0,
        kernel_size: int = 3,
        class_prediction_bias_init: float = 0.0,
        use_dropout: bool = False,
        dropout_keep_probability: float = 0.8,
        share_prediction_tower: bool = False,
        use_depthwise: bool = False,
        box_code_size: int = 4,
    ) -> None:
        super().__init__()
        if len(set(num_anchors_per_location)) != 1:
            raise ValueError(
                "a weight-shared predictor needs the same number of anchors per "
                f"location on every map, got {num_anchors_per_location}"
            )
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self.num_class_slots, self.box_code_size = num_class_slots, box_code_size
        num_anchors = num_anchors_per_location[0]
        self.projections = nn.ModuleList(
            nn.Identity()
            if channels == depth
            else make_conv_block(channels, depth, 1, hyperparams=hyperparams)
            for channels in in_channels
        )
        tower_args = {
            "depth": depth,
            "num_layers": num_layers_before_predictor,
            "num_maps": len(in_channels),
            "kernel_size": kernel_size,
            "use_depthwise": use_depthwise,
            "hyperparams": hyperparams,
        }
        self.box_tower = _SharedTower(**tower_args)  # type: ignore[arg-type]
        self.class_tower = None if share_prediction_tower else _SharedTower(**tower_args)  # type: ignore[arg-type]
        self.dropout = nn.Dropout(1.0 - dropout_keep_probability) if use_dropout else nn.Identity()
        self.box_head = _prediction_layer(
            depth,
            num_anchors * box_code_size,
            kernel_size=kernel_size,
            use_depthwise=use_depthwise,
            hyperparams=hyperparams,
        )
        self.class_head = _prediction_layer(
            depth,
            num_anchors * num_class_slots,
            kernel_size=kernel_size,
            use_depthwise=use_depthwise,
            hyperparams=hyperparams,
            bias_init=class_prediction_bias_init,
        )

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Feature maps -> ``box_encodings [B, A, code]``, ``class_logits [B, A, K]``."""
        boxes, classes = [], []
        for map_index, (feature, projection) in enumerate(zip(features, self.projections)):
            feature = projection(feature)
            box_feature = self.box_tower(feature, map_index)
            class_feature = box_feature  # share_prediction_tower
            if self.class_tower is not None:
                class_feature = self.class_tower(feature, map_index)
            boxes.append(_flatten_predictions(self.box_head(box_feature), self.box_code_size))
            class_output = self.class_head(self.dropout(class_feature))
            classes.append(_flatten_predictions(class_output, self.num_class_slots))
        return torch.cat(boxes, dim=1), torch.cat(classes, dim=1)
