"""Faster R-CNN with a ResNet-50 FPN against the OD API, level by level, on a tiny fixture the
OD API made itself (tests/fixtures/odapi_faster_rcnn_fpn/make_fixture.py, run in the
reference env): its TF2 checkpoint is imported with objdet's importer, then preprocessing,
the pyramid's maps, anchors, RPN outputs, proposals, box levels, multilevel crops,
second-stage outputs, detections and the training losses are compared. Each stage is also fed
the OD API's own inputs, so a difference shows where it starts. Tolerances as
test_faster_rcnn_parity.py's."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_faster_rcnn_parity import (
    RELATIVE_TOLERANCE,
    matched_share,
    od_api_detections,
    relative_error,
    xyxy,
)
from torchvision.ops import box_iou

from objdet import config as cfg
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.faster_rcnn_pyramid import (
    fpn_box_levels,
    multilevel_crop_and_pool,
    pack_pyramid,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "odapi_faster_rcnn_fpn"
CONFIGS = Path(__file__).parents[3] / "shared" / "data" / "odapi" / "configs" / "tf2"
RESNET_DEPTH_MULTIPLIER = 0.0625  # make_fixture.py's
NUM_IMAGES = 2
NUM_LEVELS = 5  # fpn levels 2..6


@pytest.fixture(scope="module")
def tiny() -> tuple[FasterRCNN, dict[str, np.ndarray]]:
    config = cfg.load(FIXTURES / "pipeline.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    load_tf2_checkpoint(model, FIXTURES / "checkpoint" / "ckpt-0")  # every variable, by name
    return model.eval(), dict(np.load(FIXTURES / "reference.npz"))


def od_api_maps(arrays: dict[str, np.ndarray], index: int) -> list[torch.Tensor]:
    """The OD API's pyramid for image ``index``: ``[1, C, h_l, w_l]`` per level."""
    return [torch.from_numpy(arrays[f"features_{level}_{index}"].transpose(0, 3, 1, 2).copy())
            for level in range(NUM_LEVELS)]


def canvas_image(arrays: dict[str, np.ndarray], index: int) -> torch.Tensor:
    return torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_first_stage_matches(tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int) -> None:
    model, arrays = tiny
    batch = model.resize_batch([canvas_image(arrays, index)])
    true_shape = arrays[f"true_image_shape_{index}"][0]
    assert batch.resized_sizes == [(int(true_shape[0]), int(true_shape[1]))]
    extractor = model.feature_extractor
    preprocessed = extractor.preprocess(batch.images)  # type: ignore[operator]
    expected = arrays[f"preprocessed_{index}"].transpose(0, 3, 1, 2)
    assert float((preprocessed - torch.from_numpy(expected)).abs().max()) <= 1e-3  # 0..255 scale
    with torch.no_grad():
        first = model.predict_first_stage(batch.images)
    maps = model.feature_maps(first["features"], tuple(batch.images.shape[2:]))
    for level, (ours, theirs) in enumerate(zip(maps, od_api_maps(arrays, index), strict=True)):
        assert relative_error(ours, theirs.numpy()) <= RELATIVE_TOLERANCE, f"level {level}"
    assert relative_error(first["anchors"], xyxy(arrays[f"anchors_{index}"]).numpy()) <= 1e-6
    assert relative_error(first["rpn_box_encodings"],
                          arrays[f"rpn_box_encodings_{index}"]) <= RELATIVE_TOLERANCE
    assert relative_error(first["rpn_objectness"],
                          arrays[f"rpn_objectness_{index}"]) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_proposals_from_the_od_api_rpn_outputs_match(
    tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int,
) -> None:
    model, arrays = tiny
    batch = model.resize_batch([canvas_image(arrays, index)])
    first = {"rpn_box_encodings": torch.from_numpy(arrays[f"rpn_box_encodings_{index}"]),
             "rpn_objectness": torch.from_numpy(arrays[f"rpn_objectness_{index}"]),
             "anchors": xyxy(arrays[f"anchors_{index}"])}
    proposals, num_proposals = model.propose(first, batch.resized_sizes)
    assert int(num_proposals[0]) == int(arrays[f"num_proposals_{index}"][0])
    assert relative_error(proposals, xyxy(arrays[f"proposal_boxes_{index}"]).numpy()) <= 1e-5


