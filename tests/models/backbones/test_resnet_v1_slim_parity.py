"""slim ResNet v1 and the Faster R-CNN slim extractor == tf_slim's ``resnet_v1`` with the same
weights (fixture: tests/fixtures/odapi_resnet_v1_slim/make_fixture.py), at output strides
None, 8 and 16, and the second stage's stride-1 ``block4``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from objdet.models.backbones.resnet_v1_slim import ResNetV1Slim, resnet_v1_slim_blocks
from objdet.models.checkpoints.variable_map import Target, to_torch_layout
from objdet.models.feature_extractors.faster_rcnn_resnet_slim import (
    FasterRcnnResNetSlimFeatureExtractor,
)

FIXTURE = (Path(__file__).parents[2] / "fixtures" / "odapi_resnet_v1_slim"
           / "resnet_v1_slim_tiny.npz")
# resnet_v1_50's blocks at depth multiplier 1/32, min_base_depth 4 (the fixture's network)
DEPTH_MULTIPLIER, MIN_BASE_DEPTH = 1 / 32, 4
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def _load(module: nn.Module, variable_map: dict[str, Target], arrays: dict[str, np.ndarray],
          rename: dict[str, str]) -> None:
    """Fill ``module`` from the fixture's TF1 variables; every tensor must be covered."""
    state = {}
    for key, target in variable_map.items():
        for ours, theirs in rename.items():
            key = key.replace(ours, theirs)
        value = arrays[f"var/{key}"].astype(np.float32)
        state[target.name] = torch.from_numpy(to_torch_layout(value, target.layout))
    result = module.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert all(name.endswith("num_batches_tracked") for name in result.missing_keys)


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def _image(arrays: dict[str, np.ndarray]) -> torch.Tensor:
    """The fixture's input, through the extractor's own preprocessing."""
    pixels = torch.from_numpy(arrays["pixels"]).permute(0, 3, 1, 2).float() / 255.0
    return FasterRcnnResNetSlimFeatureExtractor.preprocess(pixels)


def _assert_close(found: torch.Tensor, expected: np.ndarray) -> None:
    reference = _nchw(expected)
    assert found.shape == reference.shape
    scale = float(reference.abs().max())
    assert scale > 0.1  # realistic activations, not a vanishing network
    torch.testing.assert_close(found, reference, rtol=0, atol=RELATIVE_TOLERANCE * scale)


@pytest.mark.parametrize("output_stride", [None, 8, 16])
def test_backbone_matches_tf_slim(arrays: dict[str, np.ndarray], output_stride: int | None
                                  ) -> None:
    network = ResNetV1Slim(blocks=resnet_v1_slim_blocks(
        50, depth_multiplier=DEPTH_MULTIPLIER, min_base_depth=MIN_BASE_DEPTH),
        output_stride=output_stride).eval()
    _load(network, network.slim_variable_map("resnet_v1"), arrays, {})
    with torch.no_grad():
        outputs = network(_image(arrays))
    name = "none" if output_stride is None else str(output_stride)
    for block, output in enumerate(outputs, start=1):
        _assert_close(output, arrays[f"os_{name}/block{block}"])


@pytest.mark.parametrize("stride", [8, 16])
def test_faster_rcnn_extractor_matches_tf_slim(arrays: dict[str, np.ndarray], stride: int
                                               ) -> None:
    extractor = FasterRcnnResNetSlimFeatureExtractor(
        depth=50, first_stage_features_stride=stride, depth_multiplier=DEPTH_MULTIPLIER,
        min_base_depth=MIN_BASE_DEPTH).eval()
    _load(extractor, extractor.slim_variable_map(), arrays, {
        "FirstStageFeatureExtractor/resnet_v1_50": "resnet_v1",
        "SecondStageFeatureExtractor/resnet_v1_50": "SecondStage"})
    image = _image(arrays)
    np.testing.assert_allclose(image.permute(0, 2, 3, 1).numpy(),
                               arrays["pixels"] - np.float32([123.68, 116.779, 103.939]),
                               atol=1e-4)
    with torch.no_grad():
        proposal_features = extractor.extract_proposal_features(image)
        box_features = extractor.extract_box_classifier_features(_nchw(arrays["crops"]))
    _assert_close(proposal_features, arrays[f"os_{stride}/block3"])
    _assert_close(box_features, arrays["second_stage"])
