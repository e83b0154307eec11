"""ssd_inception_v2 equals the OD API's TF1 extractor (tf_slim's inception_v2_base and
multi_resolution_feature_maps) given the same weights: the fixture comes from
tests/fixtures/odapi_ssd_inception_v2/make_fixture.py (65x65 input, so 'SAME' pads
asymmetrically at every stride)."""

import re
from pathlib import Path

import numpy as np
import torch

from objdet.models.feature_extractors.params import FeatureExtractorParams
from objdet.models.feature_extractors.ssd_inception import build_ssd_inception_v2
from objdet.models.hyperparams import BatchNormParams, ConvHyperparams

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_ssd_inception_v2"
_NORM = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
         "moving_variance": "running_var"}


def _torch_name(tf_name: str) -> str:
    """``InceptionV2/<scope>/{weights,BatchNorm/...}`` -> this extractor's state_dict name."""
    scope, _, variable = tf_name.removeprefix("InceptionV2/").rpartition("/")
    is_norm = scope.endswith("/BatchNorm")
    scope = scope.removesuffix("/BatchNorm")
    extra = re.fullmatch(r"Mixed_5c_(\d)_Conv2d_(\d)_.*", scope)
    if extra:  # multi_resolution_feature_maps: <from_layer>_<1|2>_Conv2d_<index>_...
        prefix = f"extra_layers.blocks.{int(extra.group(2)) - 2}.{int(extra.group(1)) - 1}"
        return f"{prefix}.{'1.' + _NORM[variable] if is_norm else '0.weight'}"
    parts = scope.split("/")
    if len(parts) == 3:  # Mixed_4c/Branch_1/Conv2d_0b_3x3
        prefix = f"base.layers.{parts[0]}.branches.{parts[1]}.{parts[2]}"
    else:
        prefix = f"base.layers.{parts[0]}"
    if parts[0] == "Conv2d_1a_7x7":  # separable: depthwise, pointwise, norm
        if is_norm:
            return f"{prefix}.2.{_NORM[variable]}"
        return f"{prefix}.{0 if variable == 'depthwise_weights' else 1}.weight"
    return f"{prefix}.{'1.' + _NORM[variable] if is_norm else '0.weight'}"


def _torch_value(tf_name: str, value: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(value.astype(np.float32))
    if tf_name.endswith("depthwise_weights"):  # [kh, kw, in, mult] -> [in * mult, 1, kh, kw]
        height, width = tensor.shape[:2]
        return tensor.reshape(height, width, -1).permute(2, 0, 1).unsqueeze(1)
    if tensor.dim() == 4:  # [kh, kw, in, out] -> [out, in, kh, kw]
        return tensor.permute(3, 2, 0, 1)
    return tensor


def test_ssd_inception_v2_matches_the_od_api() -> None:
    fixture = np.load(FIXTURE / "ssd_inception_v2.npz")
    hyperparams = ConvHyperparams(
        activation="RELU_6", weight_decay=0.00004,
        batch_norm=BatchNormParams(momentum=0.0003, epsilon=0.001, scale=True, center=True))
    extractor = build_ssd_inception_v2(FeatureExtractorParams(
        depth_multiplier=0.125, min_depth=8, hyperparams=hyperparams,
        override_base_hyperparams=True))
    state = extractor.state_dict()
    loaded = {}
    for key in fixture.files:
        if key.startswith("var/"):
            name = _torch_name(key.removeprefix("var/"))
            value = _torch_value(key, fixture[key])
            assert state[name].shape == value.shape, name
            loaded[name] = value
    expected_keys = {name for name in state if not name.endswith("num_batches_tracked")}
    assert set(loaded) == expected_keys
    extractor.load_state_dict(loaded, strict=False)
    images = torch.from_numpy(fixture["images"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        maps = extractor.eval()(images)
    assert len(maps) == 6
    for index, output in enumerate(maps):
        reference = torch.from_numpy(fixture[f"map_{index}"]).permute(0, 3, 1, 2)
        torch.testing.assert_close(output, reference, rtol=1e-4, atol=1e-4)
