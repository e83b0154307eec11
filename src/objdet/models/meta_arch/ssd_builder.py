"""``build_ssd(ssd_config)``: the one place that turns an ``Ssd`` message into an SSD. Every
field is read here (or in :mod:`objdet.models.component_builders`) or rejected loudly."""

from __future__ import annotations

from typing import cast

from torch import nn

from objdet.errors import ConfigError
from objdet.models import component_builders as parts
from objdet.models.config_checks import check_fields, require_equal, which_oneof
from objdet.models.feature_extractors.params import (
    BiFpnParams,
    FeatureExtractorParams,
    FpnParams,
)
from objdet.models.feature_extractors.registry import SSD_FEATURE_EXTRACTORS
from objdet.models.heads.box_predictors import (
    ConvolutionalBoxPredictor,
    WeightSharedConvolutionalBoxPredictor,
)
from objdet.models.meta_arch.ssd import SSD, SSDLoss
from objdet.models.target_assigner import TargetAssigner
from objdet.protos import box_predictor_pb2, fpn_pb2, ssd_pb2

_SSD_FIELDS = {
    "num_classes",
    "image_resizer",
    "feature_extractor",
    "box_coder",
    "matcher",
    "similarity_calculator",
    "encode_background_as_zeros",
    "negative_class_weight",
    "box_predictor",
    "anchor_generator",
    "post_processing",
    "normalize_loss_by_num_matches",
    "normalize_loc_loss_by_codesize",
    "loss",
    "freeze_batchnorm",
    "add_background_class",
    # No effect in PyTorch: batch norm updates are in place; summaries and raw detections
    # are not produced by the model; implicit_example_weight only matters with
    # use_confidences_as_targets (rejected below when true).
    "inplace_batchnorm_update",
    "return_raw_detections_during_predict",
    "implicit_example_weight",
}
_FEATURE_EXTRACTOR_FIELDS = {
    "type",
    "depth_multiplier",
    "min_depth",
    "conv_hyperparams",
    "override_base_feature_extractor_hyperparams",
    "pad_to_multiple",
    "use_explicit_padding",
    "use_depthwise",
    "num_layers",
    "replace_preprocessor_with_placeholder",
    "fpn",
    "bifpn",
    "use_hardswish",
}
_LOSS_FIELDS = {
    "localization_loss",
    "classification_loss",
    "hard_example_miner",
    "classification_weight",
    "localization_weight",
    "expected_loss_weights",
}


def build_ssd(config: ssd_pb2.Ssd, path: str = "model.ssd") -> SSD:
    """``Ssd`` -> :class:`SSD`."""
    check_fields(config, path, _SSD_FIELDS)
    if config.num_classes <= 0:
        raise ConfigError(
            f"{path}.num_classes: expected a positive number of classes, found {config.num_classes}"
        )
    which_oneof(
        config.similarity_calculator,
        "region_similarity",
        f"{path}.similarity_calculator",
        {"iou_similarity"},
    )
    feature_extractor, pad_to_multiple = build_ssd_feature_extractor(
        config.feature_extractor, f"{path}.feature_extractor"
    )
    anchor_generator = parts.build_anchor_generator(
        config.anchor_generator, f"{path}.anchor_generator"
    )
    anchors_per_location = anchor_generator.num_anchors_per_location()
    extractor_channels = cast(list[int], feature_extractor.out_channels)
    if len(anchors_per_location) != len(extractor_channels):
        raise ConfigError(
            f"{path}.anchor_generator: generates anchors for {len(anchors_per_location)} feature "
            f"maps but {path}.feature_extractor ({config.feature_extractor.type}) produces "
            f"{len(extractor_channels)} (its num_layers)"
        )
    box_coder = parts.build_box_coder(config.box_coder, f"{path}.box_coder")
    target_assigner = TargetAssigner(
        matcher=parts.build_matcher(config.matcher, f"{path}.matcher"),
        box_coder=box_coder,
        unmatched_class_label=parts.unmatched_class_label(
            config.num_classes, config.encode_background_as_zeros, config.add_background_class
        ),
        negative_class_weight=config.negative_class_weight,
    )
    return SSD(
        num_classes=config.num_classes,
        image_resizer=parts.build_image_resizer(config.image_resizer, f"{path}.image_resizer"),
        feature_extractor=feature_extractor,
        anchor_generator=anchor_generator,
        box_predictor=build_ssd_box_predictor(
            config.box_predictor,
            f"{path}.box_predictor",
            in_channels=extractor_channels,
            num_anchors_per_location=anchors_per_location,
            num_classes=config.num_classes,
            add_background_class=config.add_background_class,
        ),
        box_coder=box_coder,
        target_assigner=target_assigner,
        loss=_build_ssd_loss(config, f"{path}.loss", code_size=box_coder.code_size),
        postprocessor=parts.build_postprocessor(
            config.post_processing, f"{path}.post_processing",
            background_column=config.add_background_class,
        ),
        add_background_class=config.add_background_class,
        pad_to_multiple=pad_to_multiple,
        freeze_batchnorm=config.freeze_batchnorm,
    )


