"""``build_faster_rcnn(config)``: the one place that turns a ``FasterRcnn`` message into a
:class:`~objdet.models.meta_arch.faster_rcnn.FasterRCNN`. Every field is read here (or in
:mod:`objdet.models.component_builders`) or refused with a ConfigError naming it."""

from __future__ import annotations

from torch import nn

from objdet.errors import ConfigError
from objdet.models import component_builders as parts
from objdet.models.anchor_generators import MultiscaleAnchorGenerator
from objdet.models.box_coders import FasterRcnnBoxCoder
from objdet.models.config_checks import check_fields, enum_name, which_oneof
from objdet.models.feature_extractors.faster_rcnn_registry import (
    FASTER_RCNN_FEATURE_EXTRACTORS,
    FPN_FEATURE_EXTRACTORS,
    FasterRcnnExtractorParams,
)
from objdet.models.feature_extractors.params import FpnParams
from objdet.models.grid_anchor_generator import GridAnchorGenerator
from objdet.models.heads.rfcn_box_predictor import RfcnBoxPredictor
from objdet.models.meta_arch.faster_rcnn import FasterRCNN, FasterRcnnFeatureExtractor
from objdet.models.meta_arch.faster_rcnn_heads import (
    MaskRcnnBoxPredictor,
    MaskRcnnMaskHead,
    RegionProposalHead,
)
from objdet.models.meta_arch.faster_rcnn_postprocessing import SecondStageNonMaxSuppression
from objdet.models.meta_arch.faster_rcnn_pyramid import FirstStageMultiscaleAnchors
from objdet.models.meta_arch.faster_rcnn_training import FasterRcnnLoss
from objdet.models.meta_arch.rfcn import RFCN
from objdet.protos import (
    anchor_generator_pb2,
    box_predictor_pb2,
    faster_rcnn_pb2,
    hyperparams_pb2,
    losses_pb2,
    post_processing_pb2,
)

_FASTER_RCNN_FIELDS = {
    "number_of_stages", "num_classes", "image_resizer", "feature_extractor",
    "first_stage_anchor_generator", "first_stage_atrous_rate",
    "first_stage_box_predictor_conv_hyperparams", "first_stage_box_predictor_kernel_size",
    "first_stage_box_predictor_depth", "first_stage_minibatch_size",
    "first_stage_positive_balance_fraction", "first_stage_nms_score_threshold",
    "first_stage_nms_iou_threshold", "first_stage_max_proposals",
    "first_stage_localization_loss_weight", "first_stage_objectness_loss_weight",
    "initial_crop_size", "maxpool_kernel_size", "maxpool_stride", "second_stage_box_predictor",
    "second_stage_batch_size", "second_stage_balance_fraction", "second_stage_post_processing",
    "second_stage_localization_loss_weight", "second_stage_classification_loss_weight",
    "second_stage_classification_loss",
    # Mask R-CNN: the mask loss weight; resize_masks says whether the model (true) or the
    # input pipeline (false) resizes groundtruth masks to the canvas. objdet's targets are
    # always in input-image pixels and the model always brings them there, the same masks.
    "second_stage_mask_prediction_loss_weight", "resize_masks",
    # use_matmul_crop_and_resize: read (FasterRCNN.native_crop_and_resize: the two crops
    # differ where a box's last sample rounds past the map). TF execution options with the
    # same results here: static shapes only pad
    # tensors in training (use_static_shapes_for_eval, which changes eval, is refused);
    # matmul gathers and the static sampler pick the same kinds of samples; partitioned NMS
    # is the same NMS; raw detections are not produced by the model.
    "use_matmul_crop_and_resize", "use_matmul_gather_in_matcher",
    "use_static_balanced_label_sampler", "use_static_shapes",
    "use_partitioned_nms_in_first_stage", "return_raw_detections_during_predict",
    "clip_anchors_to_image",
}
_FEATURE_EXTRACTOR_FIELDS = {
    "type", "first_stage_features_stride", "batch_norm_trainable",
    # The OD API's Keras ResNet extractors do not read it (only its FPN ones pad).
    "pad_to_multiple",
}
# Read by the FPN extractors only (the OD API's other Keras extractors fail on them).
_FPN_FEATURE_EXTRACTOR_FIELDS = {"conv_hyperparams",
                                 "override_base_feature_extractor_hyperparams", "fpn"}
