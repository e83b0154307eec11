"""``build_center_net(config)``: the one place that turns a ``CenterNet`` message into a
:class:`~objdet.models.meta_arch.center_net.CenterNet`. Every field is read here or refused
with a ConfigError naming it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from google.protobuf.message import Message
from torch import nn

from objdet.errors import ConfigError
from objdet.models import component_builders as parts
from objdet.models.center_net_losses import L1LocalizationLoss, PenaltyReducedLogisticFocalLoss
from objdet.models.config_checks import check_fields, which_oneof
from objdet.models.feature_extractors.center_net_hourglass import (
    HOURGLASS_SPECS,
    CenterNetHourglass,
)
from objdet.models.feature_extractors.center_net_mobilenet_v2_fpn import CenterNetMobileNetV2Fpn
from objdet.models.feature_extractors.center_net_resnet_v1_fpn import CenterNetResNetV1Fpn
from objdet.models.feature_extractors.center_net_resnet_v2 import CenterNetResNetV2
from objdet.models.meta_arch.center_net import (
    BOX_OFFSET,
    BOX_SCALE,
    OBJECT_CENTER,
    CenterNet,
    CenterNetFeatureExtractor,
    CenterNetLossWeights,
    PredictionHead,
)
from objdet.models.meta_arch.center_net_keypoint_builder import build_keypoint_tasks
from objdet.protos import center_net_pb2

logger = logging.getLogger(__name__)

_CENTER_NET_FIELDS = {
    "num_classes", "feature_extractor", "image_resizer", "object_detection_task",
    "object_center_params", "use_depthwise", "keypoint_estimation_task",
    "keypoint_label_map_path",
    # Same numbers either way: the sparse and dense heatmap ops compute the same targets.
    "compute_heatmap_sparse",
    # Adds the raw predictions to the OD API's postprocess dict; objdet's predict() already
    # returns them (graph_outputs).
    "output_prediction_dict",
}
_OBJECT_CENTER_FIELDS = {
    "object_center_loss_weight", "classification_loss", "heatmap_bias_init",
    "min_box_overlap_iou", "max_box_predictions", "center_head_params",
    "peak_max_pool_kernel_size",
}
_OBJECT_DETECTION_FIELDS = {
    "task_loss_weight", "offset_loss_weight", "scale_loss_weight", "localization_loss",
    "scale_head_params", "offset_head_params",
}
_FEATURE_EXTRACTOR_FIELDS = {
    "type", "channel_means", "channel_stds", "bgr_ordering", "depth_multiplier",
    "use_separable_conv", "upsampling_interpolation", "use_depthwise",
}
NUM_SIZE_CHANNELS = NUM_OFFSET_CHANNELS = 2


def _resnet(module: Callable[..., nn.Module], depth: int
            ) -> Callable[[center_net_pb2.CenterNetFeatureExtractor, str], nn.Module]:
    def build(config: center_net_pb2.CenterNetFeatureExtractor, path: str) -> nn.Module:
        # The OD API's ResNet extractors take no depth multiplier, separable convs or
        # upsampling choice (``del kwargs``): objdet builds the same network and says so.
        for name in ("depth_multiplier", "use_separable_conv", "upsampling_interpolation",
                     "use_depthwise"):
            if config.HasField(name):
                logger.warning("%s.%s: %r is ignored by the OD API's %s; objdet builds the same",
                               path, name, getattr(config, name), config.type)
        return module(depth=depth)
    return build


def _hourglass(name: str) -> Callable[[center_net_pb2.CenterNetFeatureExtractor, str],
                                      nn.Module]:
    def build(config: center_net_pb2.CenterNetFeatureExtractor, path: str) -> nn.Module:
        for field in ("depth_multiplier", "use_separable_conv", "upsampling_interpolation",
                      "use_depthwise"):
            if config.HasField(field):
                logger.warning("%s.%s: %r is ignored by the OD API's %s; objdet builds the same",
                               path, field, getattr(config, field), name)
        return CenterNetHourglass(HOURGLASS_SPECS[name])
    return build


def _mobilenet_v2_fpn(config: center_net_pb2.CenterNetFeatureExtractor, path: str) -> nn.Module:
    if config.HasField("use_depthwise"):
        logger.warning("%s.use_depthwise: ignored by the OD API's %s (use_separable_conv "
                       "selects separable convs); objdet builds the same", path, config.type)
    if config.depth_multiplier == 1.0:
        # The OD API then loads ImageNet weights from the network (Keras applications);
        # objdet starts from its own initialization (use fine_tune_checkpoint for weights).
        logger.info("%s: depth_multiplier 1.0; the OD API would download ImageNet weights "
                    "here", path)
    try:
        return CenterNetMobileNetV2Fpn(
            depth_multiplier=config.depth_multiplier,
            use_separable_conv=(config.use_separable_conv
                                or config.type == "mobilenet_v2_fpn_sep_conv"),
            upsampling_interpolation=config.upsampling_interpolation)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None


# CenterNet feature extractor registry: config ``type`` -> builder.
CENTER_NET_FEATURE_EXTRACTORS: dict[
    str, Callable[[center_net_pb2.CenterNetFeatureExtractor, str], nn.Module]] = {
    "resnet_v1_50_fpn": _resnet(CenterNetResNetV1Fpn, 50),
    "resnet_v1_101_fpn": _resnet(CenterNetResNetV1Fpn, 101),
    "resnet_v2_50": _resnet(CenterNetResNetV2, 50),
    "resnet_v2_101": _resnet(CenterNetResNetV2, 101),
    **{name: _hourglass(name) for name in HOURGLASS_SPECS},
    "mobilenet_v2_fpn": _mobilenet_v2_fpn,
    "mobilenet_v2_fpn_sep_conv": _mobilenet_v2_fpn,
}


def build_center_net(config: center_net_pb2.CenterNet, path: str = "model.center_net"
                     ) -> CenterNet:
    """``CenterNet`` -> :class:`CenterNet` (object detection task, keypoint tasks)."""
    _refuse_unsupported_tasks(config, path)
    check_fields(config, path, _CENTER_NET_FIELDS)
    if config.num_classes <= 0:
        raise ConfigError(f"{path}.num_classes: expected a positive number of classes, "
                          f"found {config.num_classes}")
    # Before the (slow) extractor: a bad keypoint task or label map fails at once.
    tasks_and_heads = (build_keypoint_tasks(config, path, _head_params)
                       if config.keypoint_estimation_task else [])
    extractor_config = config.feature_extractor
    extractor = build_center_net_feature_extractor(extractor_config, f"{path}.feature_extractor")
    extractor_facts = cast(CenterNetFeatureExtractor, extractor)
    in_channels = extractor_facts.out_channels[-1]
    num_outputs = extractor_facts.num_feature_outputs
    center = config.object_center_params
    center_path = f"{path}.object_center_params"
    check_fields(center, center_path, _OBJECT_CENTER_FIELDS)
    detection = config.object_detection_task
    detection_path = f"{path}.object_detection_task"
    check_fields(detection, detection_path, _OBJECT_DETECTION_FIELDS)
    if center.max_box_predictions <= 0:
        raise ConfigError(f"{center_path}.max_box_predictions: expected > 0, found "
                          f"{center.max_box_predictions}")
    if center.peak_max_pool_kernel_size < 0:
        raise ConfigError(f"{center_path}.peak_max_pool_kernel_size: expected >= 0, found "
                          f"{center.peak_max_pool_kernel_size}")

    def heads(out_channels: int, owner: Message, field: str, owner_path: str,
              bias_fill: float | None = None) -> nn.ModuleList:
        kernel_sizes, num_filters = _head_params(owner, field, f"{owner_path}.{field}")
        return nn.ModuleList(PredictionHead(in_channels, out_channels, kernel_sizes=kernel_sizes,
                                            num_filters=num_filters, bias_fill=bias_fill,
                                            use_depthwise=config.use_depthwise)
                             for _ in range(num_outputs))

    prediction_heads = {
        OBJECT_CENTER: heads(config.num_classes, center, "center_head_params", center_path,
                             center.heatmap_bias_init),
        BOX_SCALE: heads(NUM_SIZE_CHANNELS, detection, "scale_head_params", detection_path),
        BOX_OFFSET: heads(NUM_OFFSET_CHANNELS, detection, "offset_head_params", detection_path),
    }
    keypoint_tasks = []
    for task, task_heads in tasks_and_heads:
        keypoint_tasks.append(task)
        for name, channels in task.head_channels().items():
            kernel_sizes, num_filters, bias_fill = task_heads[name]
            prediction_heads[name] = nn.ModuleList(
                PredictionHead(in_channels, channels, kernel_sizes=kernel_sizes,
                               num_filters=num_filters, bias_fill=bias_fill,
                               use_depthwise=config.use_depthwise)
                for _ in range(num_outputs))
    means, stds = _normalization(extractor_config, f"{path}.feature_extractor")
    return CenterNet(
        num_classes=config.num_classes,
        image_resizer=parts.build_image_resizer(config.image_resizer, f"{path}.image_resizer"),
        feature_extractor=extractor,
        heads=prediction_heads,
        center_loss=_center_loss(center, center_path),
        localization_loss=_localization_loss(detection, detection_path),
        loss_weights=CenterNetLossWeights(
            object_center=center.object_center_loss_weight, task=detection.task_loss_weight,
            scale=detection.scale_loss_weight, offset=detection.offset_loss_weight,
            min_box_overlap_iou=center.min_box_overlap_iou),
        max_box_predictions=center.max_box_predictions,
        peak_max_pool_kernel_size=center.peak_max_pool_kernel_size,
        channel_means=means, channel_stds=stds, bgr_ordering=extractor_config.bgr_ordering,
        keypoint_tasks=keypoint_tasks,
    )


def _refuse_unsupported_tasks(config: center_net_pb2.CenterNet, path: str) -> None:
    for name, what in (
        ("deepmac_mask_estimation", "DeepMAC (its own meta-architecture)"),
        ("mask_estimation_task", "mask estimation"),
        ("densepose_estimation_task", "DensePose"),
        ("track_estimation_task", "tracking"),
        ("temporal_offset_task", "temporal offsets"),
        ("post_processing", "NMS after the peak selection"),
    ):
        field = config.DESCRIPTOR.fields_by_name[name]
        present = (len(getattr(config, name)) > 0 if field.is_repeated
                   else config.HasField(name))
        if present:
            raise ConfigError(f"{path}.{name}: CenterNet {what} is not supported by objdet yet; "
                              "supported: the object detection task (object_center_params + "
                              "object_detection_task) and keypoint_estimation_task")
    if not config.HasField("object_detection_task"):
        raise ConfigError(f"{path}.object_detection_task: missing; objdet's CenterNet needs the "
                          "object detection task (keypoint-only models are not supported yet)")
    if config.keypoint_label_map_path and not config.keypoint_estimation_task:
        logger.warning("%s.keypoint_label_map_path: set without keypoint_estimation_task "
                       "(unused, as in the OD API)", path)
    center = config.object_center_params
    if center.use_labeled_classes:
        raise ConfigError(f"{path}.object_center_params.use_labeled_classes: true is not "
                          "supported by objdet yet (needs groundtruth_labeled_classes)")
    if len(center.keypoint_weights_for_center):
        raise ConfigError(f"{path}.object_center_params.keypoint_weights_for_center: "
                          f"{list(center.keypoint_weights_for_center)} (centers from keypoints, "
                          "for keypoint-only models) is not supported by objdet yet")


def build_center_net_feature_extractor(config: center_net_pb2.CenterNetFeatureExtractor,
                                       path: str) -> nn.Module:
    """``feature_extractor`` -> a CenterNet extractor (``CENTER_NET_FEATURE_EXTRACTORS``)."""
    check_fields(config, path, _FEATURE_EXTRACTOR_FIELDS)
    if config.type not in CENTER_NET_FEATURE_EXTRACTORS:
        raise ConfigError(f"{path}.type: {config.type!r} is not supported by objdet; supported: "
                          f"{', '.join(sorted(CENTER_NET_FEATURE_EXTRACTORS))}")
    return CENTER_NET_FEATURE_EXTRACTORS[config.type](config, path)


def _normalization(config: center_net_pb2.CenterNetFeatureExtractor, path: str
                   ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``channel_means``/``channel_stds`` (empty: 0 / 1, as the OD API)."""
    values = []
    for name, default in (("channel_means", 0.0), ("channel_stds", 1.0)):
        given = list(getattr(config, name))
        if given and len(given) != 3:
            raise ConfigError(f"{path}.{name}: expected 3 values (RGB), found {given}")
        if name == "channel_stds" and any(value == 0 for value in given):
            raise ConfigError(f"{path}.{name}: {given} has a zero standard deviation")
        values.append(tuple(given) if given else (default,) * 3)
    return values[0], values[1]  # type: ignore[return-value]


