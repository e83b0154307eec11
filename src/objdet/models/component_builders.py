"""Config messages -> model components. Only the meta-architecture builders
(``objdet.models.meta_arch.*_builder``) call these.

Each function reads one OD API message (``objdet.protos``) and returns a component built
with explicit constructor arguments; unsupported fields fail via :mod:`config_checks`.
"""

from __future__ import annotations

import torch
from torch import nn

from objdet.errors import ConfigError
from objdet.models import losses
from objdet.models.anchor_generators import (
    MultiscaleAnchorGenerator,
    SSDAnchorGenerator,
    create_ssd_box_specs,
)
from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.config_checks import check_fields, enum_name, require_equal, which_oneof
from objdet.models.hard_example_miner import HardExampleMiner
from objdet.models.hyperparams import BatchNormParams, ConvHyperparams, InitializerParams
from objdet.models.image_resizers import INTERPOLATIONS, FixedShapeResizer, KeepAspectRatioResizer
from objdet.models.matchers import ArgMaxMatcher, BipartiteMatcher
from objdet.models.postprocessing import BatchNonMaxSuppression
from objdet.protos import (
    anchor_generator_pb2,
    box_coder_pb2,
    hyperparams_pb2,
    image_resizer_pb2,
    losses_pb2,
    matcher_pb2,
    post_processing_pb2,
    ssd_anchor_generator_pb2,
)


def build_conv_hyperparams(config: hyperparams_pb2.Hyperparams, path: str) -> ConvHyperparams:
    """``conv_hyperparams`` -> :class:`ConvHyperparams`."""
    check_fields(
        config,
        path,
        {
            "op",
            "regularizer",
            "initializer",
            "activation",
            "batch_norm",
            "sync_batch_norm",
            "regularize_depthwise",
            "force_use_bias",
        },
    )
    require_equal(config, path, "op", hyperparams_pb2.Hyperparams.CONV)
    weight_decay = 0.0
    if config.HasField("regularizer"):
        which_oneof(
            config.regularizer, "regularizer_oneof", f"{path}.regularizer", {"l2_regularizer"}
        )
        # Protobuf floats are float32: 0.00004 reads back as 3.9999998e-05. Round to the
        # 7 significant digits float32 holds so equal configs give equal decay groups.
        weight_decay = float(f"{config.regularizer.l2_regularizer.weight:.7g}")
    batch_norm = None
    normalizer = config.WhichOneof("normalizer_oneof")
    if normalizer is not None:
        # sync_batch_norm is plain batch norm here; the trainer converts it for DDP.
        which_oneof(config, "normalizer_oneof", path, {"batch_norm", "sync_batch_norm"})
        norm = getattr(config, normalizer)
        batch_norm = BatchNormParams(
            momentum=1.0 - norm.decay,
            epsilon=norm.epsilon,
            scale=norm.scale,
            center=norm.center,
            train=norm.train,
        )
    return ConvHyperparams(
        activation=enum_name(config, "activation"),
        batch_norm=batch_norm,
        initializer=_build_initializer(config, f"{path}.initializer"),
        weight_decay=weight_decay,
        regularize_depthwise=config.regularize_depthwise,
        force_use_bias=config.force_use_bias,
    )


def _build_initializer(config: hyperparams_pb2.Hyperparams, path: str) -> InitializerParams:
    if not config.HasField("initializer"):
        return InitializerParams()
    kind = which_oneof(
        config.initializer,
        "initializer_oneof",
        path,
        {
            "truncated_normal_initializer",
            "random_normal_initializer",
            "variance_scaling_initializer",
        },
    )
    values = getattr(config.initializer, kind)
    if kind == "variance_scaling_initializer":
        return InitializerParams(
            kind="variance_scaling",
            factor=values.factor,
            uniform=values.uniform,
            mode=enum_name(values, "mode"),
        )
    return InitializerParams(
        kind=kind.removesuffix("_initializer"), mean=values.mean, stddev=values.stddev
    )