def test_the_fixture_crops_from_several_levels(
    tiny: tuple[FasterRCNN, dict[str, np.ndarray]],
) -> None:
    _, arrays = tiny
    used = set()
    for index in range(NUM_IMAGES):
        count = int(arrays[f"num_proposals_{index}"][0])
        used |= set(arrays[f"box_levels_{index}"][0, :count].tolist())
    assert len(used) >= 3


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_second_stage_from_the_od_api_proposals_matches(
    tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int,
) -> None:
    model, arrays = tiny
    maps = od_api_maps(arrays, index)
    proposals = xyxy(arrays[f"proposal_boxes_{index}"])  # [1, P, 4] canvas pixels
    canvas = (int(arrays[f"preprocessed_{index}"].shape[1]),
              int(arrays[f"preprocessed_{index}"].shape[2]))
    normalized = proposals / torch.tensor([canvas[1], canvas[0]] * 2, dtype=torch.float32)
    levels = fpn_box_levels(normalized, canvas, NUM_LEVELS)
    assert levels.tolist() == arrays[f"box_levels_{index}"].tolist()
    crops = multilevel_crop_and_pool(maps, normalized, levels, model.initial_crop_size,
                                     model.maxpool_kernel_size, model.maxpool_stride)
    expected_crops = arrays[f"cropped_features_{index}"].transpose(0, 3, 1, 2)
    assert relative_error(crops, expected_crops) <= 1e-5
    with torch.no_grad():
        refined, class_logits = model.predict_second_stage(pack_pyramid(maps), proposals, canvas)
    assert relative_error(refined[0], arrays[f"refined_box_encodings_{index}"]) <= (
        RELATIVE_TOLERANCE)
    assert relative_error(class_logits[0], arrays[f"class_predictions_{index}"]) <= (
        RELATIVE_TOLERANCE)


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_end_to_end_matches(tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int) -> None:
    model, arrays = tiny
    image = canvas_image(arrays, index)
    with torch.no_grad():
        detections = model([image])[0]
        batch = model.resize_batch([image])
        predictions = model.predict(batch.images, batch.resized_sizes)
    assert isinstance(detections, dict)
    expected = od_api_detections(arrays, index)
    assert expected["boxes"].shape[0] > 0
    assert matched_share(expected, detections) >= 0.99
    count = int(arrays[f"num_proposals_{index}"][0])
    assert int(predictions["num_proposals"][0]) == count
    expected_proposals = xyxy(arrays[f"proposal_boxes_{index}"][0, :count])
    iou = box_iou(expected_proposals, predictions["proposal_boxes"][0, :count])
    assert float((iou.max(dim=1).values >= 0.99).float().mean()) >= 0.99


def test_training_losses_match() -> None:
    """The four losses of one training step (batch norms on batch statistics, as the config's
    batch_norm_trainable: true) against the OD API model built for training with samplers
    that take every candidate."""
    arrays = dict(np.load(FIXTURES / "training.npz"))
    config = cfg.load(FIXTURES / "pipeline_training.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    load_tf2_checkpoint(model, FIXTURES / "checkpoint" / "ckpt-0")
    image = torch.from_numpy(arrays["image"]).permute(2, 0, 1).float() / 255.0
    batch = model.resize_batch([image])
    scale = batch.scales()[0].flip(0).repeat(2)  # (x, y, x, y) canvas pixels per input pixel
    targets = [{"boxes": torch.from_numpy(arrays["gt_boxes_canvas"]) / scale,
                "labels": torch.from_numpy(arrays["gt_labels"])}]
    losses = model.train()([image], targets)
    assert isinstance(losses, dict)
    expected = {key.removeprefix("loss/"): float(value) for key, value in arrays.items()
                if key.startswith("loss/")}
    assert set(losses) == set(expected)
    assert all(value > 0 for value in expected.values())
    for name, value in expected.items():
        assert abs(float(losses[name].detach()) - value) <= 1e-4 * max(abs(value), 1.0), name


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_variable_map_covers_the_full_size_checkpoints(depth: int) -> None:
    """Every variable of the OD API's full-size ResNet-50/101/152 FPN checkpoints (keys and
    shapes listed by make_fixture.py --keys) has one target of the same size, and every
    trainable parameter one variable."""
    with gzip.open(FIXTURES / f"keys_resnet{depth}_fpn.json.gz", "rt") as stream:
        shapes = {key: shape for key, shape in json.load(stream)}
    config = cfg.load(CONFIGS / "faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config")
    config.model.faster_rcnn.feature_extractor.type = f"faster_rcnn_resnet{depth}_fpn_keras"
    with torch.device("meta"):  # shapes only: no full-size weights to initialize
        model = build_faster_rcnn(config.model.faster_rcnn)
    variable_map = model.tf2_variable_map()
    assert set(variable_map) == set(shapes)
    state = model.state_dict()
    for key, target in variable_map.items():
        assert int(np.prod(shapes[key])) == state[target.name].numel(), key
    covered = {target.name for target in variable_map.values()}
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable <= covered