def _head_params(owner: Message, field: str, path: str) -> tuple[list[int], list[int]]:
    """``(kernel_sizes, num_filters)`` of ``owner.field``; without the message the OD API's
    default [3], [256] (an empty message: no intermediate conv)."""
    if not owner.HasField(field):
        return [3], [256]
    params = getattr(owner, field)
    kernel_sizes, num_filters = list(params.kernel_sizes), list(params.num_filters)
    if len(kernel_sizes) != len(num_filters):
        raise ConfigError(f"{path}: {len(num_filters)} num_filters but {len(kernel_sizes)} "
                          "kernel_sizes; expected one kernel size per intermediate conv")
    if any(value <= 0 for value in kernel_sizes + num_filters):
        raise ConfigError(f"{path}: kernel_sizes {kernel_sizes} and num_filters {num_filters} "
                          "must be positive")
    return kernel_sizes, num_filters


def _center_loss(center: center_net_pb2.CenterNet.ObjectCenterParams, path: str) -> nn.Module:
    kind = which_oneof(center.classification_loss, "classification_loss",
                       f"{path}.classification_loss", {"penalty_reduced_logistic_focal_loss"})
    loss = getattr(center.classification_loss, kind)
    return PenaltyReducedLogisticFocalLoss(alpha=loss.alpha, beta=loss.beta)


def _localization_loss(detection: center_net_pb2.CenterNet.ObjectDetection, path: str
                       ) -> nn.Module:
    which_oneof(detection.localization_loss, "localization_loss", f"{path}.localization_loss",
                {"l1_localization_loss"})
    return L1LocalizationLoss()


__all__ = ["CENTER_NET_FEATURE_EXTRACTORS", "build_center_net",
           "build_center_net_feature_extractor"]