def build_image_resizer(
    config: image_resizer_pb2.ImageResizer, path: str
) -> FixedShapeResizer | KeepAspectRatioResizer:
    """``image_resizer`` -> a resizer."""
    kind = which_oneof(
        config, "image_resizer_oneof", path, {"fixed_shape_resizer", "keep_aspect_ratio_resizer"}
    )
    values = getattr(config, kind)
    path = f"{path}.{kind}"
    require_equal(values, path, "convert_to_grayscale", False)
    interpolation = INTERPOLATIONS[enum_name(values, "resize_method")]
    sizes = ("height", "width") if kind == "fixed_shape_resizer" else ("min_dimension", "max_dimension")
    for name in sizes:
        if getattr(values, name) <= 0:
            raise ConfigError(f"{path}.{name}: {getattr(values, name)}; an image size must be > 0 pixels")
    if kind == "fixed_shape_resizer":
        return FixedShapeResizer(
            height=values.height, width=values.width, interpolation=interpolation
        )
    pad_value = (0.0, 0.0, 0.0)
    if values.per_channel_pad_value:
        if len(values.per_channel_pad_value) != 3:
            raise ConfigError(
                f"{path}.per_channel_pad_value: expected 3 values (RGB), "
                f"found {list(values.per_channel_pad_value)}"
            )
        # In the network's input space: the OD API's SSD normalizes, then resizes and pads.
        pad_value = tuple(values.per_channel_pad_value)  # type: ignore[assignment]
    try:
        return KeepAspectRatioResizer(
            min_dimension=values.min_dimension,
            max_dimension=values.max_dimension,
            pad_to_max_dimension=values.pad_to_max_dimension,
            interpolation=interpolation,
            pad_value=pad_value,
        )
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None


def build_anchor_generator(
    config: anchor_generator_pb2.AnchorGenerator, path: str
) -> SSDAnchorGenerator | MultiscaleAnchorGenerator:
    """``anchor_generator`` -> an anchor generator (anchors in canvas pixels)."""
    kind = which_oneof(
        config,
        "anchor_generator_oneof",
        path,
        {"ssd_anchor_generator", "multiscale_anchor_generator"},
    )
    values = getattr(config, kind)
    path = f"{path}.{kind}"
    if kind == "multiscale_anchor_generator":
        # normalize_coordinates only changes the unit; anchors stay in pixels here.
        return MultiscaleAnchorGenerator(
            min_level=values.min_level,
            max_level=values.max_level,
            anchor_scale=values.anchor_scale,
            aspect_ratios=list(values.aspect_ratios) or [1.0, 2.0, 0.5],
            scales_per_octave=values.scales_per_octave,
        )
    specs = create_ssd_box_specs(
        num_layers=values.num_layers,
        min_scale=values.min_scale,
        max_scale=values.max_scale,
        scales=list(values.scales),
        aspect_ratios=list(values.aspect_ratios),
        interpolated_scale_aspect_ratio=values.interpolated_scale_aspect_ratio,
        reduce_boxes_in_lowest_layer=values.reduce_boxes_in_lowest_layer,
    )
    return SSDAnchorGenerator(
        box_specs=specs,
        base_anchor_size=(values.base_anchor_height, values.base_anchor_width),
        strides=_per_layer_pairs(values, "height_stride", "width_stride", path),
        offsets=_per_layer_pairs(values, "height_offset", "width_offset", path),
    )


def _per_layer_pairs(
    values: ssd_anchor_generator_pb2.SsdAnchorGenerator, first: str, second: str, path: str
) -> list[tuple[float, float]] | None:
    heights, widths = list(getattr(values, first)), list(getattr(values, second))
    if not heights and not widths:
        return None
    num_layers = values.num_layers
    if len(heights) != num_layers or len(widths) != num_layers:
        raise ConfigError(
            f"{path}: {first} and {second} need {num_layers} values each "
            f"(num_layers), found {heights} and {widths}"
        )
    return [(float(height), float(width)) for height, width in zip(heights, widths)]


def build_box_coder(config: box_coder_pb2.BoxCoder, path: str) -> FasterRcnnBoxCoder:
    """``box_coder`` -> :class:`FasterRcnnBoxCoder`."""
    which_oneof(config, "box_coder_oneof", path, {"faster_rcnn_box_coder"})
    values = config.faster_rcnn_box_coder
    return FasterRcnnBoxCoder(
        y_scale=values.y_scale,
        x_scale=values.x_scale,
        height_scale=values.height_scale,
        width_scale=values.width_scale,
    )


def build_matcher(config: matcher_pb2.Matcher, path: str) -> ArgMaxMatcher | BipartiteMatcher:
    """``matcher`` -> a matcher (``use_matmul_gather`` is a TPU speed option: accepted)."""
    kind = which_oneof(config, "matcher_oneof", path, {"argmax_matcher", "bipartite_matcher"})
    if kind == "bipartite_matcher":
        return BipartiteMatcher()
    values = config.argmax_matcher
    try:
        return ArgMaxMatcher(
            matched_threshold=None if values.ignore_thresholds else values.matched_threshold,
            unmatched_threshold=None if values.ignore_thresholds else values.unmatched_threshold,
            negatives_lower_than_unmatched=values.negatives_lower_than_unmatched,
            force_match_for_each_row=values.force_match_for_each_row,
        )
    except ValueError as error:
        raise ConfigError(f"{path}.argmax_matcher: {error}") from None


