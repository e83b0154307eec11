"""SSD box predictors: ``convolutional_box_predictor`` and
``weight_shared_convolutional_box_predictor``.

Both map feature maps ``[B, C_l, H_l, W_l]`` to ``box_encodings [B, A, code_size]`` and
``class_logits [B, A, K]`` (K = classes + background column), anchors ordered as the anchor
generators order them: map, row, column, anchor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from objdet.models.backbones.keras_conv_unit import drop_absent_batch_norm_variables
from objdet.models.checkpoints.variable_map import Target, batch_norm_targets, conv_targets
from objdet.models.hyperparams import (
    BatchNormParams,
    ConvHyperparams,
    initialize_weight,
    make_activation,
    make_batch_norm,
    make_conv_block,
)
from objdet.models.layers.padding import make_conv2d
from objdet.models.layers.separable_conv import SeparableConv2d, separable_conv_targets


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
    """One head per feature map (no weight sharing), as the OD API's ``ConvolutionalBoxPredictor``
    (the Keras one of ``predictors/convolutional_keras_box_predictor.py``).

    Per map ``l``: ``num_layers_before_predictor`` 1x1 conv blocks (``_shared_nets``) of depth
    ``clamp(C_l, min_depth, max_depth)`` (none when that depth is 0), then a box head and a
    class head (``ConvolutionalBoxHead`` / ``ConvolutionalClassHead``): a 'SAME'
    ``kernel_size`` conv with bias, or with ``use_depthwise`` a depthwise ``kernel_size`` conv
    + norm + activation and a 1x1 conv with bias; the class head starts with dropout when
    ``use_dropout``. Box encodings are clipped to ``box_encodings_clip_range``.

    Two differences from the Keras predictor, kept for the slim (TF1) one the same config
    also describes: ``apply_sigmoid_to_scores`` is honoured (Keras ignores it), and with
    ``use_depthwise`` the class predictor's bias starts at ``class_prediction_bias_init``
    (Keras starts it at 0). Neither changes outputs for given weights except the sigmoid.
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
        self.batch_norm_params = hyperparams.batch_norm
        self.towers, self.box_heads, self.class_heads = (
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
        )
        for channels, num_anchors in zip(in_channels, num_anchors_per_location):
            tower: list[nn.Module] = []
            depth = max(min(channels, max_depth), min_depth)
            if depth > 0 and num_layers_before_predictor > 0:
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

    def tf2_variable_map(self) -> dict[str, Target]:
        """TF2 checkpoint keys relative to ``model/_box_predictor/`` -> parameter names:
        ``_shared_nets/<map>/<3i>`` (tower conv i; its norm at 3i + 1),
        ``_prediction_heads/box_encodings/<map>/_box_encoder_layers/<j>`` and
        ``_prediction_heads/class_predictions_with_background/<map>/_class_predictor_layers/<j>``
        (j counts the Keras layers: dropout, depthwise conv, norm, activation, conv)."""
        targets: dict[str, Target] = {}
        heads = zip(self.towers, self.box_heads, self.class_heads)
        for index, (tower, box_head, class_head) in enumerate(heads):
            for layer, block in enumerate(tower.children()):
                targets.update(_keras_layer_list_targets(
                    f"_shared_nets/{index}", f"towers.{index}.{layer}", block,
                    self.batch_norm_params, first_index=3 * layer))
            targets.update(_keras_layer_list_targets(
                f"_prediction_heads/box_encodings/{index}/_box_encoder_layers",
                f"box_heads.{index}", box_head, self.batch_norm_params))
            targets.update(_keras_layer_list_targets(
                f"_prediction_heads/class_predictions_with_background/{index}/"
                "_class_predictor_layers", f"class_heads.{index}", class_head,
                self.batch_norm_params))
        return targets


