"""Box predictors: output layout (aligned with the anchor order), dropout, bias init, clipping."""

import pytest
import torch
from torch import nn

from objdet.models.heads.box_predictors import (
    ConvolutionalBoxPredictor,
    WeightSharedConvolutionalBoxPredictor,
)
from objdet.models.hyperparams import ConvHyperparams

LINEAR = ConvHyperparams(activation="NONE", batch_norm=None)


def _location_features() -> list[torch.Tensor]:
    """Two one-channel maps whose value is the cell's location: 2 x 3 (0..5), 1 x 2 (10, 11)."""
    first = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)
    second = torch.tensor([[[[10.0, 11.0]]]])
    return [first, second]


def _stamp(conv: nn.Module) -> None:
    """Output channel c at a cell with value v becomes 1000 v + c."""
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None
    with torch.no_grad():
        conv.weight.fill_(1000.0)
        conv.bias.copy_(torch.arange(conv.out_channels, dtype=torch.float32))


def _expected(anchors_per_map: list[int], values: int) -> torch.Tensor:
    """The OD API's layout: [B, H, W, a * v] -> [B, H * W * a, v] per map (row, column,
    anchor), maps concatenated; entry (anchor j, value k) comes from channel j * v + k."""
    rows = []
    for cells, anchors in zip([range(6), range(10, 12)], anchors_per_map):
        for cell in cells:
            for anchor in range(anchors):
                rows.append([1000.0 * cell + anchor * values + k for k in range(values)])
    return torch.tensor(rows)[None]


def test_convolutional_predictions_are_ordered_map_row_column_anchor() -> None:
    predictor = ConvolutionalBoxPredictor(
        in_channels=[1, 1],
        num_anchors_per_location=[2, 1],
        num_class_slots=3,
        hyperparams=LINEAR,
    )
    for head in [*predictor.box_heads, *predictor.class_heads]:
        _stamp(head[-1])
    boxes, classes = predictor(_location_features())
    assert torch.equal(boxes, _expected([2, 1], 4))
    assert torch.equal(classes, _expected([2, 1], 3))


def test_weight_shared_predictions_are_ordered_map_row_column_anchor() -> None:
    predictor = WeightSharedConvolutionalBoxPredictor(
        in_channels=[1, 1],
        num_anchors_per_location=[2, 2],
        num_class_slots=3,
        hyperparams=LINEAR,
        depth=1,
        kernel_size=1,
    )
    _stamp(predictor.box_head[-1])
    _stamp(predictor.class_head[-1])
    boxes, classes = predictor(_location_features())
    assert torch.equal(boxes, _expected([2, 2], 4))
    assert torch.equal(classes, _expected([2, 2], 3))


@pytest.mark.parametrize("shared", [False, True])
def test_dropout_keep_probability_and_class_bias_init(shared: bool) -> None:
    arguments = {
        "in_channels": [8, 8],
        "num_anchors_per_location": [3, 3],
        "num_class_slots": 2,
        "hyperparams": LINEAR,
        "use_dropout": True,
        "dropout_keep_probability": 0.8,
        "class_prediction_bias_init": -4.6,
    }
    if shared:
        predictor: nn.Module = WeightSharedConvolutionalBoxPredictor(**arguments, depth=8)
        class_heads, box_heads = [predictor.class_head], [predictor.box_head]
    else:
        predictor = ConvolutionalBoxPredictor(**arguments)
        class_heads, box_heads = list(predictor.class_heads), list(predictor.box_heads)
    dropouts = [module for module in predictor.modules() if isinstance(module, nn.Dropout)]
    assert dropouts and all(dropout.p == pytest.approx(0.2) for dropout in dropouts)
    for head in class_heads:
        assert torch.allclose(head[-1].bias, torch.full_like(head[-1].bias, -4.6))
    for head in box_heads:
        assert torch.equal(head[-1].bias, torch.zeros_like(head[-1].bias))


def test_box_encodings_clip_range_clips_boxes_only() -> None:
    predictor = ConvolutionalBoxPredictor(
        in_channels=[1, 1],
        num_anchors_per_location=[2, 1],
        num_class_slots=3,
        hyperparams=LINEAR,
        box_encodings_clip_range=(-1.0, 2.5),
    )
    for head in [*predictor.box_heads, *predictor.class_heads]:
        _stamp(head[-1])
    boxes, classes = predictor([-feature for feature in _location_features()])
    assert torch.equal(boxes, (-_expected([2, 1], 4) + 2 * _bias_part([2, 1], 4)).clamp(-1, 2.5))
    assert torch.equal(classes, -_expected([2, 1], 3) + 2 * _bias_part([2, 1], 3))


def _bias_part(anchors_per_map: list[int], values: int) -> torch.Tensor:
    """The channel-index part of :func:`_expected` (what the bias adds)."""
    return _expected(anchors_per_map, values) % 1000


def test_separate_class_tower_feeds_the_class_head_only() -> None:
    hyperparams = ConvHyperparams(activation="RELU", batch_norm=None)
    for share in (False, True):
        torch.manual_seed(0)
        predictor = WeightSharedConvolutionalBoxPredictor(
            in_channels=[4],
            num_anchors_per_location=[1],
            num_class_slots=2,
            hyperparams=hyperparams,
            depth=4,
            num_layers_before_predictor=1,
            kernel_size=1,
            share_prediction_tower=share,
        )
        features = [torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))]
        boxes, classes = predictor(features)
        assert (predictor.class_tower is None) == share
        with torch.no_grad():  # perturb the box tower: classes change only with a shared tower
            for parameter in predictor.box_tower.parameters():
                parameter.add_(0.5)
        new_boxes, new_classes = predictor(features)
        assert not torch.equal(new_boxes, boxes)
        assert torch.equal(new_classes, classes) != share
