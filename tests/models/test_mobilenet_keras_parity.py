"""The OD API's TF2 Keras SSD MobileNets, module by module, against the OD API itself.

Fixtures (tests/fixtures/odapi_mobilenet_keras/, written by its make_fixtures.py in the OD API
reference environment) hold tiny variants of the zoo configs, their realistic random TF2
checkpoint variables and the OD API's feature maps and raw box predictions for two images.
Here objdet builds the same config, loads the variables through ``tf2_variable_map`` and
must reproduce those numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from torch import nn

from objdet.models.checkpoints.variable_map import Target, to_torch_layout
from objdet.models.heads.box_predictors import ConvolutionalBoxPredictor
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.meta_arch.ssd_builder import build_ssd_box_predictor, build_ssd_feature_extractor
from objdet.protos import pipeline_pb2

FIXTURES = Path(__file__).parents[1] / "fixtures" / "odapi_mobilenet_keras"
VARIANTS = [
    "ssd_mobilenet_v1_keras",
    "ssd_mobilenet_v2_keras",
    "ssd_mobilenet_v1_fpn_keras",
    "ssd_mobilenet_v2_fpn_keras",
]
RELATIVE_TOLERANCE = 1e-4


def _checkpoint_variables(fixture: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{checkpoint key: TF-layout float32 array}`` unpacked from the fixture."""
    shapes = json.loads(str(fixture["variable_shapes"]))
    sizes = [int(np.prod(shape)) for shape in shapes]
    flat = np.split(fixture["variable_values"].astype(np.float32), np.cumsum(sizes)[:-1])
    return {str(key): value.reshape(shape)
            for key, value, shape in zip(fixture["variable_keys"], flat, shapes)}


def _load_variables(module: nn.Module, variable_map: dict[str, Target], prefix: str,
                    variables: dict[str, np.ndarray]) -> None:
    """Copy every checkpoint variable under ``prefix`` into ``module``; every parameter and
    statistic of the module must be covered and every variable used."""
    available = {key: value for key, value in variables.items() if key.startswith(prefix)}
    wanted = {prefix + key for key in variable_map}
    assert sorted(set(available) - wanted) == [], "checkpoint variables left unused"
    assert sorted(wanted - set(available)) == [], "mapped keys missing from the checkpoint"
    state = module.state_dict()
    loaded = set()
    for key, target in variable_map.items():
        value = to_torch_layout(available[prefix + key], target.layout)
        assert state[target.name].shape == value.shape, (key, target.name)
        state[target.name] = torch.from_numpy(value)
        loaded.add(target.name)
    uncovered = [name for name in state if name not in loaded
                 and not name.endswith("num_batches_tracked")]
    assert uncovered == [], "module tensors without a checkpoint variable"
    module.load_state_dict(state)


def _assert_close(actual: torch.Tensor, expected: np.ndarray, what: str) -> float:
    expected_tensor = torch.from_numpy(expected)
    assert actual.shape == expected_tensor.shape, what
    scale = max(1.0, float(expected_tensor.abs().max()))
    difference = float((actual - expected_tensor).abs().max())
    assert difference <= RELATIVE_TOLERANCE * scale, f"{what}: max |diff| {difference}"
    return difference


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """The two fixture images, preprocessed as the OD API does: (2 / 255) x - 1, NCHW."""
    pixels = np.load(FIXTURES / "images.npz")["images"].astype(np.float32)
    return torch.from_numpy((2.0 / 255.0) * pixels - 1.0).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("variant", VARIANTS)
def test_feature_maps_and_box_predictions_match_the_od_api(variant: str,
                                                           images: torch.Tensor) -> None:
    config_path = FIXTURES / f"{variant}.config"
    if not config_path.exists():
        pytest.skip(f"no fixture for {variant}")
    config = text_format.Parse(config_path.read_text(), pipeline_pb2.TrainEvalPipelineConfig())
    fixture = dict(np.load(FIXTURES / f"{variant}.npz"))
    variables = _checkpoint_variables(fixture)
    ssd = config.model.ssd
    extractor, _ = build_ssd_feature_extractor(ssd.feature_extractor, "model.ssd.feature_extractor")
    _load_variables(extractor, extractor.tf2_variable_map(), "model/_feature_extractor/",
                    variables)
    num_maps = len([key for key in fixture if key.startswith("feature_maps/")])
    anchors = [variables[_box_kernel_key(variables, level)].shape[-1] // 4
               for level in range(num_maps)]
    predictor = build_ssd_box_predictor(
        ssd.box_predictor, "model.ssd.box_predictor", in_channels=list(extractor.out_channels),
        num_anchors_per_location=anchors, num_classes=ssd.num_classes)
    _load_variables(predictor, predictor.tf2_variable_map(), "model/_box_predictor/", variables)
    extractor.eval()
    predictor.eval()
    with torch.no_grad():
        feature_maps = extractor(images)
        box_encodings, class_logits = predictor(feature_maps)
    assert len(feature_maps) == num_maps
    for level, feature_map in enumerate(feature_maps):
        _assert_close(feature_map.permute(0, 2, 3, 1), fixture[f"feature_maps/{level}"],
                      f"{variant} feature map {level}")
    _assert_close(box_encodings, fixture["box_encodings"], f"{variant} box encodings")
    _assert_close(class_logits, fixture["class_predictions_with_background"],
                  f"{variant} class predictions")


def _box_kernel_key(variables: dict[str, np.ndarray], level: int) -> str:
    """The last box encoder conv of map ``level`` (its outputs are anchors x 4)."""
    prefix = f"model/_box_predictor/_prediction_heads/box_encodings/{level}/"
    kernels = sorted((key for key in variables if key.startswith(prefix)
                      and key.endswith("/kernel/.ATTRIBUTES/VARIABLE_VALUE")),
                     key=lambda key: int(key[len(prefix):].split("/")[1]))
    return kernels[-1]


def test_convolutional_predictor_has_no_tower_when_its_depth_is_zero() -> None:
    """The OD API adds ``num_layers_before_predictor`` convs only when
    ``max(min(C, max_depth), min_depth) > 0`` (so never with the default depths 0, 0)."""
    predictor = ConvolutionalBoxPredictor(
        in_channels=[8, 4], num_anchors_per_location=[2, 2], num_class_slots=3,
        hyperparams=ConvHyperparams(), num_layers_before_predictor=2)
    assert all(len(tower) == 0 for tower in predictor.towers)
    assert not any("_shared_nets" in key for key in predictor.tf2_variable_map())