def _keras_layer_list_targets(tf_prefix: str, torch_prefix: str, layers: nn.Module,
                              batch_norm: BatchNormParams | None, first_index: int = 0
                              ) -> dict[str, Target]:
    """Variables of a Keras layer list at ``tf_prefix/<j>`` for the ``nn.Sequential``
    ``layers`` holding the same layers in the same order, except that where the OD API puts
    an identity Lambda for an absent batch norm (after a conv that is not the last) the
    Sequential has nothing."""
    targets: dict[str, Target] = {}
    modules = list(layers.children())
    keras_index = first_index
    for position, module in enumerate(modules):
        torch_name = f"{torch_prefix}.{position}"
        if isinstance(module, nn.Conv2d):
            targets.update(conv_targets(f"{tf_prefix}/{keras_index}", torch_name,
                                        depthwise=module.groups > 1,
                                        bias=module.bias is not None))
            is_last = position == len(modules) - 1
            if batch_norm is None and not is_last:
                keras_index += 1  # build_batch_norm's identity Lambda
        elif isinstance(module, nn.BatchNorm2d):
            assert batch_norm is not None
            targets.update(drop_absent_batch_norm_variables(
                batch_norm_targets(f"{tf_prefix}/{keras_index}", torch_name), batch_norm))
        keras_index += 1
    return targets


class _WeightSharedTower(nn.Module):
    """``num_layers`` convs shared by all feature maps, each followed by a batch norm of its
    own per map (statistics differ per resolution, so the OD API does not share them) and
    the activation: ``forward(feature [B, C, H, W], map_index) -> [B, depth, H, W]``."""

    def __init__(self, *, in_channels: int, depth: int, num_layers: int, num_maps: int,
                 kernel_size: int, use_depthwise: bool, hyperparams: ConvHyperparams) -> None:
        super().__init__()
        self.use_depthwise = use_depthwise
        self.bias = _weight_shared_use_bias(hyperparams)
        self.convs = nn.ModuleList()
        for index in range(num_layers):
            channels = in_channels if index == 0 else depth
            conv = _weight_shared_conv(channels, depth, kernel_size, bias=self.bias,
                                       use_depthwise=use_depthwise, hyperparams=hyperparams)
            if isinstance(conv, SeparableConv2d):  # the OD API regularizes the depthwise only
                conv.set_weight_decay(depthwise=hyperparams.weight_decay, pointwise=0.0)
            self.convs.append(conv)
        self.norms = nn.ModuleList()
        if hyperparams.batch_norm is not None:
            batch_norm = hyperparams.batch_norm
            for _ in range(num_layers):
                self.norms.append(nn.ModuleList(
                    make_batch_norm(depth, batch_norm) for _ in range(num_maps)))
        self.activation = make_activation(hyperparams.activation)

    def forward(self, feature: Tensor, map_index: int) -> Tensor:
        for index, conv in enumerate(self.convs):
            feature = conv(feature)
            if self.norms:
                feature = self.norms[index][map_index](feature)  # type: ignore[index]
            feature = self.activation(feature)
        return feature

    def tf2_variable_map(self, conv_scope: str, head_name: str,
                         batch_norm: BatchNormParams | None) -> dict[str, Target]:
        """Convs under ``_head_scope_conv_layers/{conv_scope}/{i}``; map ``m``'s norm of layer
        ``i`` at ``_base_tower_layers_for_heads/{head_name}/{m}/{3i + 1}`` (each layer is
        conv, norm, activation in that list)."""
        targets: dict[str, Target] = {}
        for index in range(len(self.convs)):
            tf_prefix = f"_head_scope_conv_layers/{conv_scope}/{index}"
            targets.update(_weight_shared_conv_targets(tf_prefix, f"convs.{index}",
                                                       bias=self.bias,
                                                       depthwise=self.use_depthwise))
        if batch_norm is not None:
            for index, norms in enumerate(self.norms):
                for map_index in range(len(norms)):  # type: ignore[arg-type]
                    tf_prefix = f"_base_tower_layers_for_heads/{head_name}/{map_index}/{3 * index + 1}"
                    targets.update(_keras_norm_targets(tf_prefix, f"norms.{index}.{map_index}",
                                                       batch_norm))
        return targets


