"""Tiny SSD model configs (text format) shared by the model tests."""

from __future__ import annotations

from google.protobuf import text_format

from objdet.protos import model_pb2

HYPERPARAMS = """
  activation: RELU_6
  regularizer { l2_regularizer { weight: 0.00004 } }
  initializer { truncated_normal_initializer { stddev: 0.03 } }
  batch_norm { train: true scale: true center: true decay: 0.97 epsilon: 0.001 }
"""

SSD_ANCHORS = """ssd_anchor_generator {
  num_layers: 6 min_scale: 0.2 max_scale: 0.95
  aspect_ratios: 1.0 aspect_ratios: 2.0 aspect_ratios: 0.5 }"""
MULTISCALE_ANCHORS = """multiscale_anchor_generator {
  min_level: 4 max_level: 9 anchor_scale: 4.0 aspect_ratios: 1.0 aspect_ratios: 2.0
  scales_per_octave: 2 }"""
CONV_PREDICTOR = f"""convolutional_box_predictor {{
  kernel_size: 3 use_dropout: true use_depthwise: true class_prediction_bias_init: -4.6
  num_layers_before_predictor: 1 min_depth: 8 max_depth: 32
  conv_hyperparams {{ {HYPERPARAMS} }} }}"""
SHARED_PREDICTOR = f"""weight_shared_convolutional_box_predictor {{
  depth: 16 num_layers_before_predictor: 2 kernel_size: 3 class_prediction_bias_init: -4.6
  conv_hyperparams {{ {HYPERPARAMS} }} }}"""
FIXED_RESIZER = "fixed_shape_resizer { height: 64 width: 64 }"
KEEP_RATIO_RESIZER = "keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 80 }"
SIGMOID_WITH_MINER = """classification_loss { weighted_sigmoid {} }
    localization_loss { weighted_smooth_l1 {} }
    hard_example_miner { num_hard_examples: 100 iou_threshold: 0.99 loss_type: CLASSIFICATION
                         max_negatives_per_positive: 3 min_negatives_per_image: 2 }"""
SOFTMAX_L2 = """classification_loss { weighted_softmax { logit_scale: 2.0 } }
    localization_loss { weighted_l2 {} }"""
FOCAL = """classification_loss { weighted_sigmoid_focal { alpha: 0.75 gamma: 2.0 } }
    localization_loss { weighted_smooth_l1 { delta: 1.0 } }"""


def ssd_config_text(
    *,
    extractor: str = "ssd_mobilenet_v1",
    anchors: str = SSD_ANCHORS,
    predictor: str = CONV_PREDICTOR,
    resizer: str = FIXED_RESIZER,
    loss: str = SIGMOID_WITH_MINER,
    score_converter: str = "SIGMOID",
    extra: str = "",
) -> str:
    """A small SSD ``DetectionModel`` in text format (depth multiplier 0.25, 2 classes)."""
    return f"""ssd {{
  num_classes: 2
  image_resizer {{ {resizer} }}
  feature_extractor {{
    type: '{extractor}' depth_multiplier: 0.25 min_depth: 8 use_depthwise: true
    conv_hyperparams {{ {HYPERPARAMS} }}
  }}
  box_coder {{ faster_rcnn_box_coder {{ y_scale: 10.0 x_scale: 10.0 height_scale: 5.0 width_scale: 5.0 }} }}
  matcher {{ argmax_matcher {{ matched_threshold: 0.5 unmatched_threshold: 0.5
                               force_match_for_each_row: true }} }}
  similarity_calculator {{ iou_similarity {{}} }}
  anchor_generator {{ {anchors} }}
  box_predictor {{ {predictor} }}
  loss {{
    {loss}
    classification_weight: 1.0 localization_weight: 1.0
  }}
  normalize_loss_by_num_matches: true
  post_processing {{
    batch_non_max_suppression {{ score_threshold: 1e-8 iou_threshold: 0.6
                                 max_detections_per_class: 20 max_total_detections: 30 }}
    score_converter: {score_converter}
  }}
  {extra}
}}"""


MULTISCALE_3_5 = """multiscale_anchor_generator {
  min_level: 3 max_level: 5 anchor_scale: 4.0 aspect_ratios: 1.0 aspect_ratios: 2.0
  scales_per_octave: 2 }"""
SHARED_DEPTHWISE = f"""weight_shared_convolutional_box_predictor {{
  depth: 16 num_layers_before_predictor: 1 kernel_size: 3 class_prediction_bias_init: -4.6
  use_depthwise: true conv_hyperparams {{ {HYPERPARAMS} }} }}"""


def contract_config_text(extractor: str) -> str:
    """A tiny SSD for ``extractor``: its pyramid (if any), matching anchors and predictor."""
    if "bifpn" in extractor:
        pyramid = "bifpn { min_level: 3 max_level: 5 num_iterations: 1 num_filters: 16 }"
    elif "fpn" in extractor:
        pyramid = "fpn { min_level: 3 max_level: 5 additional_layer_depth: 16 }"
    elif extractor == "embedded_ssd_mobilenet_v1":  # 5 maps, 256x256 images only
        return ssd_config_text(extractor=extractor, anchors=SSD_ANCHORS.replace(
            "num_layers: 6", "num_layers: 5"), predictor=CONV_PREDICTOR,
            resizer="fixed_shape_resizer { height: 256 width: 256 }")
    elif extractor.startswith("ssd_inception"):  # built under conv_hyperparams, as the OD API
        # (Inception v3's 'VALID' stem needs more than 64 px)
        resizer = FIXED_RESIZER if extractor.endswith("v2") else \
            "fixed_shape_resizer { height: 160 width: 160 }"
        return ssd_config_text(extractor=extractor, anchors=SSD_ANCHORS, predictor=CONV_PREDICTOR,
                               resizer=resizer).replace("conv_hyperparams {", "override_base_feature_extractor_"
                                         "hyperparams: true conv_hyperparams {", 1)
    else:
        return ssd_config_text(extractor=extractor, anchors=SSD_ANCHORS, predictor=CONV_PREDICTOR)
    text = ssd_config_text(extractor=extractor, anchors=MULTISCALE_3_5, predictor=SHARED_DEPTHWISE)
    if "resnet" in extractor:  # no depthwise option; the OD API's ResNet FPN needs >= 129 px
        text = text.replace("min_depth: 8 use_depthwise: true", "min_depth: 8")
        # and its Keras extractors always build levels 3..7, whatever fpn {} says (the slim
        # ones build what it says: ask for 3..7 too)
        text = text.replace("min_level: 3 max_level: 5", "min_level: 3 max_level: 7")
        pyramid = pyramid.replace("min_level: 3 max_level: 5", "min_level: 3 max_level: 7")
        text = text.replace(FIXED_RESIZER, "fixed_shape_resizer { height: 160 width: 160 }")
    elif "efficientnet" in extractor:  # the OD API's EfficientNet takes no depth multiplier
        text = text.replace("depth_multiplier: 0.25 min_depth: 8 use_depthwise: true",
                            "depth_multiplier: 1.0 min_depth: 8")
    return text.replace(f"type: '{extractor}'", f"type: '{extractor}' {pyramid}")


def parse_model(text: str) -> model_pb2.DetectionModel:
    """Text -> ``DetectionModel``."""
    return text_format.Parse(text, model_pb2.DetectionModel())