def build_ssd_feature_extractor(
    config: ssd_pb2.SsdFeatureExtractor, path: str
) -> tuple[nn.Module, int]:
    """``feature_extractor`` -> (extractor, pad_to_multiple).

    ``use_explicit_padding`` chooses symmetric padding over TF's 'SAME' padding
    (:mod:`objdet.models.layers.padding`). ``replace_preprocessor_with_placeholder`` is an
    export option.
    """
    if config.type not in SSD_FEATURE_EXTRACTORS:
        raise ConfigError(
            f"{path}.type: {config.type!r} is not supported by objdet; supported: "
            f"{', '.join(sorted(SSD_FEATURE_EXTRACTORS))}"
        )
    check_fields(config, path, _FEATURE_EXTRACTOR_FIELDS)
    if config.depth_multiplier <= 0 or config.pad_to_multiple < 1:
        raise ConfigError(
            f"{path}: depth_multiplier must be > 0 and pad_to_multiple >= 1, found "
            f"{config.depth_multiplier} and {config.pad_to_multiple}"
        )
    if not 1 <= config.num_layers <= 6:
        raise ConfigError(f"{path}.num_layers: expected 1..6, found {config.num_layers}")
    params = FeatureExtractorParams(
        depth_multiplier=config.depth_multiplier,
        min_depth=config.min_depth,
        hyperparams=parts.build_conv_hyperparams(
            config.conv_hyperparams, f"{path}.conv_hyperparams"
        ),
        num_layers=config.num_layers,
        use_depthwise=config.use_depthwise,
        override_base_hyperparams=config.override_base_feature_extractor_hyperparams,
        padding="explicit" if config.use_explicit_padding else "same",
        fpn=_fpn_params(config, path) if config.HasField("fpn") else None,
        bifpn=_bifpn_params(config, path) if config.HasField("bifpn") else None,
        use_hardswish=config.use_hardswish,
    )
    try:
        return SSD_FEATURE_EXTRACTORS[config.type](params), config.pad_to_multiple
    except ValueError as error:  # the factory's own checks (e.g. a pyramid it needs)
        raise ConfigError(f"{path} ({config.type}): {error}") from None


def _check_levels(pyramid: fpn_pb2.FeaturePyramidNetworks | fpn_pb2.BidirectionalFeaturePyramidNetworks,
                  path: str) -> None:
    if not 1 <= pyramid.min_level <= pyramid.max_level:
        raise ConfigError(
            f"{path}: expected 1 <= min_level <= max_level, found "
            f"{pyramid.min_level} and {pyramid.max_level}"
        )


def _fpn_params(config: ssd_pb2.SsdFeatureExtractor, path: str) -> FpnParams:
    fpn = config.fpn
    _check_levels(fpn, f"{path}.fpn")
    return FpnParams(min_level=fpn.min_level, max_level=fpn.max_level,
                     additional_layer_depth=fpn.additional_layer_depth)


