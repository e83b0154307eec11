"""SSD ResNet v1 FPN (RetinaNet) against the OD API, on fixtures made by the OD API itself
(tests/fixtures/odapi_resnet_fpn/make_fixtures.py, run in the reference environment)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models import build_model
from objdet.models.checkpoints.variable_map import to_torch_layout
from objdet.models.feature_extractors.ssd_resnet_fpn import SSDResNetV1FpnFeatureExtractor
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.meta_arch.ssd import SSD
from objdet.models.meta_arch.ssd_builder import build_ssd_box_predictor, build_ssd_feature_extractor
from objdet.models.necks.fpn import FpnTopDown
from objdet.protos import box_predictor_pb2

FIXTURES = Path(__file__).parents[1] / "fixtures" / "odapi_resnet_fpn"
CONFIGS = Path(__file__).parents[3] / "shared" / "data" / "odapi" / "configs" / "tf2"
RELATIVE_TOLERANCE = 1e-4


def _relative_error(actual: torch.Tensor, expected: np.ndarray) -> float:
    reference = torch.from_numpy(np.asarray(expected, dtype=np.float32))
    return float((actual - reference).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def tiny() -> tuple[SSD, dict[str, np.ndarray]]:
    """The tiny config's objdet model holding the OD API model's (random) weights."""
    arrays = dict(np.load(FIXTURES / "tiny.npz"))
    model = build_model(cfg.load(FIXTURES / "tiny.config").model)
    assert isinstance(model, SSD)
    variable_map = model.tf2_variable_map()
    stored = {"model/" + key[len("var/"):] for key in arrays if key.startswith("var/")}
    assert set(variable_map) == stored  # every OD API variable used, every parameter filled
    state = model.state_dict()
    for key, target in variable_map.items():
        value = to_torch_layout(arrays["var/" + key[len("model/"):]].astype(np.float32),
                                target.layout)
        assert state[target.name].shape == value.shape, key
        state[target.name] = torch.from_numpy(value)
    model.load_state_dict(state)
    return model.eval(), arrays


def _images(arrays: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).float() / 255.0


def test_feature_maps_match_the_od_api(tiny: tuple[SSD, dict[str, np.ndarray]]) -> None:
    model, arrays = tiny
    extractor = model.feature_extractor
    assert isinstance(extractor, SSDResNetV1FpnFeatureExtractor)
    with torch.no_grad():
        maps = extractor(extractor.preprocess(_images(arrays)))
    assert len(maps) == 5
    for index, feature in enumerate(maps):
        expected = arrays[f"feature_map_{index}"].transpose(0, 3, 1, 2)  # NHWC -> NCHW
        assert feature.shape == expected.shape
        assert _relative_error(feature, expected) <= RELATIVE_TOLERANCE, index


def test_raw_predictions_and_anchors_match_the_od_api(
    tiny: tuple[SSD, dict[str, np.ndarray]],
) -> None:
    model, arrays = tiny
    images = _images(arrays)
    with torch.no_grad():
        predictions = model.predict(images)
    assert _relative_error(predictions["box_encodings"], arrays["box_encodings"]) <= 1e-4
    assert _relative_error(predictions["class_logits"], arrays["class_predictions"]) <= 1e-4
    height, width = images.shape[-2:]
    x1, y1, x2, y2 = predictions["anchors"].double().unbind(-1)
    normalized = torch.stack([y1 / height, x1 / width, y2 / height, x2 / width], dim=-1)
    expected = torch.from_numpy(arrays["anchors"]).double()
    assert normalized.shape == expected.shape
    assert float((normalized - expected).abs().max()) <= 1e-6


@pytest.mark.parametrize("depth", [101, 152])
def test_deeper_resnets_map_every_checkpoint_variable(depth: int) -> None:
    """Keys and shapes of the OD API's ssd_resnet{101,152}_v1_fpn extractors (640x640)."""
    with gzip.open(FIXTURES / f"keys_resnet{depth}.json.gz", "rt") as handle:
        expected = {key: tuple(shape) for key, shape in json.load(handle).items()}
    pipeline = cfg.load(CONFIGS / f"ssd_resnet{depth}_v1_fpn_640x640_coco17_tpu-8.config")
    with torch.device("meta"):  # shapes only: no memory, no initialization time
        extractor, _ = build_ssd_feature_extractor(
            pipeline.model.ssd.feature_extractor, "model.ssd.feature_extractor"
        )
    state = extractor.state_dict()
    variable_map = extractor.tf2_variable_map()  # type: ignore[operator]
    assert set(variable_map) == set(expected)
    for key, target in variable_map.items():
        shape = expected[key]
        converted = to_torch_layout(np.empty(shape, np.float32), target.layout).shape
        assert tuple(state[target.name].shape) == converted, key