def build_classification_loss(config: losses_pb2.ClassificationLoss, path: str) -> nn.Module:
    """``classification_loss`` -> a per-anchor loss (``anchorwise_output`` is always on)."""
    kind = which_oneof(
        config,
        "classification_loss",
        path,
        {"weighted_sigmoid", "weighted_softmax", "weighted_sigmoid_focal"},
    )
    values = getattr(config, kind)
    if kind == "weighted_sigmoid":
        return losses.WeightedSigmoidLoss()
    if kind == "weighted_softmax":
        return losses.WeightedSoftmaxLoss(logit_scale=values.logit_scale)
    alpha = values.alpha if values.HasField("alpha") else None
    return losses.WeightedSigmoidFocalLoss(gamma=values.gamma, alpha=alpha)


def build_localization_loss(config: losses_pb2.LocalizationLoss, path: str) -> nn.Module:
    """``localization_loss`` -> a per-anchor loss."""
    kind = which_oneof(config, "localization_loss", path, {"weighted_smooth_l1", "weighted_l2"})
    if kind == "weighted_l2":
        return losses.WeightedL2Loss()
    return losses.WeightedSmoothL1Loss(delta=config.weighted_smooth_l1.delta)


def build_hard_example_miner(config: losses_pb2.Loss, path: str) -> HardExampleMiner | None:
    """``loss.hard_example_miner`` -> a miner, or None when absent."""
    if not config.HasField("hard_example_miner"):
        return None
    if config.classification_loss.WhichOneof("classification_loss") == "weighted_sigmoid_focal":
        raise ConfigError(
            f"{path}.hard_example_miner: cannot be combined with "
            f"weighted_sigmoid_focal (the OD API forbids it too); remove one"
        )
    values = config.hard_example_miner
    return HardExampleMiner(
        num_hard_examples=values.num_hard_examples if values.num_hard_examples > 0 else None,
        iou_threshold=values.iou_threshold,
        loss_type=enum_name(values, "loss_type"),
        classification_weight=config.classification_weight,
        localization_weight=config.localization_weight,
        max_negatives_per_positive=(
            values.max_negatives_per_positive if values.max_negatives_per_positive > 0 else None
        ),
        min_negatives_per_image=values.min_negatives_per_image,
    )


def build_postprocessor(
    config: post_processing_pb2.PostProcessing, path: str, *, background_column: bool = True
) -> BatchNonMaxSuppression:
    """``post_processing`` -> :class:`BatchNonMaxSuppression` with its score converter."""
    check_fields(config, path, {"batch_non_max_suppression", "score_converter", "logit_scale"})
    values = config.batch_non_max_suppression
    nms_path = f"{path}.batch_non_max_suppression"
    # Static shapes, partitioned/combined/CPU NMS and coordinate frames are TF execution
    # details with no effect on the detections here.
    check_fields(
        values,
        nms_path,
        {
            "score_threshold",
            "iou_threshold",
            "max_detections_per_class",
            "max_total_detections",
            "use_class_agnostic_nms",
            "max_classes_per_detection",
            "use_static_shapes",
            "use_partitioned_nms",
            "use_combined_nms",
            "change_coordinate_frame",
            "use_hard_nms",
            "use_cpu_nms",
        },
    )
    try:
        return BatchNonMaxSuppression(
            background_column=background_column,
            score_threshold=values.score_threshold,
            iou_threshold=values.iou_threshold,
            max_detections_per_class=values.max_detections_per_class,
            max_total_detections=values.max_total_detections,
            use_class_agnostic_nms=values.use_class_agnostic_nms,
            max_classes_per_detection=values.max_classes_per_detection,
            score_converter=enum_name(config, "score_converter"),
            logit_scale=config.logit_scale,
        )
    except ValueError as error:
        raise ConfigError(f"{nms_path}: {error}") from None


def unmatched_class_label(
    num_classes: int, encode_background_as_zeros: bool, add_background_class: bool = True
) -> torch.Tensor:
    """The class target of unmatched anchors, one value per class column: ``[num_classes + 1]``
    with a background column, else ``[num_classes]`` (the OD API's
    ``add_background_class: false``). Its first entry is 1 unless
    ``encode_background_as_zeros``, as the OD API builds it."""
    label = torch.zeros(num_classes + 1 if add_background_class else num_classes)
    if not encode_background_as_zeros:
        label[0] = 1.0
    return label
