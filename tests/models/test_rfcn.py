"""R-FCN (``rfcn_box_predictor``): the builder picks RFCN and reads every predictor field, a
training step reaches every part, eval mode keeps the detection contract, and the second stage
pools the proposals from one box-classifier map (the pooling's parity with the OD API:
tests/models/layers/test_position_sensitive_crop.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models.contract import check_detection_model
from objdet.models.heads.rfcn_box_predictor import RfcnBoxPredictor
from objdet.models.layers.position_sensitive_crop import position_sensitive_crop_and_pool
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.rfcn import RFCN
from objdet.protos import faster_rcnn_pb2

TINY = Path(__file__).parents[1] / "fixtures" / "odapi_faster_rcnn" / "pipeline.config"
RFCN_PREDICTOR = """
  rfcn_box_predictor {
    conv_hyperparams { op: CONV regularizer { l2_regularizer { weight: 0.0 } }
                       initializer { truncated_normal_initializer { stddev: 0.01 } } }
    depth: 32 crop_height: 6 crop_width: 6 num_spatial_bins_height: 3 num_spatial_bins_width: 3
  }"""


def rfcn_config(predictor: str = RFCN_PREDICTOR) -> faster_rcnn_pb2.FasterRcnn:
    config = cfg.load(TINY).model.faster_rcnn
    config.ClearField("second_stage_box_predictor")
    text_format.Parse(predictor, config.second_stage_box_predictor)
    config.ClearField("initial_crop_size")  # R-FCN configs leave the crop settings unset
    return config


def _model() -> RFCN:
    torch.manual_seed(0)
    model = build_faster_rcnn(rfcn_config(), backbone_depth_multiplier=0.0625)
    assert isinstance(model, RFCN)
    return model


def test_the_builder_reads_the_predictor() -> None:
    predictor = _model().box_predictor
    assert isinstance(predictor, RfcnBoxPredictor)
    assert (predictor.num_spatial_bins, predictor.crop_size) == ((3, 3), (6, 6))
    assert predictor.reduce_depth[0].out_channels == 32
    assert predictor.class_predictions[0].out_channels == 9 * 3  # bins x (2 classes + bg)
    assert predictor.refined_locations[0].out_channels == 9 * 2 * 4


@pytest.mark.parametrize(("old", "new", "message"), [
    ("crop_height: 6", "crop_height: 7", r"rfcn_box_predictor: crop size \[7, 6\] is not divisible"),
    ("depth: 32", "depth: 32 box_code_size: 5", r"rfcn_box_predictor\.box_code_size: 5 is not supported"),
    ("depth: 32", "depth: 0", r"rfcn_box_predictor\.depth: 0 is not supported"),
])
def test_bad_predictor_settings_are_config_errors(old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_faster_rcnn(rfcn_config(RFCN_PREDICTOR.replace(old, new)),
                          backbone_depth_multiplier=0.0625)


def test_one_training_step_reaches_every_part() -> None:
    model = _model().train()
    images = [torch.rand(3, 120, 160), torch.rand(3, 128, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0], [60.0, 5.0, 150.0, 60.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model(images, targets)
    assert isinstance(losses, dict) and len(losses) == 4
    assert all(bool(torch.isfinite(value)) for value in losses.values())
    sum(losses.values()).backward()  # type: ignore[union-attr]
    for module in (model.proposal_head, model.box_predictor, model.feature_extractor):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_eval_mode_keeps_the_contract_and_pools_from_one_map() -> None:
    model = _model()
    detector = check_detection_model(model)
    model.eval()
    images = [torch.rand(3, 120, 160), torch.rand(3, 128, 96)]
    with torch.no_grad():
        detections = model(images)
        canvas = model.resize_batch(images).images
        first = model.predict_first_stage(canvas)
        proposals, _ = model.propose(first, [(120, 160)] * 2)
        refined, logits = model.predict_second_stage(first["features"], proposals,
                                                     tuple(canvas.shape[2:]))  # type: ignore[arg-type]
        # the second stage by hand: the extractor's box classifier part on the whole map,
        # then the predictor's position-sensitive pooling of each proposal
        height, width = canvas.shape[2:]
        classifier_map = model.feature_extractor.extract_box_classifier_features(first["features"])
        net = model.box_predictor.reduce_depth(classifier_map)
        normalized = proposals / proposals.new_tensor([width, height, width, height])
        expected_logits = position_sensitive_crop_and_pool(
            model.box_predictor.class_predictions(net), normalized, (6, 6), (3, 3))
    torch.testing.assert_close(logits.reshape(-1, 3), expected_logits)
    assert refined.shape == (2, proposals.shape[1], 2, 4)
    for detection, image in zip(detections, images, strict=True):
        boxes = detection["boxes"]
        assert 0 < len(boxes) <= detector.max_detections
        assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 2)).all()
