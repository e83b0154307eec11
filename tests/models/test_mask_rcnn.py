"""Mask R-CNN in objdet's Faster R-CNN: the builder's mask fields, the mask head's layouts, the
mask ops (canvas masks, targets, reframing), eval outputs and a training step. Parity with the
OD API is tests/models/test_mask_rcnn_parity.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from objdet import config as cfg
from objdet.errors import ConfigError, DataError
from objdet.export.graph import check_exportable, instance_outputs
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.hyperparams import BatchNormParams, ConvHyperparams
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.faster_rcnn_heads import MaskRcnnMaskHead, mask_conv_depth
from objdet.models.meta_arch.faster_rcnn_masks import (
    canvas_masks,
    mask_targets,
    reframe_box_masks_to_image_masks,
    select_class_masks,
)
from objdet.models.meta_arch.faster_rcnn_training import BOX_CLASSIFIER_MASK_LOSS
from objdet.protos import faster_rcnn_pb2

FIXTURES = Path(__file__).parents[1] / "fixtures"
MASK_FIXTURE = FIXTURES / "odapi_mask_rcnn"
DEPTH_MULTIPLIER = 0.0625
PREDICTOR = "second_stage_box_predictor.mask_rcnn_box_predictor"


def tiny_config(**predictor_fields: object) -> faster_rcnn_pb2.FasterRcnn:
    config = cfg.load(MASK_FIXTURE / "pipeline.config").model.faster_rcnn
    predictor = config.second_stage_box_predictor.mask_rcnn_box_predictor
    for name, value in predictor_fields.items():
        setattr(predictor, name, value)
    return config


def build(config: faster_rcnn_pb2.FasterRcnn) -> FasterRCNN:
    return build_faster_rcnn(config, backbone_depth_multiplier=DEPTH_MULTIPLIER)


def test_builder_reads_every_mask_field() -> None:
    config = tiny_config(mask_height=10, mask_width=6, mask_prediction_conv_depth=16,
                         mask_prediction_num_conv_layers=2, masks_are_class_agnostic=True,
                         convolve_then_upsample_masks=True)
    text_format.Merge("batch_norm { scale: true } activation: RELU_6",
                      config.second_stage_box_predictor.mask_rcnn_box_predictor.conv_hyperparams)
    config.second_stage_mask_prediction_loss_weight = 2.5
    model = build(config)
    head = model.mask_head
    assert head is not None
    assert (head.mask_height, head.mask_width, head.num_masks) == (10, 6, 1)
    assert head.convolve_then_upsample
    kinds = [type(layer).__name__ for layer in head.layers]
    assert kinds[3] == "NearestUpsample" and kinds[2] == kinds[6] == "ReLU6"
    assert all(isinstance(head.layers[index], torch.nn.BatchNorm2d) for index in (1, 5))
    assert head.layers[0].out_channels == 16 and head.layers[0].bias is None  # batch norm
    assert model.loss.mask_loss_weight == 2.5
    features = torch.randn(3, model.feature_extractor.box_classifier_channels, 5, 3)
    assert head.eval()(features).shape == (3, 1, 10, 6)  # 5x3 -> x2, x2 nearest


def test_mask_conv_depth_follows_the_od_api() -> None:
    """``_get_mask_predictor_conv_depth``: 2 ** round((2 log2 C + 3 log2 K) / 5)."""
    assert mask_conv_depth(2048, 90) == 256
    assert mask_conv_depth(128, 2) == 8
    assert mask_conv_depth(1088, 90) == 256


@pytest.mark.parametrize(("change", "named"), [
    (lambda c: setattr(c.second_stage_box_predictor.mask_rcnn_box_predictor,
                       "predict_instance_masks", False), "number_of_stages"),
    (lambda c: setattr(c, "number_of_stages", 2), "predict_instance_masks"),
    (lambda c: setattr(c, "number_of_stages", 1), "number_of_stages"),
    (lambda c: setattr(c.second_stage_box_predictor.mask_rcnn_box_predictor, "mask_height", 0),
     f"{PREDICTOR}.mask_height"),
    (lambda c: setattr(c.second_stage_box_predictor.mask_rcnn_box_predictor,
                       "mask_prediction_num_conv_layers", 0), "mask_prediction_num_conv_layers"),
    (lambda c: c.second_stage_box_predictor.mask_rcnn_box_predictor.ClearField(
        "conv_hyperparams"), f"{PREDICTOR}.conv_hyperparams"),
    (lambda c: setattr(c.second_stage_box_predictor.mask_rcnn_box_predictor,
                       "predict_keypoints", True), "predict_keypoints"),
])
def test_builder_refuses_unsupported_mask_settings(change, named: str) -> None:
    config = tiny_config()
    change(config)
    with pytest.raises(ConfigError) as error:
        build(config)
    message = str(error.value)
    assert named in message and "\n" not in message


def test_mask_head_variable_map_follows_the_keras_layer_list() -> None:
    """Conv, batch norm, activation per conv layer; the upsampling Lambda; the last conv."""
    head = MaskRcnnMaskHead(
        in_channels=8, num_classes=3, mask_height=8, mask_width=8, conv_depth=4,
        num_conv_layers=2, masks_are_class_agnostic=False, convolve_then_upsample=True,
        hyperparams=ConvHyperparams(batch_norm=BatchNormParams(scale=True)))
    prefix = "_third_stage_heads/mask_predictions/_mask_predictor_layers"
    keys = {key.split(prefix + "/")[1].split("/.ATTRIBUTES")[0]
            for key in head.tf2_variable_map()}
    assert keys == {"0/kernel", "1/gamma", "1/beta", "1/moving_mean", "1/moving_variance",
                    "4/kernel", "5/gamma", "5/beta", "5/moving_mean", "5/moving_variance",
                    "7/kernel", "7/bias"}
    state = head.state_dict()
    assert all(target.name in state for target in head.tf2_variable_map().values())


def test_reframing_places_each_mask_in_its_box() -> None:
    masks = torch.ones(2, 4, 4)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])  # x1, y1, x2, y2
    image = reframe_box_masks_to_image_masks(masks, boxes, (8, 10))
    assert image.shape == (2, 8, 10)
    assert torch.equal(image[0], torch.ones(8, 10))
    assert float(image[1, :3, :4].min()) == 1.0  # rows <= 3.5, columns <= 4.5 of 7 and 9
    assert float(image[1, 4:].max()) == 0.0 and float(image[1, :, 5:].max()) == 0.0
    ramp = torch.linspace(0, 1, 4).repeat(1, 4, 1)  # [1, 4, 4]: 0 .. 1 left to right
    resized = reframe_box_masks_to_image_masks(ramp, boxes[:1], (3, 7))
    assert torch.allclose(resized[0, 1], torch.linspace(0, 1, 7), atol=1e-6)
    assert reframe_box_masks_to_image_masks(torch.zeros(0, 4, 4), torch.zeros(0, 4),
                                            (5, 6)).shape == (0, 5, 6)


def test_mask_targets_crop_the_matched_masks() -> None:
    masks = torch.zeros(2, 8, 8)
    masks[0, :, :4] = 1.0  # left half
    masks[1] = 1.0
    proposals = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0], [4.0, 0.0, 8.0, 8.0]])
    targets = mask_targets(masks, proposals, torch.tensor([0, -1, 1]), (8, 8), (4, 2))
    assert targets.shape == (3, 4, 2)
    assert torch.equal(targets[1], torch.zeros(4, 2))  # unmatched
    assert torch.equal(targets[2], torch.ones(4, 2))
    assert float(targets[0, :, 0].min()) == 1.0 and float(targets[0, :, 1].max()) == 0.0


def test_canvas_masks_resize_and_pad() -> None:
    masks = torch.zeros(1, 4, 6, dtype=torch.uint8)
    masks[0, :2] = 1
    canvas = canvas_masks(masks, (2, 3), (4, 4))
    assert canvas.shape == (1, 4, 4) and canvas.dtype == torch.float32
    assert canvas[0].tolist() == [[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_class_masks_pick_the_detected_class() -> None:
    logits = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).reshape(2, 3, 1, 1)
    assert select_class_masks(logits, torch.tensor([3, 1])).flatten().tolist() == [2.0, 3.0]
    assert select_class_masks(logits[:, :1], torch.tensor([3, 1])).flatten().tolist() == [0.0, 3.0]


@pytest.fixture(scope="module")
def fixture_model() -> FasterRCNN:
    model = build(cfg.load(MASK_FIXTURE / "pipeline.config").model.faster_rcnn)
    load_tf2_checkpoint(model, MASK_FIXTURE / "checkpoint" / "ckpt-0")
    return model.eval()


def test_eval_outputs_masks_over_each_input_image(fixture_model: FasterRCNN) -> None:
    images = [torch.rand(3, 70, 100, generator=torch.Generator().manual_seed(1)),
              torch.rand(3, 90, 60, generator=torch.Generator().manual_seed(2))]
    with torch.no_grad():
        outputs = fixture_model(images)
    assert isinstance(outputs, list)
    for image, output in zip(images, outputs):
        count = output["boxes"].shape[0]
        assert count > 0
        assert output["masks"].shape == (count, 1, *image.shape[1:])
        assert 0.0 <= float(output["masks"].min()) and float(output["masks"].max()) <= 1.0
        assert float(output["masks"].max()) > 0.5


def test_eval_without_detections_gives_empty_masks(fixture_model: FasterRCNN) -> None:
    threshold = fixture_model.postprocessor.score_threshold
    fixture_model.postprocessor.score_threshold = 1.0
    try:
        with torch.no_grad():
            output = fixture_model([torch.rand(3, 50, 40)])[0]
    finally:
        fixture_model.postprocessor.score_threshold = threshold
    assert isinstance(output, dict)
    assert output["masks"].shape == (0, 1, 50, 40)


def test_export_has_the_masks_and_the_map_they_are_cropped_from(fixture_model: FasterRCNN) -> None:
    """The export signature gets detection_masks, and model.pt2 the map the mask head crops
    after NMS (tests/export/test_export_masks_keypoints.py exports one)."""
    check_exportable(fixture_model)
    assert instance_outputs(fixture_model) == {"detection_masks": (14, 12)}
    assert fixture_model.graph_outputs[-1] == "rpn_features_to_crop"


def training_batch(model: FasterRCNN) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The parity fixture's training image with its two boxes (input pixels) and masks."""
    arrays = np.load(MASK_FIXTURE / "training.npz")
    pixels = np.load(FIXTURES / "odapi_faster_rcnn" / "reference.npz")["image_1"]
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    scale = model.resize_batch([image]).scales()[0].flip(0).repeat(2)  # (x, y, x, y)
    return [image], [{"boxes": torch.from_numpy(arrays["gt_boxes_canvas"]) / scale,
                      "labels": torch.from_numpy(arrays["gt_labels"]),
                      "masks": torch.from_numpy(arrays["gt_masks"])}]


