"""Tiny Faster R-CNN (R-FCN, Mask R-CNN) and CenterNet model configs (text format) for the
model contract test: 2 classes, a 64-pixel canvas (128 for the deepest hourglasses), few
proposals and detections."""

from __future__ import annotations

from objdet.models.feature_extractors.faster_rcnn_registry import FPN_FEATURE_EXTRACTORS

# The builder's backbone_depth_multiplier (not a config field; the parity fixtures' knob):
# every Faster R-CNN extractor but Inception-ResNet v2 (full width only) takes it.
FASTER_RCNN_DEPTH_MULTIPLIER = 0.0625
FULL_WIDTH_ONLY = frozenset({"faster_rcnn_inception_resnet_v2",
                             "faster_rcnn_inception_resnet_v2_keras"})
FASTER_RCNN_VARIANTS = ("faster_rcnn", "rfcn", "mask_rcnn")

_CONV = """op: CONV regularizer { l2_regularizer { weight: 0.0 } }
           initializer { truncated_normal_initializer { stddev: 0.01 } }"""
_FPN_HYPERPARAMS = """regularizer { l2_regularizer { weight: 0.0004 } }
    initializer { truncated_normal_initializer { stddev: 0.03 } } activation: RELU_6
    batch_norm { decay: 0.997 scale: true epsilon: 0.001 }"""
_GRID_ANCHORS = """grid_anchor_generator { height_stride: 16 width_stride: 16 height: 64 width: 64
    scales: 0.5 scales: 1.0 aspect_ratios: 0.5 aspect_ratios: 1.0 aspect_ratios: 2.0 }"""
_MULTISCALE_ANCHORS = """multiscale_anchor_generator { min_level: 2 max_level: 6
    anchor_scale: 4.0 aspect_ratios: 1.0 aspect_ratios: 2.0 scales_per_octave: 1
    normalize_coordinates: false }"""
_MASK_FIELDS = f"""conv_hyperparams {{ {_CONV} }} predict_instance_masks: true
    mask_prediction_conv_depth: 8 mask_height: 6 mask_width: 6
    mask_prediction_num_conv_layers: 2"""


def _box_predictor(mask_fields: str = "") -> str:
    """A mask_rcnn_box_predictor (with ``mask_fields``: Mask R-CNN's mask head)."""
    return f"""mask_rcnn_box_predictor {{
    fc_hyperparams {{ op: FC regularizer {{ l2_regularizer {{ weight: 0.0 }} }}
      initializer {{ variance_scaling_initializer {{ factor: 1.0 uniform: true
                                                   mode: FAN_AVG }} }} }}
    use_dropout: false dropout_keep_probability: 1.0 share_box_across_classes: false
    {mask_fields} }}"""


_RFCN_PREDICTOR = f"""rfcn_box_predictor {{ conv_hyperparams {{ {_CONV} }} depth: 16
    crop_height: 6 crop_width: 6 num_spatial_bins_height: 3 num_spatial_bins_width: 3 }}"""
_CROP = "initial_crop_size: 6 maxpool_kernel_size: 2 maxpool_stride: 2"


