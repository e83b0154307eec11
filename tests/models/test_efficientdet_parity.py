"""EfficientDet (EfficientNet + BiFPN) feature extractors against the OD API, on fixtures made
by the OD API itself (tests/fixtures/odapi_efficientdet/make_fixtures.py, run in the reference
environment): a shrunk D0 (EfficientNet width 0.2, BiFPN 16 filters) with realistic random
weights, one 256x256 image, and BiFPN variants for every combine method."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from objdet import config as cfg
from objdet.models.backbones.efficientnet import EfficientNet, round_filters, round_repeats
from objdet.models.checkpoints.variable_map import VARIABLE_SUFFIX, Target, to_torch_layout
from objdet.models.feature_extractors.params import BiFpnParams, FeatureExtractorParams
from objdet.models.feature_extractors.registry import SSD_FEATURE_EXTRACTORS
from objdet.models.feature_extractors.ssd_efficientdet import (
    EFFICIENTNET_LEVEL_TAPS,
    SSDEfficientDetFeatureExtractor,
)
from objdet.models.hyperparams import BatchNormParams, ConvHyperparams, InitializerParams
from objdet.models.meta_arch.ssd_builder import build_ssd_feature_extractor
from objdet.models.necks.bifpn import BiFPN, bifpn_nodes

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odapi_efficientdet" / "efficientdet_b0_tiny.npz"
CONFIGS = Path(__file__).parents[3] / "shared" / "data" / "odapi" / "configs" / "tf2"
RELATIVE_TOLERANCE = 1e-4
# The EfficientDet configs' feature_extractor.conv_hyperparams.
D0_HYPERPARAMS = ConvHyperparams(
    activation="SWISH",
    batch_norm=BatchNormParams(momentum=0.01, epsilon=0.001, scale=True),
    initializer=InitializerParams(kind="truncated_normal", stddev=0.03),
    weight_decay=0.00004,
    force_use_bias=True,
)


def build_extractor(settings: dict) -> SSDEfficientDetFeatureExtractor:
    """The objdet extractor for one fixture variant's settings (the fixture's ``meta``)."""
    min_level, max_level = settings["min_level"], settings["max_level"]
    backbone = EfficientNet(
        width_coefficient=settings["width_coefficient"],
        depth_coefficient=settings["depth_coefficient"],
        taps=[EFFICIENTNET_LEVEL_TAPS[level] for level in range(min_level, min(max_level, 5) + 1)],
    )
    bifpn = BiFPN(in_channels=backbone.out_channels, min_level=min_level, max_level=max_level,
                  num_iterations=settings["num_iterations"], num_filters=settings["num_filters"],
                  hyperparams=D0_HYPERPARAMS, combine_method=settings["combine_method"])
    return SSDEfficientDetFeatureExtractor(backbone=backbone, bifpn=bifpn)


def loaded_variable_map(extractor: torch.nn.Module) -> dict[str, Target]:
    """The extractor's map without the ``ignored`` classifier layers (never in a feature map)."""
    variable_map = extractor.tf2_variable_map()  # type: ignore[operator]
    return {key: target for key, target in variable_map.items() if target.layout != "ignored"}


def load_variables(extractor: torch.nn.Module, values: dict[str, np.ndarray]) -> None:
    """Fill ``extractor`` from ``{key relative to model/_feature_extractor/: value}``; every
    value must be used and every parameter and statistic filled."""
    variable_map = loaded_variable_map(extractor)
    assert set(variable_map) == set(values), (
        sorted(set(variable_map) ^ set(values))[:5])
    state = extractor.state_dict()
    filled = set()
    for key, target in variable_map.items():
        value = to_torch_layout(values[key].astype(np.float32), target.layout)
        assert state[target.name].shape == value.shape, key
        state[target.name] = torch.from_numpy(value)
        filled.add(target.name)
    assert {name for name in state if not name.endswith("num_batches_tracked")} == filled
    extractor.load_state_dict(state)