def test_training_steps_lower_the_mask_loss() -> None:
    config = cfg.load(MASK_FIXTURE / "pipeline_training.config").model.faster_rcnn
    model = build(config)
    load_tf2_checkpoint(model, MASK_FIXTURE / "checkpoint" / "ckpt-0")
    images, targets = training_batch(model)
    optimizer = torch.optim.SGD(model.mask_head.parameters(), lr=0.5)  # type: ignore[union-attr]
    model.train()
    values = []
    for _ in range(4):
        losses = model(images, targets)
        assert isinstance(losses, dict)
        values.append(float(losses[BOX_CLASSIFIER_MASK_LOSS].detach()))
        optimizer.zero_grad()
        losses[BOX_CLASSIFIER_MASK_LOSS].backward()
        optimizer.step()
    assert values[-1] < values[0] * 0.9, values


def test_training_needs_masks_that_fit_the_boxes() -> None:
    model = build(cfg.load(MASK_FIXTURE / "pipeline_training.config").model.faster_rcnn).train()
    images, targets = training_batch(model)
    without = [{key: value for key, value in targets[0].items() if key != "masks"}]
    with pytest.raises(DataError, match="load_instance_masks"):
        model(images, without)
    wrong = [{**targets[0], "masks": targets[0]["masks"][:1]}]
    with pytest.raises(DataError, match=r"masks of shape \(1, "):
        model(images, wrong)


