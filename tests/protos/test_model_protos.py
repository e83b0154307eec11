"""The model schema (objdet/protos/model.proto and its imports) against real OD API configs.

Every `model { ... }` block of the OD API's sample configs must parse into DetectionModel;
a few defaults must equal the OD API's; the binary form must round-trip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from objdet.protos import (
    argmax_matcher_pb2,
    faster_rcnn_box_coder_pb2,
    hyperparams_pb2,
    model_pb2,
    post_processing_pb2,
    ssd_anchor_generator_pb2,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ODAPI_CONFIGS = sorted((SHARED_DATA / "odapi" / "configs").glob("*/*.config"))
RACCOON_CONFIG = SHARED_DATA / "raccoon" / "ssd_mobilenet_v1_pets.config"
ALL_CONFIGS = [*ODAPI_CONFIGS, RACCOON_CONFIG]
# One config per meta-architecture family, chosen for maps, nested oneofs and rare fields.
ROUND_TRIP_STEMS = {
    "ssd_efficientdet_d7_1536x1536_coco17_tpu-32",
    "context_rcnn_resnet101_snapshot_serengeti",
    "center_net_deepmac_1024x1024_coco_tpu-128",
    "centernet_hourglass104_512x512_kpts_coco17_tpu-32",
    "mask_rcnn_inception_resnet_v2_atrous_coco",
}
ROUND_TRIP_CONFIGS = [path for path in ALL_CONFIGS if path.stem in ROUND_TRIP_STEMS]


def _skip_string(text: str, start: int) -> int:
    """Index just past the quoted string that opens at text[start]."""
    quote = text[start]
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index + 1
        index += 1
    raise ValueError(f"unterminated string starting at offset {start}")


def _top_level_block_body(text: str, name: str) -> str:
    """Text between the braces of the top-level `name { ... }` (or `name: { ... }`) block.

    Braces inside strings and `#` comments are ignored.
    """
    depth = 0
    index = 0
    body_start = None
    while index < len(text):
        char = text[index]
        if char in "'\"":
            index = _skip_string(text, index)
            continue
        if char == "#":
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline
            continue
        if char == "{":
            if depth == 0 and body_start is None and _names_block(text, index, name):
                body_start = index + 1
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0 and body_start is not None:
                return text[body_start:index]
        index += 1
    raise ValueError(f"no top-level '{name} {{ ... }}' block")


def _names_block(text: str, brace_index: int, name: str) -> bool:
    """Whether the identifier before the brace at brace_index (optionally with ':') is `name`."""
    before = text[:brace_index].rstrip().removesuffix(":").rstrip()
    if not before.endswith(name):
        return False
    preceding = before[: -len(name)]
    return not preceding or not (preceding[-1].isalnum() or preceding[-1] == "_")


def test_shared_configs_are_present() -> None:
    # Guards the parametrized test below against silently running on zero files.
    assert len(ODAPI_CONFIGS) >= 100
    assert RACCOON_CONFIG.is_file()
    assert {path.stem for path in ROUND_TRIP_CONFIGS} == ROUND_TRIP_STEMS


@pytest.mark.parametrize(
    "config_path", ALL_CONFIGS, ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_model_block_parses(config_path: Path) -> None:
    body = _top_level_block_body(config_path.read_text(encoding="utf-8"), "model")
    model = model_pb2.DetectionModel()
    text_format.Parse(body, model)
    assert model.WhichOneof("model") in {"ssd", "faster_rcnn", "center_net"}


def test_block_extraction_ignores_braces_in_strings_and_comments() -> None:
    text = (
        "# model { not this one }\n"
        "train_config { model { } }\n"
        "model {\n"
        '  experimental_model { name: "a}{b" }  # } stray brace in a comment\n'
        "}\n"
        "eval_config { }\n"
    )
    body = _top_level_block_body(text, "model")
    model = text_format.Parse(body, model_pb2.DetectionModel())
    assert model.experimental_model.name == "a}{b"


def test_unknown_model_field_is_rejected() -> None:
    with pytest.raises(text_format.ParseError, match="no_such_field"):
        text_format.Parse("ssd { no_such_field: 1 }", model_pb2.DetectionModel())


def test_defaults_equal_the_od_api() -> None:
    matcher = argmax_matcher_pb2.ArgMaxMatcher()
    assert matcher.matched_threshold == pytest.approx(0.5)
    assert matcher.unmatched_threshold == pytest.approx(0.5)
    assert matcher.negatives_lower_than_unmatched is True

    nms = post_processing_pb2.BatchNonMaxSuppression()
    assert nms.iou_threshold == pytest.approx(0.6)
    assert nms.max_detections_per_class == 100
    assert nms.max_total_detections == 100
    assert nms.change_coordinate_frame is True

    coder = faster_rcnn_box_coder_pb2.FasterRcnnBoxCoder()
    assert (coder.y_scale, coder.x_scale) == (10.0, 10.0)
    assert (coder.height_scale, coder.width_scale) == (5.0, 5.0)

    anchors = ssd_anchor_generator_pb2.SsdAnchorGenerator()
    assert anchors.num_layers == 6
    assert anchors.min_scale == pytest.approx(0.2)
    assert anchors.max_scale == pytest.approx(0.95)
    assert anchors.reduce_boxes_in_lowest_layer is True

    hyperparams = hyperparams_pb2.Hyperparams()
    assert hyperparams.activation == hyperparams_pb2.Hyperparams.RELU
    assert hyperparams.op == hyperparams_pb2.Hyperparams.CONV
    assert hyperparams_pb2.BatchNorm().decay == pytest.approx(0.999)

    faster_rcnn = model_pb2.DetectionModel().faster_rcnn
    assert faster_rcnn.first_stage_max_proposals == 300
    assert faster_rcnn.first_stage_nms_iou_threshold == pytest.approx(0.7)
    assert faster_rcnn.second_stage_batch_size == 64
    assert faster_rcnn.feature_extractor.first_stage_features_stride == 16

    center_net = model_pb2.DetectionModel().center_net
    assert center_net.object_center_params.heatmap_bias_init == pytest.approx(-2.19)
    assert center_net.object_detection_task.scale_loss_weight == pytest.approx(0.1)


def test_field_numbers_match_the_od_api() -> None:
    # Spot checks of numbers that are not in declaration order in the OD API.
    ssd_fields = model_pb2.DetectionModel().ssd.DESCRIPTOR.fields_by_name
    assert ssd_fields["add_background_class"].number == 21
    assert ssd_fields["freeze_batchnorm"].number == 16
    extractor_fields = model_pb2.DetectionModel().ssd.feature_extractor.DESCRIPTOR.fields_by_name
    assert extractor_fields["bifpn"].number == 19
    deepmac = model_pb2.DetectionModel().center_net.deepmac_mask_estimation.DESCRIPTOR
    assert deepmac.fields_by_name["mask_num_subsamples"].number == 67
    hyperparams_fields = hyperparams_pb2.Hyperparams.DESCRIPTOR.fields_by_name
    assert hyperparams_fields["sync_batch_norm"].number == 9
    assert hyperparams_fields["sync_batch_norm"].containing_oneof.name == "normalizer_oneof"


@pytest.mark.parametrize("config_path", ROUND_TRIP_CONFIGS, ids=lambda path: path.stem)
def test_binary_round_trip(config_path: Path) -> None:
    body = _top_level_block_body(config_path.read_text(encoding="utf-8"), "model")
    original = text_format.Parse(body, model_pb2.DetectionModel())
    # Deterministic: map fields (keypoint_label_to_std) have no fixed wire order otherwise.
    wire = original.SerializeToString(deterministic=True)
    restored = model_pb2.DetectionModel.FromString(wire)
    assert restored == original
    assert restored.SerializeToString(deterministic=True) == wire
    assert text_format.MessageToString(restored) == text_format.MessageToString(original)
