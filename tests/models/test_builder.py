from pathlib import Path

import pytest
import torch
from ssd_configs import parse_model, ssd_config_text

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models import build_model, parameter_groups
from objdet.models.heads.box_predictors import ConvolutionalBoxPredictor
from objdet.models.meta_arch.ssd import SSD

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / ".." / "shared" / "data" / "odapi" / "configs" / "tf1_samples"
SUPPORTED_SAMPLES = [
    "ssd_mobilenet_v1_coco",
    "ssd_mobilenet_v2_coco",
    "ssdlite_mobilenet_v3_large_320x320_coco",
    "ssdlite_mobilenet_v3_small_320x320_coco",
    "ssd_mobilenet_v1_focal_loss_pets",
    "ssd_mobilenet_v2_pets_keras",
    "ssdlite_mobilenet_v2_coco",
    "ssd_mobilenet_v1_pets",
]


def _load_small(path: Path) -> cfg.TrainEvalPipelineConfig:
    pipeline = cfg.load(path)
    pipeline.model.ssd.feature_extractor.depth_multiplier = 0.25  # keep the test fast
    return pipeline


def test_raccoon_config_builds_the_configured_model() -> None:
    pipeline = _load_small(REPO / "datasets" / "raccoon" / "ssd_mobilenet_v1_pets.config")
    model = build_model(pipeline.model)
    assert isinstance(model, SSD) and model.num_classes == 1
    assert isinstance(model.box_predictor, ConvolutionalBoxPredictor)
    assert model.image_resizer.output_size(10, 20) == (300, 300)
    assert model.anchor_generator.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    assert model.loss.hard_example_miner is not None
    assert model.loss.hard_example_miner.max_negatives_per_positive == 3
    assert model.postprocessor.score_converter == "SIGMOID"
    with torch.no_grad():
        predictions = model.eval().predict(torch.rand(1, 3, 300, 300))
    # 1917 anchors, the OD API's count for SSD 300x300: 19x19x3 + 10x10x6 + 5x5x6 + ...
    assert predictions["class_logits"].shape == (1, 1917, 2)
    decays = sorted(group["weight_decay"] for group in parameter_groups(model))
    assert decays == [0.0, pytest.approx(0.00004)]


@pytest.mark.parametrize("name", SUPPORTED_SAMPLES)
def test_od_api_ssd_mobilenet_configs_build(name: str) -> None:
    pipeline = _load_small(SAMPLES / f"{name}.config")
    model = build_model(pipeline.model)
    assert model.num_classes == pipeline.model.ssd.num_classes


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("faster_rcnn_nas_coco", "model.faster_rcnn.feature_extractor.type: 'faster_rcnn_nas'"),
        (
            "ssdlite_mobilenet_edgetpu_320x320_coco",
            "model.ssd.feature_extractor.type: 'ssd_mobilenet_edgetpu'",
        ),
    ],
)
def test_unsupported_od_api_configs_fail_naming_the_field(name: str, field: str) -> None:
    pipeline = cfg.load(SAMPLES / f"{name}.config")
    with pytest.raises(ConfigError, match="supported") as error:
        build_model(pipeline.model)
    assert field in str(error.value)


@pytest.mark.parametrize(
    ("extra_text", "message"),
    [
        (
            "post_processing { batch_non_max_suppression { soft_nms_sigma: 0.5 } }",
            "batch_non_max_suppression.soft_nms_sigma: 0.5 is not supported",
        ),
        (
            "similarity_calculator { ioa_similarity {} }",
            "model.ssd.similarity_calculator.ioa_similarity is not supported",
        ),
        ("use_confidences_as_targets: true", "model.ssd.use_confidences_as_targets: True"),
        ("image_resizer { identity_resizer {} }", "model.ssd.image_resizer.identity_resizer"),
    ],
)
def test_unsupported_fields_fail_loudly(extra_text: str, message: str) -> None:
    model_config = parse_model(ssd_config_text())
    from google.protobuf import text_format

    # Merging replaces the oneof member / adds the field on top of the valid config.
    text_format.Merge("ssd { " + extra_text + " }", model_config)
    with pytest.raises(ConfigError) as error:
        build_model(model_config)
    assert message in str(error.value)
    assert "supported" in str(error.value)


def test_focal_loss_with_hard_example_miner_is_rejected() -> None:
    text = ssd_config_text().replace("weighted_sigmoid {}", "weighted_sigmoid_focal {}")
    with pytest.raises(ConfigError, match="hard_example_miner.*weighted_sigmoid_focal"):
        build_model(parse_model(text))


def test_anchor_layers_must_match_feature_maps() -> None:
    text = ssd_config_text().replace("num_layers: 6 min_scale", "num_layers: 4 min_scale")
    with pytest.raises(ConfigError, match="anchors for 4 feature maps.*produces 6"):
        build_model(parse_model(text))


def test_parameter_groups_cover_every_parameter_once() -> None:
    model = build_model(parse_model(ssd_config_text()))
    groups = parameter_groups(model)
    grouped = [id(p) for group in groups for p in group["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)
    no_decay, decayed = sorted(groups, key=lambda group: group["weight_decay"])
    assert no_decay["weight_decay"] == 0.0 and decayed["weight_decay"] == pytest.approx(0.00004)
    # Batch norm weights are never decayed; extra-layer conv weights are; depthwise conv
    # weights of the extra layers are not (regularize_depthwise defaults to false).
    block = model.feature_extractor.extra_layers.blocks[0]
    pointwise_conv, norm, depthwise_conv = (
        block[0][0].weight,
        block[0][1].weight,
        block[1][0].weight,
    )
    assert any(p is pointwise_conv for p in decayed["params"])
    assert any(p is norm for p in no_decay["params"])
    assert any(p is depthwise_conv for p in no_decay["params"])


def test_built_models_compute_in_channels_last_with_unchanged_results() -> None:
    model = build_model(parse_model(ssd_config_text(extractor="ssd_mobilenet_v3_large"))).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convs
    )
    contiguous = build_model(parse_model(ssd_config_text(extractor="ssd_mobilenet_v3_large")))
    contiguous.load_state_dict(model.state_dict())
    contiguous = contiguous.to(memory_format=torch.contiguous_format).eval()
    assert all(
        m.weight.is_contiguous() for m in contiguous.modules() if isinstance(m, torch.nn.Conv2d)
    )
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        fast, reference = model.predict(images), contiguous.predict(images)
    for key in ("box_encodings", "class_logits"):
        torch.testing.assert_close(fast[key], reference[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("resizer", "field"),
    [
        ("fixed_shape_resizer { height: 0 width: 64 }", "fixed_shape_resizer.height: 0"),
        ("fixed_shape_resizer { height: 64 width: -3 }", "fixed_shape_resizer.width: -3"),
        ("keep_aspect_ratio_resizer { min_dimension: 0 max_dimension: 80 }",
         "keep_aspect_ratio_resizer.min_dimension: 0"),
        ("keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 0 }",
         "keep_aspect_ratio_resizer.max_dimension: 0"),
    ],
)
def test_a_zero_image_size_is_a_config_error_naming_the_field(resizer: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^model\.ssd\.image_resizer\.{field}; an image size must be > 0"):
        build_model(parse_model(ssd_config_text(resizer=resizer)))
