"""R-FCN's position-sensitive pooling equals the OD API's (fixture from
tests/fixtures/odapi_rfcn/make_fixture.py), and the R-FCN box predictor's shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from objdet.models.heads.rfcn_box_predictor import RfcnBoxPredictor
from objdet.models.hyperparams import ConvHyperparams
from objdet.models.layers.position_sensitive_crop import position_sensitive_crop_and_pool

REFERENCE = np.load(Path(__file__).resolve().parents[2] / "fixtures" / "odapi_rfcn" / "reference.npz")


@pytest.mark.parametrize("name", ["bins3", "bins2x3"])
def test_pooling_equals_the_od_apis(name: str) -> None:
    features = torch.from_numpy(REFERENCE[f"{name}_features"]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    ymin, xmin, ymax, xmax = torch.from_numpy(REFERENCE[f"{name}_boxes"]).unbind(-1)
    boxes = torch.stack([xmin, ymin, xmax, ymax], dim=-1)  # [B, N, 4] x1, y1, x2, y2
    bins = tuple(int(v) for v in REFERENCE[f"{name}_bins"])
    crop = tuple(int(v) for v in REFERENCE[f"{name}_crop"])
    pooled = position_sensitive_crop_and_pool(features, boxes, crop, bins)  # type: ignore[arg-type]
    expected = REFERENCE[f"{name}_pooled"].reshape(-1, pooled.shape[1])
    np.testing.assert_allclose(pooled.numpy(), expected, atol=1e-5)


def test_each_bin_reads_only_its_own_channel_group() -> None:
    """A map whose group b is constant b: every bin reads its own value, the mean of 0..8."""
    groups = torch.arange(9, dtype=torch.float32).repeat_interleave(2)  # 9 groups of 2 channels
    features = groups.view(1, 18, 1, 1).expand(1, 18, 6, 6).contiguous()
    boxes = torch.tensor([[[0.1, 0.2, 0.9, 0.8]]])
    pooled = position_sensitive_crop_and_pool(features, boxes, (6, 6), (3, 3))
    torch.testing.assert_close(pooled, torch.full((1, 2), 4.0))


def test_crop_size_must_divide_into_the_bins() -> None:
    with pytest.raises(ValueError, match=r"crop size \[10, 12\] is not divisible by the number of "
                                         r"spatial bins \[3, 3\]"):
        RfcnBoxPredictor(in_channels=8, num_classes=2, hyperparams=ConvHyperparams(),
                         crop_size=(10, 12))


def test_box_predictor_shapes() -> None:
    torch.manual_seed(0)
    predictor = RfcnBoxPredictor(in_channels=8, num_classes=3, hyperparams=ConvHyperparams(),
                                 depth=16, crop_size=(6, 6)).eval()
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.2, 0.1, 0.9, 1.0]]]).expand(2, 2, 4)
    encodings, logits = predictor(torch.randn(2, 8, 7, 9), boxes)
    assert encodings.shape == (4, 3, 4) and logits.shape == (4, 4)