def test_masks_from_the_data_path_reach_the_mask_loss() -> None:
    """A Sample with instance masks (the fixture's training image, whose boxes have positive
    proposals), collated as the training loader does, trains the mask head."""
    from objdet.data.collate import sample_to_target
    from objdet.structures.sample import Sample

    model = build(cfg.load(MASK_FIXTURE / "pipeline_training.config").model.faster_rcnn)
    load_tf2_checkpoint(model, MASK_FIXTURE / "checkpoint" / "ckpt-0")
    images, targets = training_batch(model)
    pixels = (images[0] * 255.0).round().to(torch.uint8)
    sample = Sample(height=int(pixels.shape[1]), width=int(pixels.shape[2]), image=pixels,
                    boxes=targets[0]["boxes"].float(), labels=targets[0]["labels"],
                    masks=targets[0]["masks"])
    target = sample_to_target(sample)
    assert torch.equal(target["masks"], targets[0]["masks"])
    losses = model.train()([pixels.float() / 255.0], [target])
    assert isinstance(losses, dict)
    assert float(losses[BOX_CLASSIFIER_MASK_LOSS].detach()) > 0
    losses[BOX_CLASSIFIER_MASK_LOSS].backward()
    assert model.mask_head is not None
    assert float(model.mask_head.layers[-1].weight.grad.abs().sum()) > 0  # type: ignore[union-attr]


def test_configs_report_batches_carry_masks_for_mask_models() -> None:
    from objdet.models.coverage import random_batch

    _, targets = random_batch(3, seed=1, with_masks=True)
    for target in targets:
        masks, boxes = target["masks"], target["boxes"]
        assert masks.shape[0] == boxes.shape[0] and masks.dtype == torch.uint8
        assert all(int(mask.sum()) > 0 for mask in masks)
    assert "masks" not in random_batch(3, seed=1)[1][0]