def _weight_shared_use_bias(hyperparams: ConvHyperparams) -> bool:
    """The tower and projection convs have a bias unless batch norm follows (or forced)."""
    return hyperparams.batch_norm is None or hyperparams.force_use_bias


def _weight_shared_conv(in_channels: int, out_channels: int, kernel_size: int, *, bias: bool,
                        use_depthwise: bool, hyperparams: ConvHyperparams) -> nn.Module:
    """A 'SAME' ``kernel_size`` conv, or Keras ``SeparableConv2D`` with ``use_depthwise``."""
    if use_depthwise:
        separable = SeparableConv2d(in_channels, out_channels, kernel_size, bias=bias)
        initialize_weight(separable.depthwise.weight, hyperparams.initializer)
        return separable
    conv = make_conv2d(in_channels, out_channels, kernel_size, bias=bias)
    initialize_weight(conv.weight, hyperparams.initializer)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _weight_shared_conv_targets(tf_prefix: str, torch_prefix: str, *, bias: bool,
                                depthwise: bool) -> dict[str, Target]:
    if depthwise:
        return separable_conv_targets(tf_prefix, torch_prefix, bias=bias)
    return conv_targets(tf_prefix, torch_prefix, bias=bias)


def _keras_norm_targets(tf_prefix: str, torch_prefix: str,
                        batch_norm: BatchNormParams) -> dict[str, Target]:
    return drop_absent_batch_norm_variables(batch_norm_targets(tf_prefix, torch_prefix),
                                            batch_norm)