def faster_rcnn_contract_config_text(extractor: str, variant: str = "faster_rcnn") -> str:
    """A tiny ``faster_rcnn`` ``DetectionModel`` for ``extractor``: ``variant`` "faster_rcnn"
    (mask_rcnn_box_predictor, boxes), "rfcn" (rfcn_box_predictor) or "mask_rcnn" (three
    stages, instance masks). FPN extractors get their pyramid (levels 2..6) and multiscale
    anchors, as the OD API's configs."""
    if variant not in FASTER_RCNN_VARIANTS:
        raise ValueError(f"variant: {variant!r}; expected one of {FASTER_RCNN_VARIANTS}")
    extractor_fields = ""
    anchors = _GRID_ANCHORS
    if extractor in FPN_FEATURE_EXTRACTORS:
        extractor_fields = f"""conv_hyperparams {{ {_FPN_HYPERPARAMS} }}
            override_base_feature_extractor_hyperparams: true
            fpn {{ min_level: 2 max_level: 6 additional_layer_depth: 16 }}"""
        anchors = _MULTISCALE_ANCHORS
    predictor = {"faster_rcnn": _box_predictor(), "rfcn": _RFCN_PREDICTOR,
                 "mask_rcnn": _box_predictor(_MASK_FIELDS)}[variant]
    return f"""faster_rcnn {{
  number_of_stages: {3 if variant == "mask_rcnn" else 2}
  num_classes: 2
  image_resizer {{ keep_aspect_ratio_resizer {{ min_dimension: 64 max_dimension: 64
                                                pad_to_max_dimension: true }} }}
  feature_extractor {{ type: '{extractor}' batch_norm_trainable: true {extractor_fields} }}
  first_stage_anchor_generator {{ {anchors} }}
  first_stage_box_predictor_conv_hyperparams {{ {_CONV} }}
  first_stage_box_predictor_depth: 16
  first_stage_nms_score_threshold: 0.0 first_stage_nms_iou_threshold: 0.7
  first_stage_max_proposals: 4
  first_stage_localization_loss_weight: 2.0 first_stage_objectness_loss_weight: 1.0
  {"" if variant == "rfcn" else _CROP}
  second_stage_box_predictor {{ {predictor} }}
  second_stage_batch_size: 4
  second_stage_post_processing {{
    batch_non_max_suppression {{ score_threshold: 0.0 iou_threshold: 0.6
                                 max_detections_per_class: 4 max_total_detections: 4 }}
    score_converter: SOFTMAX }}
  second_stage_localization_loss_weight: 2.0 second_stage_classification_loss_weight: 1.0
  {"second_stage_mask_prediction_loss_weight: 4.0" if variant == "mask_rcnn" else ""}
  clip_anchors_to_image: true
}}"""


def faster_rcnn_depth_multiplier(extractor: str) -> float:
    """The backbone width the contract test builds ``extractor`` at."""
    return 1.0 if extractor in FULL_WIDTH_ONLY else FASTER_RCNN_DEPTH_MULTIPLIER


# The smallest canvas side each CenterNet hourglass takes (4 * 2**downsamplings); 64 else.
CENTER_NET_CANVAS = {"hourglass_52": 128, "hourglass_104": 128}


def center_net_contract_config_text(extractor: str) -> str:
    """A tiny ``center_net`` ``DetectionModel`` for ``extractor`` (2 classes, 16-filter heads,
    10 box predictions; MobileNet v2 at depth multiplier 0.25, the only extractors that take
    one)."""
    canvas = CENTER_NET_CANVAS.get(extractor, 64)
    width = "depth_multiplier: 0.25" if extractor.startswith("mobilenet") else ""
    head = "num_filters: 16 kernel_sizes: 3"
    return f"""center_net {{
  num_classes: 2
  feature_extractor {{ type: '{extractor}' {width}
    channel_means: 104.01 channel_means: 114.03 channel_means: 119.92
    channel_stds: 73.6 channel_stds: 69.89 channel_stds: 70.92 bgr_ordering: true }}
  image_resizer {{ keep_aspect_ratio_resizer {{ min_dimension: {canvas} max_dimension: {canvas}
                                                pad_to_max_dimension: true }} }}
  object_detection_task {{
    task_loss_weight: 1.0 offset_loss_weight: 1.0 scale_loss_weight: 0.1
    localization_loss {{ l1_localization_loss {{ }} }}
    scale_head_params {{ {head} }} offset_head_params {{ {head} }} }}
  object_center_params {{
    object_center_loss_weight: 1.0
    classification_loss {{ penalty_reduced_logistic_focal_loss {{ alpha: 2.0 beta: 4.0 }} }}
    min_box_overlap_iou: 0.7 max_box_predictions: 10
    center_head_params {{ {head} }} }}
}}"""