def _bifpn_params(config: ssd_pb2.SsdFeatureExtractor, path: str) -> BiFpnParams:
    bifpn = config.bifpn
    _check_levels(bifpn, f"{path}.bifpn")
    return BiFpnParams(min_level=bifpn.min_level, max_level=bifpn.max_level,
                       num_iterations=bifpn.num_iterations, num_filters=bifpn.num_filters,
                       combine_method=bifpn.combine_method,
                       use_native_resize_op=bifpn.use_native_resize_op)


def build_ssd_box_predictor(
    config: box_predictor_pb2.BoxPredictor,
    path: str,
    *,
    in_channels: list[int],
    num_anchors_per_location: list[int],
    num_classes: int,
    add_background_class: bool = True,
) -> nn.Module:
    """``box_predictor`` -> a predictor with ``num_classes`` class columns, plus background
    column 0 with ``add_background_class``."""
    kind = which_oneof(
        config,
        "box_predictor_oneof",
        path,
        {"convolutional_box_predictor", "weight_shared_convolutional_box_predictor"},
    )
    values = getattr(config, kind)
    path = f"{path}.{kind}"
    hyperparams = parts.build_conv_hyperparams(values.conv_hyperparams, f"{path}.conv_hyperparams")
    common = {
        "in_channels": in_channels,
        "num_anchors_per_location": num_anchors_per_location,
        "num_class_slots": num_classes + int(add_background_class),
        "hyperparams": hyperparams,
        "kernel_size": values.kernel_size,
        "box_code_size": values.box_code_size,
        "num_layers_before_predictor": values.num_layers_before_predictor,
        "use_dropout": values.use_dropout,
        "use_depthwise": values.use_depthwise,
        "dropout_keep_probability": values.dropout_keep_probability,
        "class_prediction_bias_init": values.class_prediction_bias_init,
    }
    if values.box_code_size != 4:
        raise ConfigError(
            f"{path}.box_code_size: {values.box_code_size} is not supported; "
            f"faster_rcnn_box_coder codes have 4 values"
        )
    if kind == "convolutional_box_predictor":
        clip = values.box_encodings_clip_range
        clip_range = (clip.min, clip.max) if values.HasField("box_encodings_clip_range") else None
        return ConvolutionalBoxPredictor(
            **common,
            min_depth=values.min_depth,
            max_depth=values.max_depth,  # type: ignore[arg-type]
            apply_sigmoid_to_scores=values.apply_sigmoid_to_scores,
            box_encodings_clip_range=clip_range,
        )
    check_fields(
        values,
        path,
        set(common) - {"in_channels", "num_anchors_per_location", "num_class_slots", "hyperparams"}
        | {"conv_hyperparams", "depth", "share_prediction_tower"},
    )
    try:
        return WeightSharedConvolutionalBoxPredictor(
            **common,
            depth=values.depth or in_channels[0],  # type: ignore[arg-type]
            share_prediction_tower=values.share_prediction_tower,
        )
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None


def _build_ssd_loss(config: ssd_pb2.Ssd, path: str, *, code_size: int) -> SSDLoss:
    loss = config.loss
    check_fields(loss, path, _LOSS_FIELDS)
    require_equal(loss, path, "expected_loss_weights", 0)  # NONE
    return SSDLoss(
        classification_loss=parts.build_classification_loss(
            loss.classification_loss, f"{path}.classification_loss"
        ),
        localization_loss=parts.build_localization_loss(
            loss.localization_loss, f"{path}.localization_loss"
        ),
        classification_weight=loss.classification_weight,
        localization_weight=loss.localization_weight,
        hard_example_miner=parts.build_hard_example_miner(loss, path),
        normalize_loss_by_num_matches=config.normalize_loss_by_num_matches,
        normalize_loc_loss_by_codesize=config.normalize_loc_loss_by_codesize,
        code_size=code_size,
    )