class WeightSharedConvolutionalBoxPredictor(nn.Module):
    """One head shared by all feature maps (RetinaNet, EfficientDet), as the OD API's Keras
    ``WeightSharedConvolutionalBoxPredictor``.

    Per map: when the maps' channels differ, every map first gets a 1x1 projection (+ batch
    norm, no activation) to the most common channel count. Then a box tower and a class tower
    (one ``PredictionTower`` with ``share_prediction_tower``) of ``num_layers_before_predictor``
    shared ``kernel_size`` convs (``SeparableConv2D`` with ``use_depthwise``) of ``depth``
    channels, each with a per-map batch norm (when ``conv_hyperparams`` has one) and the
    activation. The shared box and class predictor convs (separable with ``use_depthwise``)
    have biases; the class bias starts at ``class_prediction_bias_init``. Every map needs the
    same number of anchors per location.
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
        box_encodings_clip_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if len(set(num_anchors_per_location)) != 1:
            raise ValueError(
                "a weight-shared predictor needs the same number of anchors per "
                f"location on every map, got {num_anchors_per_location}"
            )
        if use_depthwise and kernel_size == 1:
            raise ValueError("use_depthwise needs kernel_size > 1")
        self.weight_decay = hyperparams.weight_decay
        self.regularize_depthwise = hyperparams.regularize_depthwise
        self.num_class_slots, self.box_code_size = num_class_slots, box_code_size
        self.share_prediction_tower = share_prediction_tower
        self.use_depthwise = use_depthwise
        self.use_dropout = use_dropout
        self.box_encodings_clip_range = box_encodings_clip_range
        self._batch_norm = hyperparams.batch_norm
        self._conv_bias = _weight_shared_use_bias(hyperparams)
        num_anchors = num_anchors_per_location[0]
        channels = in_channels[0]
        self.projections = nn.ModuleList()
        if len(set(in_channels)) > 1:
            channels = max(set(in_channels), key=in_channels.count)  # as the OD API picks it
            for map_channels in in_channels:
                conv = make_conv2d(map_channels, channels, 1, bias=self._conv_bias)
                initialize_weight(conv.weight, hyperparams.initializer)
                norm = (make_batch_norm(channels, hyperparams.batch_norm)
                        if hyperparams.batch_norm is not None else nn.Identity())
                self.projections.append(nn.Sequential(conv, norm))

        def tower() -> _WeightSharedTower:
            return _WeightSharedTower(in_channels=channels, depth=depth,
                                      num_layers=num_layers_before_predictor,
                                      num_maps=len(in_channels), kernel_size=kernel_size,
                                      use_depthwise=use_depthwise, hyperparams=hyperparams)

        self.box_tower = tower()
        self.class_tower = None if share_prediction_tower else tower()
        head_channels = depth if num_layers_before_predictor > 0 else channels
        self.dropout = nn.Dropout(1.0 - dropout_keep_probability) if use_dropout else nn.Identity()
        self.box_head = self._head(head_channels, num_anchors * box_code_size, kernel_size,
                                   hyperparams, bias_init=0.0)
        self.class_head = self._head(head_channels, num_anchors * num_class_slots, kernel_size,
                                     hyperparams, bias_init=class_prediction_bias_init)

    def _head(self, in_channels: int, out_channels: int, kernel_size: int,
              hyperparams: ConvHyperparams, *, bias_init: float) -> nn.Sequential:
        head = _weight_shared_conv(in_channels, out_channels, kernel_size, bias=True,
                                   use_depthwise=self.use_depthwise, hyperparams=hyperparams)
        if isinstance(head, SeparableConv2d):  # without apply_conv_hyperparams_to_heads
            head.set_weight_decay(depthwise=0.0, pointwise=0.0)
        bias = head.pointwise.bias if isinstance(head, SeparableConv2d) else head.bias
        assert isinstance(bias, Tensor)
        nn.init.constant_(bias, bias_init)
        return nn.Sequential(head)  # a Sequential, as ConvolutionalBoxPredictor's heads

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Feature maps -> ``box_encodings [B, A, code]``, ``class_logits [B, A, K]``."""
        boxes, classes = [], []
        for map_index, feature in enumerate(features):
            if self.projections:
                feature = self.projections[map_index](feature)
            box_feature = self.box_tower(feature, map_index)
            box_output = self.box_head(box_feature)  # [B, a * code, H, W]
            if self.box_encodings_clip_range is not None:
                box_output = box_output.clamp(*self.box_encodings_clip_range)
            boxes.append(_flatten_predictions(box_output, self.box_code_size))
            class_feature = box_feature  # share_prediction_tower
            if self.class_tower is not None:
                class_feature = self.class_tower(feature, map_index)
            class_output = self.class_head(self.dropout(class_feature))  # [B, a * K, H, W]
            classes.append(_flatten_predictions(class_output, self.num_class_slots))
        return torch.cat(boxes, dim=1), torch.cat(classes, dim=1)  # [B, A, code], [B, A, K]

    def tf2_variable_map(self) -> dict[str, Target]:
        """Keys relative to ``model/_box_predictor/`` -> state_dict names of this module."""
        targets: dict[str, Target] = {}
        bias = self._conv_bias
        for map_index in range(len(self.projections)):
            tf_prefix = f"_additional_projection_layers/{map_index}"
            targets.update(conv_targets(f"{tf_prefix}/0", f"projections.{map_index}.0",
                                        bias=bias))
            if self._batch_norm is not None:
                targets.update(_keras_norm_targets(f"{tf_prefix}/1", f"projections.{map_index}.1",
                                                   self._batch_norm))
        box_scope = "PredictionTower" if self.class_tower is None else "BoxPredictionTower"
        towers = [(self.box_tower, "box_tower", box_scope, "box_encodings")]
        if self.class_tower is not None:
            towers.append((self.class_tower, "class_tower", "ClassPredictionTower",
                           "class_predictions_with_background"))
        for tower, name, scope, head_name in towers:
            for key, target in tower.tf2_variable_map(scope, head_name, self._batch_norm).items():
                targets[key] = Target(f"{name}.{target.name}", target.layout)
        targets.update(_weight_shared_conv_targets(
            "_box_prediction_head/_box_encoder_layers/0", "box_head.0", bias=True,
            depthwise=self.use_depthwise))
        class_index = 1 if self.use_dropout else 0  # a Dropout layer comes first
        targets.update(_weight_shared_conv_targets(
            f"_prediction_heads/class_predictions_with_background/_class_predictor_layers/"
            f"{class_index}", "class_head.0", bias=True, depthwise=self.use_depthwise))
        return targets