_MULTISCALE_ANCHOR_FIELDS = {"min_level", "max_level", "anchor_scale", "aspect_ratios",
                             "scales_per_octave", "normalize_coordinates"}
_GRID_ANCHOR_FIELDS = {"scales", "aspect_ratios", "height", "width", "height_stride",
                       "width_stride", "height_offset", "width_offset"}
_MASK_RCNN_BOX_PREDICTOR_FIELDS = {
    "fc_hyperparams", "use_dropout", "dropout_keep_probability", "box_code_size",
    "share_box_across_classes",
    # The mask head (read only with predict_instance_masks, as the OD API).
    "predict_instance_masks", "conv_hyperparams", "mask_prediction_conv_depth", "mask_height",
    "mask_width", "mask_prediction_num_conv_layers", "masks_are_class_agnostic",
    "convolve_then_upsample_masks",
}
_NMS_FIELDS = {"score_threshold", "iou_threshold", "max_detections_per_class",
               "max_total_detections", "use_static_shapes", "use_partitioned_nms",
               "change_coordinate_frame", "use_hard_nms", "use_cpu_nms"}


def build_faster_rcnn(config: faster_rcnn_pb2.FasterRcnn, path: str = "model.faster_rcnn",
                      *, backbone_depth_multiplier: float = 1.0) -> FasterRCNN:
    """``FasterRcnn`` -> :class:`FasterRCNN`. ``backbone_depth_multiplier`` is not a config
    field (the OD API always builds full-width ResNets here); tiny parity fixtures set it."""
    check_fields(config, path, _FASTER_RCNN_FIELDS)
    predict_masks = _predicts_masks(config, path)
    _check(config.num_classes > 0, path, "num_classes", config.num_classes, "a positive number")
    # R-FCN (rfcn_box_predictor) pools position-sensitively: it reads no crop settings.
    rfcn = config.second_stage_box_predictor.WhichOneof("box_predictor_oneof") == "rfcn_box_predictor"
    crop_fields = () if rfcn else ("initial_crop_size", "maxpool_kernel_size", "maxpool_stride")
    for name in (*crop_fields,
                 "first_stage_max_proposals", "first_stage_box_predictor_depth",
                 "first_stage_box_predictor_kernel_size", "first_stage_atrous_rate",
                 "first_stage_minibatch_size", "second_stage_batch_size"):
        _check(getattr(config, name) > 0, path, name, getattr(config, name), "a positive number")
    _check(0.0 <= config.first_stage_nms_iou_threshold <= 1.0, path,
           "first_stage_nms_iou_threshold", config.first_stage_nms_iou_threshold, "in [0, 1]")
    pooled_crop_size = ((config.initial_crop_size - config.maxpool_kernel_size)
                        // max(config.maxpool_stride, 1) + 1)
    extractor = _build_feature_extractor(config.feature_extractor, f"{path}.feature_extractor",
                                         backbone_depth_multiplier, pooled_crop_size)
    channels: FasterRcnnFeatureExtractor = extractor  # type: ignore[assignment]
    levels: list[int] | None = getattr(extractor, "pyramid_levels", None)
    if levels is not None:
        _check_pyramid_model(config, path, rfcn=rfcn, masks=predict_masks)
    anchor_generator = _build_first_stage_anchor_generator(
        config.first_stage_anchor_generator, f"{path}.first_stage_anchor_generator", levels,
        config.feature_extractor.type)
    box_coder = FasterRcnnBoxCoder(y_scale=10.0, x_scale=10.0, height_scale=5.0,
                                   width_scale=5.0)  # the OD API's, fixed for Faster R-CNN
    proposal_head = RegionProposalHead(
        in_channels=channels.proposal_channels, depth=config.first_stage_box_predictor_depth,
        kernel_size=config.first_stage_box_predictor_kernel_size,
        atrous_rate=config.first_stage_atrous_rate,
        num_anchors_per_location=anchor_generator.num_anchors_per_location()[0],
        num_levels=len(levels) if levels is not None else 1,
        hyperparams=parts.build_conv_hyperparams(
            config.first_stage_box_predictor_conv_hyperparams,
            f"{path}.first_stage_box_predictor_conv_hyperparams"))
    return (RFCN if rfcn else FasterRCNN)(
        num_classes=config.num_classes,
        image_resizer=parts.build_image_resizer(config.image_resizer, f"{path}.image_resizer"),
        feature_extractor=extractor,
        anchor_generator=anchor_generator,
        proposal_head=proposal_head,
        box_predictor=_build_box_predictor(  # type: ignore[arg-type]  # RFCN's is an RfcnBoxPredictor
            config.second_stage_box_predictor, f"{path}.second_stage_box_predictor",
            in_channels=channels.box_classifier_channels, num_classes=config.num_classes),
        box_coder=box_coder,
        first_stage_nms_score_threshold=config.first_stage_nms_score_threshold,
        first_stage_nms_iou_threshold=config.first_stage_nms_iou_threshold,
        first_stage_max_proposals=config.first_stage_max_proposals,
        initial_crop_size=config.initial_crop_size,
        maxpool_kernel_size=config.maxpool_kernel_size,
        maxpool_stride=config.maxpool_stride,
        postprocessor=_build_postprocessor(config.second_stage_post_processing,
                                           f"{path}.second_stage_post_processing"),
        loss=FasterRcnnLoss(
            num_classes=config.num_classes, box_coder=box_coder,
            first_stage_minibatch_size=config.first_stage_minibatch_size,
            first_stage_positive_balance_fraction=config.first_stage_positive_balance_fraction,
            first_stage_localization_loss_weight=config.first_stage_localization_loss_weight,
            first_stage_objectness_loss_weight=config.first_stage_objectness_loss_weight,
            second_stage_batch_size=config.second_stage_batch_size,
            second_stage_balance_fraction=config.second_stage_balance_fraction,
            second_stage_localization_loss_weight=config.second_stage_localization_loss_weight,
            second_stage_classification_loss_weight=(
                config.second_stage_classification_loss_weight),
            second_stage_classification_loss=_build_classification_loss(
                config, f"{path}.second_stage_classification_loss"),
            second_stage_mask_loss_weight=config.second_stage_mask_prediction_loss_weight),
        clip_anchors_to_image=config.clip_anchors_to_image,
        native_crop_and_resize=not config.use_matmul_crop_and_resize,
        mask_head=_build_mask_head(
            config.second_stage_box_predictor.mask_rcnn_box_predictor,
            f"{path}.second_stage_box_predictor.mask_rcnn_box_predictor",
            in_channels=channels.box_classifier_channels, num_classes=config.num_classes,
        ) if predict_masks else None,
    )


def _predicts_masks(config: faster_rcnn_pb2.FasterRcnn, path: str) -> bool:
    """``number_of_stages``: 2 (boxes) or 3 (boxes and masks, which then needs
    ``predict_instance_masks``, as the OD API's third stage runs the mask head)."""
    predictor = config.second_stage_box_predictor
    masks = (predictor.WhichOneof("box_predictor_oneof") == "mask_rcnn_box_predictor"
             and predictor.mask_rcnn_box_predictor.predict_instance_masks)
    _check(config.number_of_stages in (2, 3), path, "number_of_stages", config.number_of_stages,
           "2 or 3 (one-stage RPN-only models are not supported)")
    if config.number_of_stages == 3 and not masks:
        raise ConfigError(f"{path}.number_of_stages: 3 needs second_stage_box_predictor."
                          "mask_rcnn_box_predictor.predict_instance_masks: true (the third "
                          "stage predicts masks)")
    if config.number_of_stages == 2 and masks:
        raise ConfigError(f"{path}.second_stage_box_predictor.mask_rcnn_box_predictor."
                          "predict_instance_masks: true needs number_of_stages: 3 (the OD API "
                          "predicts masks in its third stage)")
    return config.number_of_stages == 3


def _build_mask_head(config: box_predictor_pb2.MaskRCNNBoxPredictor, path: str, *,
                     in_channels: int, num_classes: int) -> MaskRcnnMaskHead:
    """The ``mask_rcnn_box_predictor`` mask fields -> :class:`MaskRcnnMaskHead`."""
    for name in ("mask_height", "mask_width", "mask_prediction_num_conv_layers"):
        _check(getattr(config, name) > 0, path, name, getattr(config, name), "a positive number")
    _check(config.mask_prediction_conv_depth >= 0, path, "mask_prediction_conv_depth",
           config.mask_prediction_conv_depth, ">= 0 (0 derives it from features and classes)")
    if not config.HasField("conv_hyperparams"):
        raise ConfigError(f"{path}.conv_hyperparams: missing; predict_instance_masks needs the "
                          "mask convolutions' hyperparams, as the OD API")
    return MaskRcnnMaskHead(
        in_channels=in_channels, num_classes=num_classes, mask_height=config.mask_height,
        mask_width=config.mask_width, conv_depth=config.mask_prediction_conv_depth,
        num_conv_layers=config.mask_prediction_num_conv_layers,
        masks_are_class_agnostic=config.masks_are_class_agnostic,
        convolve_then_upsample=config.convolve_then_upsample_masks,
        hyperparams=parts.build_conv_hyperparams(config.conv_hyperparams,
                                                 f"{path}.conv_hyperparams"))


def _check(condition: bool, path: str, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{path}.{name}: {value!r} is not supported by objdet; expected "
                          f"{expected}")


def _build_feature_extractor(config: faster_rcnn_pb2.FasterRcnnFeatureExtractor, path: str,
                             depth_multiplier: float, crop_size: int) -> nn.Module:
    """``feature_extractor`` -> a FasterRcnnFeatureExtractor from the registry."""
    factory = FASTER_RCNN_FEATURE_EXTRACTORS.get(config.type)
    if factory is None:
        raise ConfigError(f"{path}.type: {config.type!r} is not supported by objdet; supported: "
                          f"{', '.join(sorted(FASTER_RCNN_FEATURE_EXTRACTORS))}")
    fpn = config.type in FPN_FEATURE_EXTRACTORS
    check_fields(config, path, _FEATURE_EXTRACTOR_FIELDS | (
        _FPN_FEATURE_EXTRACTOR_FIELDS if fpn else set()))
    if fpn:
        check_fields(config.fpn, f"{path}.fpn",
                     {"min_level", "max_level", "additional_layer_depth"})
    try:
        return factory(FasterRcnnExtractorParams(
            first_stage_features_stride=config.first_stage_features_stride,
            batch_norm_trainable=config.batch_norm_trainable,
            depth_multiplier=depth_multiplier,
            conv_hyperparams=parts.build_conv_hyperparams(
                config.conv_hyperparams, f"{path}.conv_hyperparams")
            if config.HasField("conv_hyperparams") else None,
            override_base_feature_extractor_hyperparams=(
                config.override_base_feature_extractor_hyperparams),
            fpn=FpnParams(min_level=config.fpn.min_level, max_level=config.fpn.max_level,
                          additional_layer_depth=config.fpn.additional_layer_depth)
            if config.HasField("fpn") else None,
            pad_to_multiple=config.pad_to_multiple if config.HasField("pad_to_multiple")
            else None,
            crop_size=crop_size))
    except ValueError as error:
        raise ConfigError(f"{path}.{error}") from None


def _check_pyramid_model(config: faster_rcnn_pb2.FasterRcnn, path: str, *, rfcn: bool,
                         masks: bool) -> None:
    """What objdet does not build on a feature pyramid (nor does any OD API config)."""
    extractor = f"{path}.feature_extractor.type {config.feature_extractor.type!r}"
    if rfcn:
        raise ConfigError(f"{path}.second_stage_box_predictor.rfcn_box_predictor is not "
                          f"supported with {extractor} (R-FCN pools from one map)")
    if masks:
        raise ConfigError(f"{path}.number_of_stages: 3 (Mask R-CNN) is not supported with "
                          f"{extractor} yet; use a single-map extractor")


def _build_first_stage_anchor_generator(
    config: anchor_generator_pb2.AnchorGenerator, path: str, levels: list[int] | None,
    extractor_type: str,
) -> GridAnchorGenerator | FirstStageMultiscaleAnchors:
    """Grid anchors for a single-map extractor, multiscale ones (one level per pyramid map)
    for an FPN extractor."""
    expected = "grid_anchor_generator" if levels is None else "multiscale_anchor_generator"
    which = which_oneof(config, "anchor_generator_oneof", path,
                        {"grid_anchor_generator", "multiscale_anchor_generator"})
    if which != expected:
        raise ConfigError(f"{path}: {which} is not supported with feature_extractor.type "
                          f"{extractor_type!r}; expected {expected} (one anchor grid per "
                          "feature map the extractor gives)")
    if levels is None:
        return _build_grid_anchor_generator(config, path)
    values = config.multiscale_anchor_generator
    path = f"{path}.multiscale_anchor_generator"
    check_fields(values, path, _MULTISCALE_ANCHOR_FIELDS)
    if values.normalize_coordinates:
        raise ConfigError(f"{path}.normalize_coordinates: true is not supported; expected "
                          "false (the OD API's Faster R-CNN generates anchors without the "
                          "image size, so it fails on normalized ones)")
    anchor_levels = list(range(values.min_level, values.max_level + 1))
    if anchor_levels != levels:
        raise ConfigError(f"{path}: levels {values.min_level}..{values.max_level} do not match "
                          f"the feature pyramid's {levels[0]}..{levels[-1]} "
                          "(feature_extractor.fpn min_level/max_level)")
    _check(values.scales_per_octave > 0, path, "scales_per_octave", values.scales_per_octave,
           "a positive number")
    _check(len(values.aspect_ratios) > 0 and min(values.aspect_ratios) > 0, path,
           "aspect_ratios", list(values.aspect_ratios), "a non-empty list of positive ratios")
    return FirstStageMultiscaleAnchors(MultiscaleAnchorGenerator(
        min_level=values.min_level, max_level=values.max_level,
        anchor_scale=values.anchor_scale, aspect_ratios=list(values.aspect_ratios),
        scales_per_octave=values.scales_per_octave))


def _build_grid_anchor_generator(config: anchor_generator_pb2.AnchorGenerator, path: str
                                 ) -> GridAnchorGenerator:
    values = config.grid_anchor_generator
    check_fields(values, f"{path}.grid_anchor_generator", _GRID_ANCHOR_FIELDS)
    try:
        return GridAnchorGenerator(
            scales=list(values.scales), aspect_ratios=list(values.aspect_ratios),
            base_anchor_size=(float(values.height), float(values.width)),
            stride=(float(values.height_stride), float(values.width_stride)),
            offset=(float(values.height_offset), float(values.width_offset)))
    except ValueError as error:
        raise ConfigError(f"{path}.grid_anchor_generator: {error}") from None


def _build_box_predictor(config: box_predictor_pb2.BoxPredictor, path: str, *,
                         in_channels: int, num_classes: int
                         ) -> MaskRcnnBoxPredictor | RfcnBoxPredictor:
    which = which_oneof(config, "box_predictor_oneof", path,
                        {"mask_rcnn_box_predictor", "rfcn_box_predictor"})
    if which == "rfcn_box_predictor":
        return _build_rfcn_box_predictor(config.rfcn_box_predictor, f"{path}.rfcn_box_predictor",
                                         in_channels=in_channels, num_classes=num_classes)
    values = config.mask_rcnn_box_predictor
    path = f"{path}.mask_rcnn_box_predictor"
    check_fields(values, path, _MASK_RCNN_BOX_PREDICTOR_FIELDS)
    _check(values.box_code_size == 4, path, "box_code_size", values.box_code_size,
           "4 (faster_rcnn_box_coder codes)")
    # The OD API's Keras dense layers take only the batch norm of fc_hyperparams (their
    # initializer and regularizer are Keras defaults); the rest is checked, not used.
    fc_hyperparams = parts.build_conv_hyperparams(_as_conv(values.fc_hyperparams),
                                                  f"{path}.fc_hyperparams")
    return MaskRcnnBoxPredictor(
        in_channels=in_channels, num_classes=num_classes,
        share_box_across_classes=values.share_box_across_classes,
        use_dropout=values.use_dropout,
        dropout_keep_probability=values.dropout_keep_probability,
        fc_batch_norm=fc_hyperparams.batch_norm)


def _build_rfcn_box_predictor(config: box_predictor_pb2.RfcnBoxPredictor, path: str, *,
                              in_channels: int, num_classes: int) -> RfcnBoxPredictor:
    check_fields(config, path, {"conv_hyperparams", "num_spatial_bins_height",
                                "num_spatial_bins_width", "depth", "box_code_size",
                                "crop_height", "crop_width"})
    _check(config.box_code_size == 4, path, "box_code_size", config.box_code_size,
           "4 (faster_rcnn_box_coder codes)")
    for name in ("num_spatial_bins_height", "num_spatial_bins_width", "depth", "crop_height",
                 "crop_width"):
        _check(getattr(config, name) > 0, path, name, getattr(config, name), "a positive number")
    try:
        return RfcnBoxPredictor(
            in_channels=in_channels, num_classes=num_classes,
            hyperparams=parts.build_conv_hyperparams(config.conv_hyperparams,
                                                     f"{path}.conv_hyperparams"),
            num_spatial_bins=(config.num_spatial_bins_height, config.num_spatial_bins_width),
            depth=config.depth, crop_size=(config.crop_height, config.crop_width),
            box_code_size=config.box_code_size)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None


def _as_conv(hyperparams: hyperparams_pb2.Hyperparams) -> hyperparams_pb2.Hyperparams:
    """``fc_hyperparams`` (op: FC) checked by the conv hyperparams builder as op: CONV."""
    copy = hyperparams_pb2.Hyperparams()
    copy.CopyFrom(hyperparams)
    copy.op = hyperparams_pb2.Hyperparams.CONV
    return copy


def _build_postprocessor(config: post_processing_pb2.PostProcessing, path: str
                         ) -> SecondStageNonMaxSuppression:
    check_fields(config, path, {"batch_non_max_suppression", "score_converter", "logit_scale"})
    values = config.batch_non_max_suppression
    check_fields(values, f"{path}.batch_non_max_suppression", _NMS_FIELDS)
    try:
        return SecondStageNonMaxSuppression(
            score_threshold=values.score_threshold, iou_threshold=values.iou_threshold,
            max_detections_per_class=values.max_detections_per_class,
            max_total_detections=values.max_total_detections,
            score_converter=enum_name(config, "score_converter"),
            logit_scale=config.logit_scale)
    except ValueError as error:
        raise ConfigError(f"{path}.batch_non_max_suppression: {error}") from None


def _build_classification_loss(config: faster_rcnn_pb2.FasterRcnn, path: str) -> nn.Module:
    """``second_stage_classification_loss``; unset means weighted_softmax, as the OD API."""
    loss = config.second_stage_classification_loss
    if not config.HasField("second_stage_classification_loss"):
        loss = losses_pb2.ClassificationLoss()
        loss.weighted_softmax.SetInParent()
    return parts.build_classification_loss(loss, path)