def read_fixture(path: Path) -> tuple[np.ndarray, dict, dict[str, dict[str, np.ndarray]]]:
    """(image uint8 [1, H, W, 3], meta, {variant: {checkpoint key: value}}); variants after
    the first take the first's backbone."""
    arrays = np.load(path)
    meta = json.loads(str(arrays["meta"]))
    variables: dict[str, dict[str, np.ndarray]] = {}
    backbone: dict[str, np.ndarray] = {}
    for variant, settings in meta["variants"].items():
        flat, offset, values = arrays[f"{variant}/variables"], 0, {}
        for key, shape in settings["index"]:
            size = int(np.prod(shape))
            values[key + VARIABLE_SUFFIX] = flat[offset : offset + size].reshape(shape)
            offset += size
        assert offset == flat.size
        if not backbone:
            backbone = {k: v for k, v in values.items() if not k.startswith("_bifpn_stage/")}
        variables[variant] = {**backbone, **values}
    return arrays["image"], meta, variables


def max_relative_errors(path: Path, variant: str) -> list[float]:
    """max |objdet - OD API| / max |OD API| per level, for one variant of a fixture file."""
    image, meta, variables = read_fixture(path)
    extractor = build_extractor(meta["variants"][variant])
    load_variables(extractor, variables[variant])
    images = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255.0  # [B, 3, H, W]
    with torch.no_grad():
        maps = extractor.eval()(extractor.preprocess(images))
    arrays = np.load(path)
    errors = []
    for index, feature in enumerate(maps):
        expected = torch.from_numpy(arrays[f"{variant}/level_{index}"]).permute(0, 3, 1, 2)
        assert feature.shape == expected.shape, index
        errors.append(float((feature - expected).abs().max() / expected.abs().max()))
    assert len(maps) == meta["variants"][variant]["max_level"] - meta["variants"][variant][
        "min_level"] + 1
    return errors


@pytest.mark.parametrize("variant",
                         ["fast_attention", "attention_native_resize", "weighted_sum", "sum"])
def test_feature_maps_match_the_od_api(variant: str) -> None:
    errors = max_relative_errors(FIXTURE, variant)
    assert max(errors) <= RELATIVE_TOLERANCE, errors


def test_maps_depend_on_the_image() -> None:
    """The fixture is not degenerate: another image moves every level's maps."""
    _, meta, variables = read_fixture(FIXTURE)
    extractor = build_extractor(meta["variants"]["fast_attention"])
    load_variables(extractor, variables["fast_attention"])
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 256, 256, generator=generator)
    with torch.no_grad():
        maps = extractor.eval()(extractor.preprocess(images))
    for feature in maps:
        assert (feature[0] - feature[1]).abs().max() > 0.1 * feature.abs().max()


def test_efficientnet_scaling_follows_tf_models() -> None:
    # b4 (width 1.4): 32 -> 48 stem; 112 * 1.4 = 156.8 -> 160; b7 repeats ceil(3.1 * 4) = 13
    assert [round_filters(f, 1.4) for f in (32, 16, 112, 320)] == [48, 24, 160, 448]
    assert round_filters(40, 0.25) == 16  # rounding down to 8 would lose more than 10%
    assert round_repeats(4, 3.1) == 13 and round_repeats(2, 1.1) == 3


def test_bifpn_node_graph_is_the_od_apis() -> None:
    nodes = bifpn_nodes(min_level=3, max_level=7, input_max_level=5, num_iterations=2)
    assert [node.name for node in nodes[:3]] == ["0_up_lvl_6", "0_up_lvl_7", "1_dn_lvl_6"]
    by_name = {node.name: node.inputs for node in nodes}
    assert by_name["1_dn_lvl_6"] == ("0_up_lvl_6", "0_up_lvl_7")
    assert by_name["2_dn_lvl_3"] == ("1_dn_lvl_3", "2_dn_lvl_4")
    assert by_name["2_up_lvl_5"] == ("1_up_lvl_5", "2_dn_lvl_5", "2_up_lvl_4")
    assert by_name["2_up_lvl_7"] == ("1_up_lvl_7", "2_up_lvl_6")
    assert len(nodes) == 2 + 2 * 8


