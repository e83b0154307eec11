"""The Inception-ResNet v2 Faster R-CNN extractors (``faster_rcnn_inception_resnet_v2_keras``
and the slim ``faster_rcnn_inception_resnet_v2``): stage strides, atrous output stride 8,
second-stage padding, the TF2 variable maps against the OD API's checkpoint keys, and the
builder. Full-size parity with the OD API: benchmarks/inception_resnet_v2_parity.py.

The network is full width only (55M parameters): whole extractors are built on the meta
device (names, shapes, wiring); forwards run single blocks on small maps.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from torch import nn

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models.backbones.inception_resnet_v2 import (
    DEFAULT_BATCH_NORM,
    build_block8,
    build_block17,
    build_block35,
    build_mixed_5b,
    build_mixed_6a,
    build_mixed_7a,
    build_stem,
)
from objdet.models.checkpoints.variable_map import Target, to_torch_layout
from objdet.models.feature_extractors.faster_rcnn_inception_resnet_v2 import (
    FasterRcnnInceptionResnetV2FeatureExtractor,
)
from objdet.models.layers.padding import MaxPool2dSame
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn

FIXTURES = Path(__file__).parents[2] / "fixtures" / "odapi_faster_rcnn"
BN = DEFAULT_BATCH_NORM


def meta_extractor(stride: int, padding: str, *, batch_norm_trainable: bool = False
                   ) -> FasterRcnnInceptionResnetV2FeatureExtractor:
    with torch.device("meta"):
        return FasterRcnnInceptionResnetV2FeatureExtractor(
            first_stage_features_stride=stride, second_stage_padding=padding,  # type: ignore[arg-type]
            batch_norm_trainable=batch_norm_trainable)


@pytest.fixture(scope="module")
def keras_extractor() -> FasterRcnnInceptionResnetV2FeatureExtractor:
    return meta_extractor(16, "same")


@pytest.fixture(scope="module")
def atrous_slim_extractor() -> FasterRcnnInceptionResnetV2FeatureExtractor:
    return meta_extractor(8, "valid", batch_norm_trainable=True)


def conv_attributes(module: nn.Module, name: str) -> set[tuple[int, int]]:
    """``name`` (stride / dilation) of every conv with a kernel over 1x1 in ``module``."""
    return {getattr(conv, name) for conv in module.modules()
            if isinstance(conv, nn.Conv2d) and conv.kernel_size != (1, 1)}


@pytest.mark.parametrize("atrous", [False, True])
def test_first_stage_strides(atrous: bool) -> None:
    """Blocks as the backbone builds them for output stride 16 or 8, on real small maps."""
    stride, dilation = (1, 2) if atrous else (2, 1)
    with torch.no_grad():
        stem = build_stem(BN).eval()(torch.zeros(1, 3, 33, 49))
        assert stem.shape == (1, 192, 5, 7)  # 'SAME' everywhere: ceil(size / 8)
        mixed = build_block35(BN).eval()(build_mixed_5b(BN).eval()(stem))
        assert mixed.shape == (1, 320, 5, 7)
        features = build_mixed_6a(BN, stride).eval()(mixed)
        assert features.shape == (1, 1088, *((5, 7) if atrous else (3, 4)))
        block17 = build_block17(BN, dilation).eval()
        assert block17(features).shape == features.shape
    assert conv_attributes(block17, "dilation") == {(dilation, dilation)}


@pytest.mark.parametrize("atrous", [False, True])
def test_backbone_wires_the_output_stride(
        atrous: bool, keras_extractor: FasterRcnnInceptionResnetV2FeatureExtractor,
        atrous_slim_extractor: FasterRcnnInceptionResnetV2FeatureExtractor) -> None:
    backbone = (atrous_slim_extractor if atrous else keras_extractor).classification_backbone
    assert conv_attributes(backbone.mixed_6a, "stride") == ({(1, 1)} if atrous
                                                            else {(1, 1), (2, 2)})
    pool = backbone.mixed_6a.branches[2][0]
    assert isinstance(pool, MaxPool2dSame) and pool.stride == (1 if atrous else 2)
    assert conv_attributes(backbone.block17, "dilation") == {(2, 2) if atrous else (1, 1)}
    for stage in (backbone.stem, backbone.block35, backbone.mixed_7a, backbone.block8):
        assert conv_attributes(stage, "dilation") == {(1, 1)}
    assert conv_attributes(backbone.mixed_7a, "stride") == {(1, 1), (2, 2)}  # stride 2 always


@pytest.mark.parametrize(("padding", "expected"), [("same", (3, 3)), ("valid", (2, 2))])
def test_second_stage_padding(padding: str, expected: tuple[int, int]) -> None:
    """Keras pads Mixed_7a 'SAME' (5 -> 3), the slim extractor 'VALID' (5 -> 2)."""
    with torch.no_grad():
        mixed = build_mixed_7a(BN, padding).eval()(torch.zeros(2, 1088, 5, 5))  # type: ignore[arg-type]
        assert mixed.shape == (2, 2080, *expected)
        assert build_block8(BN, 1.0, activation=False).eval()(mixed).shape == mixed.shape


def test_keras_layer_order_of_mixed_5b(keras_extractor: FasterRcnnInceptionResnetV2FeatureExtractor
                                       ) -> None:
    """The OD API's Keras model lists Mixed_5b's weighted layers as conv2d_8, bn_8, conv2d_6,
    conv2d_9, bn_6, bn_9, conv2d_5, conv2d_7, conv2d_10, conv2d_11, bn_5, bn_7, bn_10, bn_11
    (``model.layers``; conv2d_5 is branch 0, 6-7 branch 1, 8-10 branch 2, 11 the pool's)."""
    units = ["2.0", "1.0", "2.1", "0.0", "1.1", "2.2", "3.1"]
    names = [f"branches.{unit}" for unit in units]
    expected = ([f"{names[0]}.0", f"{names[0]}.1"] + [f"{n}.0" for n in names[1:3]]
                + [f"{n}.1" for n in names[1:3]] + [f"{n}.0" for n in names[3:]]
                + [f"{n}.1" for n in names[3:]])
    assert keras_extractor.classification_backbone.mixed_5b.keras_layers() == expected


def load_keys(kind: str) -> dict[str, list[int]]:
    """The OD API checkpoint's variable keys and shapes (inception_resnet_v2_reference.py
    --keys_out): ``detection`` (``model/_feature_extractor_for_*``) or ``classification``."""
    with gzip.open(FIXTURES / "keys_inception_resnet_v2.json.gz", "rt") as stream:
        return {key: shape for key, shape in json.load(stream)[kind]}


@pytest.mark.parametrize("kind", ["detection", "classification"])
def test_variable_map_matches_the_od_api_checkpoint(
        kind: str, keras_extractor: FasterRcnnInceptionResnetV2FeatureExtractor) -> None:
    keys = load_keys(kind)
    variable_map: dict[str, Target] = (
        {f"model/{key}": target for key, target in keras_extractor.tf2_variable_map().items()}
        if kind == "detection" else keras_extractor.tf2_classification_map())
    assert len(keys) == 896 and set(variable_map) == set(keys)
    state = keras_extractor.state_dict()
    for key, target in variable_map.items():
        converted = to_torch_layout(np.empty(keys[key], np.float32), target.layout)
        assert converted.shape == tuple(state[target.name].shape), key
    # Every trained tensor and batch-norm statistic comes from the checkpoint (the unit
    # gammas of the scale=False batch norms are frozen constants).
    needed = {name for name, parameter in keras_extractor.named_parameters()
              if parameter.requires_grad}
    needed |= {name for name, _ in keras_extractor.named_buffers()
               if name.endswith(("running_mean", "running_var"))}
    assert needed == {target.name for target in variable_map.values()}


def test_slim_variable_map_fills_every_parameter_once(
        atrous_slim_extractor: FasterRcnnInceptionResnetV2FeatureExtractor) -> None:
    """The TF1 names (checked against the OD API's slim graph by the parity benchmark)."""
    variable_map = atrous_slim_extractor.slim_variable_map()
    targets = [target.name for target in variable_map.values()]
    assert len(variable_map) == 896 and len(set(targets)) == 896
    assert set(targets) == {target.name for target in
                            atrous_slim_extractor.tf2_classification_map().values()}
    first, second = "FirstStageFeatureExtractor/InceptionResnetV2", (
        "SecondStageFeatureExtractor/InceptionResnetV2")
    assert variable_map[f"{first}/Repeat_1/block17_20/Conv2d_1x1/biases"].name == (
        "classification_backbone.block17.19.up.bias")
    assert variable_map[f"{second}/Block8/Branch_1/Conv2d_0c_3x1/weights"].name == (
        "classification_backbone.block8.9.mixed.branches.1.2.0.weight")
    assert variable_map[f"{first}/Mixed_5b/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance"
                        ].name == "classification_backbone.mixed_5b.branches.3.1.1.running_var"


def test_preprocess_maps_to_minus_one_one() -> None:
    images = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    preprocessed = FasterRcnnInceptionResnetV2FeatureExtractor.preprocess(images)
    torch.testing.assert_close(preprocessed.flatten(), torch.tensor([-1.0, 0.0, 1.0]))


def test_batch_norms_follow_batch_norm_trainable(
        keras_extractor: FasterRcnnInceptionResnetV2FeatureExtractor,
        atrous_slim_extractor: FasterRcnnInceptionResnetV2FeatureExtractor) -> None:
    norms = [m for m in keras_extractor.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 204 and not norms[0].weight.requires_grad  # no gamma
    keras_extractor.train()
    assert not any(norm.training for norm in norms)
    atrous_slim_extractor.train()
    assert all(m.training for m in atrous_slim_extractor.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
    atrous_slim_extractor.eval()


@pytest.mark.parametrize(("extractor_type", "stride", "padding"), [
    ("faster_rcnn_inception_resnet_v2_keras", 16, "same"),
    ("faster_rcnn_inception_resnet_v2", 8, "valid"),
])
def test_builder_chooses_the_extractor(extractor_type: str, stride: int, padding: str) -> None:
    config = cfg.load(FIXTURES / "pipeline.config").model.faster_rcnn
    text_format.Merge(f"feature_extractor {{ type: '{extractor_type}' "
                      f"first_stage_features_stride: {stride} }}", config)
    with torch.device("meta"):
        model = build_faster_rcnn(config)
    extractor = model.feature_extractor
    assert isinstance(extractor, FasterRcnnInceptionResnetV2FeatureExtractor)
    assert extractor.classification_backbone.output_stride == stride
    pool = extractor.classification_backbone.mixed_7a.branches[3][0]
    assert isinstance(pool, torch.nn.MaxPool2d) and (type(pool) is torch.nn.MaxPool2d) == (
        padding == "valid")
    assert model.proposal_head.tf2_variable_map()  # the RPN is built on 1088 channels
    assert extractor.proposal_channels == 1088 and extractor.box_classifier_channels == 1536


@pytest.mark.parametrize(("extractor_type", "stride"), [
    ("faster_rcnn_inception_resnet_v2_keras", 8),  # the OD API's Keras second stage breaks
    ("faster_rcnn_inception_resnet_v2", 32),
])
def test_builder_refuses_strides_by_name(extractor_type: str, stride: int) -> None:
    config = cfg.load(FIXTURES / "pipeline.config").model.faster_rcnn
    text_format.Merge(f"feature_extractor {{ type: '{extractor_type}' "
                      f"first_stage_features_stride: {stride} }}", config)
    with pytest.raises(ConfigError, match=r"feature_extractor\.first_stage_features_stride: "
                       f"{stride} is not supported"):
        build_faster_rcnn(config)