def test_the_extractor_needs_an_fpn_block() -> None:
    pipeline = cfg.load(FIXTURES / "tiny.config")
    pipeline.model.ssd.feature_extractor.ClearField("fpn")
    with pytest.raises(ConfigError, match="feature_extractor.*fpn"):
        build_model(pipeline.model)


@pytest.mark.parametrize("native", [False, True])
def test_fpn_upsamples_nearest_and_crops_odd_sizes(native: bool) -> None:
    """With identity projections the finest output is coarse values repeated 2x2 plus fine."""
    linear = ConvHyperparams(activation="NONE", batch_norm=None)
    fpn = FpnTopDown(in_channels=[1, 1], depth=1, hyperparams=linear, use_native_resize_op=native,
                     padding="explicit")
    with torch.no_grad():
        for conv in (fpn.top_projection, fpn.lateral_projections[0]):
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        smoothing = fpn.smoothing[0][0]
        smoothing.weight.zero_()
        smoothing.weight[0, 0, 1, 1] = 1.0  # identity 3x3
        smoothing.bias.zero_()
        fine = torch.zeros(1, 1, 3, 5)
        coarse = torch.arange(6.0).reshape(1, 1, 2, 3)
        finest, coarsest = fpn([fine, coarse])
    assert torch.equal(coarsest, coarse)
    expected = torch.tensor([[0.0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]])
    assert torch.equal(finest[0, 0], expected)


@pytest.mark.parametrize("variant", ["depthwise_shared", "plain_no_batch_norm"])
def test_weight_shared_predictor_variants_match_the_od_api(variant: str) -> None:
    """Separable convs + shared tower + projection layers; no batch norm + dropout."""
    arrays = dict(np.load(FIXTURES / f"predictor_{variant}.npz"))
    config = text_format.Parse(str(arrays["config"]), box_predictor_pb2.BoxPredictor())
    inputs = [torch.from_numpy(arrays[f"input_{index}"].astype(np.float32)).permute(0, 3, 1, 2)
              for index in range(3)]
    predictor = build_ssd_box_predictor(
        config, "box_predictor", in_channels=[int(x.shape[1]) for x in inputs],
        num_anchors_per_location=[2, 2, 2], num_classes=3,
    )
    variable_map = predictor.tf2_variable_map()  # type: ignore[operator]
    assert set(variable_map) == {key[len("var/"):] for key in arrays if key.startswith("var/")}
    state = predictor.state_dict()
    for key, target in variable_map.items():
        value = to_torch_layout(arrays["var/" + key].astype(np.float32), target.layout)
        assert state[target.name].shape == value.shape, key
        state[target.name] = torch.from_numpy(value)
    predictor.load_state_dict(state)
    with torch.no_grad():
        box_encodings, class_logits = predictor.eval()(inputs)
    assert _relative_error(box_encodings, arrays["box_encodings"]) <= 1e-5
    assert _relative_error(class_logits, arrays["class_predictions"]) <= 1e-5