def _params(**bifpn: object) -> FeatureExtractorParams:
    return FeatureExtractorParams(depth_multiplier=1.0, min_depth=16, hyperparams=D0_HYPERPARAMS,
                                  bifpn=BiFpnParams(**bifpn) if bifpn else None)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", range(8))
def test_every_efficientdet_type_is_registered(version: int) -> None:
    assert f"ssd_efficientnet-b{version}_bifpn_keras" in SSD_FEATURE_EXTRACTORS


def test_d0_builds_the_od_apis_variables_and_shapes() -> None:
    extractor = SSD_FEATURE_EXTRACTORS["ssd_efficientnet-b0_bifpn_keras"](_params(min_level=3))
    assert isinstance(extractor, SSDEfficientDetFeatureExtractor)
    # The OD API's D0 checkpoint: 128 EfficientNet layers with weights up to stack_6/block_0,
    # 6 input projections, 24 combines and 24 post-combine convs in 3 BiFPN iterations.
    variable_map = extractor.tf2_variable_map()
    assert f"_efficientnet/layer_with_weights-127/moving_variance{VARIABLE_SUFFIX}" in variable_map
    assert f"_efficientnet/layer_with_weights-128/kernel{VARIABLE_SUFFIX}" not in variable_map
    assert sum("bifpn_combine_weights" in key for key in variable_map) == 24
    assert sum("pointwise_kernel" in key for key in variable_map) == 24
    assert extractor.backbone.out_channels == [40, 112, 320]
    with torch.no_grad():
        maps = extractor.eval()(torch.zeros(1, 3, 256, 128))
    assert [tuple(m.shape) for m in maps] == [(1, 64, 32 // 1, 16), (1, 64, 16, 8),
                                              (1, 64, 8, 4), (1, 64, 4, 2), (1, 64, 2, 1)]


def test_bad_settings_are_refused() -> None:
    build = SSD_FEATURE_EXTRACTORS["ssd_efficientnet-b0_bifpn_keras"]
    with pytest.raises(ValueError, match="bifpn"):
        build(_params())
    with pytest.raises(ValueError, match="combine_method"):
        build(_params(combine_method="concat"))
    extractor = build(_params(max_level=5))
    with pytest.raises(ValueError, match="multiples of 2"):
        extractor(torch.zeros(1, 3, 96, 80))


@pytest.mark.parametrize("level", range(8))
def test_every_efficientdet_config_maps_every_checkpoint_variable(level: int) -> None:
    """Keys and shapes of the OD API's D0..D7 extractors (the zoo configs, unshrunk): every
    variable has a place except the classifier's (``classification_backbone/``)."""
    with gzip.open(FIXTURE.parent / "keys_d0_d7.json.gz", "rt") as handle:
        all_keys = json.load(handle)
    name = next(n for n in all_keys if n.startswith(f"ssd_efficientdet_d{level}_"))
    expected = {key + VARIABLE_SUFFIX: tuple(shape) for key, shape in all_keys[name].items()
                if not key.startswith("classification_backbone/")}
    pipeline = cfg.load(CONFIGS / name)
    with torch.device("meta"):  # shapes only: no memory, no initialization time
        extractor, _ = build_ssd_feature_extractor(
            pipeline.model.ssd.feature_extractor, "model.ssd.feature_extractor"
        )
    state = extractor.state_dict()
    variable_map = loaded_variable_map(extractor)
    assert set(variable_map) == set(expected)
    ignored = set(extractor.tf2_variable_map()) - set(variable_map)  # type: ignore[operator]
    classifier = {key + VARIABLE_SUFFIX for key in all_keys[name]
                  if key.startswith("classification_backbone/")}
    assert classifier and classifier <= ignored  # top conv + bn + logits: known, not loaded
    for key, target in variable_map.items():
        converted = to_torch_layout(np.empty(expected[key], np.float32), target.layout).shape
        assert tuple(state[target.name].shape) == converted, key
