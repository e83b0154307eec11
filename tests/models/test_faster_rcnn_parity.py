"""Faster R-CNN (ResNet-50 Keras) against the OD API, level by level, on a tiny fixture the OD API
made itself (tests/fixtures/odapi_faster_rcnn/make_fixture.py, run in the reference env):
its TF2 checkpoint is imported with objdet's importer, then preprocessing, anchors, RPN
outputs, proposals, crops, second-stage outputs and detections are compared. Each stage is
also fed the OD API's own inputs, so a difference shows where it starts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from objdet import config as cfg
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.image_resizers import ImageBatch
from objdet.models.layers.crop_and_resize import crop_and_pool
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "odapi_faster_rcnn"
CONFIGS = Path(__file__).parents[3] / "shared" / "data" / "odapi" / "configs" / "tf2"
RESNET_DEPTH_MULTIPLIER = 0.0625  # make_fixture.py's
RELATIVE_TOLERANCE = 1e-4
NUM_IMAGES = 2


def relative_error(actual: torch.Tensor, expected: np.ndarray) -> float:
    reference = torch.from_numpy(np.asarray(expected, dtype=np.float32))
    assert actual.shape == reference.shape
    return float((actual.float() - reference).abs().max() / reference.abs().max())


def xyxy(boxes: np.ndarray) -> torch.Tensor:
    """OD API (ymin, xmin, ymax, xmax) -> (x1, y1, x2, y2)."""
    return torch.from_numpy(np.asarray(boxes, dtype=np.float32)[..., [1, 0, 3, 2]])


def matched_share(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> float:
    """Share of the expected boxes that ``actual`` reproduces: IoU >= 0.99, |Δscore| <= 1e-4,
    same label (each actual box used once)."""
    if expected["boxes"].shape[0] == 0:
        return 1.0 if actual["boxes"].shape[0] == 0 else 0.0
    iou = box_iou(expected["boxes"], actual["boxes"])  # [E, D]
    used: set[int] = set()
    matched = 0
    for row in range(iou.shape[0]):
        for column in torch.argsort(iou[row], descending=True).tolist():
            if (column not in used and iou[row, column] >= 0.99
                    and abs(float(expected["scores"][row] - actual["scores"][column])) <= 1e-4
                    and int(expected["labels"][row]) == int(actual["labels"][column])):
                used.add(column)
                matched += 1
                break
    return matched / iou.shape[0]


@pytest.fixture(scope="module")
def tiny() -> tuple[FasterRCNN, dict[str, np.ndarray]]:
    config = cfg.load(FIXTURES / "pipeline.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    load_tf2_checkpoint(model, FIXTURES / "checkpoint" / "ckpt-0")  # every variable, by name
    return model.eval(), dict(np.load(FIXTURES / "reference.npz"))


def image_batch(model: FasterRCNN, arrays: dict[str, np.ndarray], index: int) -> ImageBatch:
    image = torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0
    return model.resize_batch([image])


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_first_stage_matches(tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int) -> None:
    model, arrays = tiny
    batch = image_batch(model, arrays, index)
    true_shape = arrays[f"true_image_shape_{index}"][0]
    assert batch.resized_sizes == [(int(true_shape[0]), int(true_shape[1]))]
    extractor = model.feature_extractor
    preprocessed = extractor.preprocess(batch.images)  # type: ignore[operator]
    expected = arrays[f"preprocessed_{index}"].transpose(0, 3, 1, 2)
    assert float((preprocessed - torch.from_numpy(expected)).abs().max()) <= 1e-3  # 0..255 scale
    with torch.no_grad():
        first = model.predict_first_stage(batch.images)
    features = arrays[f"rpn_features_{index}"].transpose(0, 3, 1, 2)
    assert relative_error(first["features"], features) <= RELATIVE_TOLERANCE
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
    batch = image_batch(model, arrays, index)
    first = {"rpn_box_encodings": torch.from_numpy(arrays[f"rpn_box_encodings_{index}"]),
             "rpn_objectness": torch.from_numpy(arrays[f"rpn_objectness_{index}"]),
             "anchors": xyxy(arrays[f"anchors_{index}"])}
    proposals, num_proposals = model.propose(first, batch.resized_sizes)
    count = int(arrays[f"num_proposals_{index}"][0])
    assert int(num_proposals[0]) == count
    assert relative_error(proposals, xyxy(arrays[f"proposal_boxes_{index}"]).numpy()) <= 1e-5


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_second_stage_from_the_od_api_proposals_matches(
    tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int,
) -> None:
    model, arrays = tiny
    features = torch.from_numpy(arrays[f"rpn_features_{index}"].transpose(0, 3, 1, 2).copy())
    proposals = xyxy(arrays[f"proposal_boxes_{index}"])  # [1, P, 4] canvas pixels
    canvas = tuple(arrays[f"preprocessed_{index}"].shape[1:3])
    normalized = proposals / torch.tensor([canvas[1], canvas[0]] * 2, dtype=torch.float32)
    crops = crop_and_pool(features, normalized, model.initial_crop_size,
                          model.maxpool_kernel_size, model.maxpool_stride)
    expected_crops = arrays[f"cropped_features_{index}"].transpose(0, 3, 1, 2)
    assert relative_error(crops, expected_crops) <= 1e-5
    with torch.no_grad():
        refined, class_logits = model.predict_second_stage(features, proposals, canvas)
    expected_refined = arrays[f"refined_box_encodings_{index}"]  # [P, C', 4]
    assert relative_error(refined[0], expected_refined) <= RELATIVE_TOLERANCE
    assert relative_error(class_logits[0], arrays[f"class_predictions_{index}"]) <= (
        RELATIVE_TOLERANCE)


def od_api_detections(arrays: dict[str, np.ndarray], index: int) -> dict[str, torch.Tensor]:
    """The OD API's detections in input-image pixels, labels 1..K."""
    count = int(arrays[f"num_detections_{index}"][0])
    height, width = arrays[f"image_{index}"].shape[:2]
    boxes = xyxy(arrays[f"detection_boxes_{index}"][0, :count])
    return {"boxes": boxes * torch.tensor([width, height, width, height], dtype=torch.float32),
            "scores": torch.from_numpy(arrays[f"detection_scores_{index}"][0, :count]),
            "labels": torch.from_numpy(arrays[f"detection_classes_{index}"][0, :count]).long() + 1}


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_postprocessing_of_the_od_api_outputs_matches(
    tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int,
) -> None:
    model, arrays = tiny
    batch = image_batch(model, arrays, index)
    predictions = {
        "proposal_boxes": xyxy(arrays[f"proposal_boxes_{index}"]),
        "num_proposals": torch.from_numpy(arrays[f"num_proposals_{index}"]).long(),
        "refined_box_encodings": torch.from_numpy(arrays[f"refined_box_encodings_{index}"])[None],
        "class_logits": torch.from_numpy(arrays[f"class_predictions_{index}"])[None],
    }
    detections = model.postprocess(predictions, batch.resized_sizes, batch.original_sizes)[0]
    expected = od_api_detections(arrays, index)
    assert expected["boxes"].shape[0] > 0
    assert matched_share(expected, detections) >= 0.99


@pytest.mark.parametrize("index", range(NUM_IMAGES))
def test_end_to_end_matches(tiny: tuple[FasterRCNN, dict[str, np.ndarray]], index: int) -> None:
    model, arrays = tiny
    image = torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        detections = model([image])[0]
    assert isinstance(detections, dict)
    expected = od_api_detections(arrays, index)
    assert matched_share(expected, detections) >= 0.99
    with torch.no_grad():
        predictions = model.predict(model.resize_batch([image]).images,
                                    model.resize_batch([image]).resized_sizes)
    assert int(predictions["num_proposals"][0]) == int(arrays[f"num_proposals_{index}"][0])
    count = int(predictions["num_proposals"][0])
    expected_proposals = xyxy(arrays[f"proposal_boxes_{index}"][0, :count])
    iou = box_iou(expected_proposals, predictions["proposal_boxes"][0, :count])
    assert float((iou.max(dim=1).values >= 0.99).float().mean()) >= 0.99


@pytest.mark.parametrize("variant", ["frozen_batch_norm", "batch_norm_trainable",
                                     "anchors_pruned"])
def test_training_losses_match(variant: str) -> None:
    """The four losses of one training step, against the OD API model built for training with
    samplers that take every candidate (make_fixture.py's TRAINING_VARIANTS: frozen batch
    norms; batch norms on batch statistics; anchors leaving the canvas pruned, not clipped)."""
    arrays = dict(np.load(FIXTURES / "training.npz"))
    config = cfg.load(FIXTURES / f"pipeline_training_{variant}.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    load_tf2_checkpoint(model, FIXTURES / "checkpoint" / "ckpt-0")
    image = torch.from_numpy(arrays["image"]).permute(2, 0, 1).float() / 255.0
    batch = model.resize_batch([image])
    scale = batch.scales()[0].flip(0).repeat(2)  # (x, y, x, y) canvas pixels per input pixel
    targets = [{"boxes": torch.from_numpy(arrays["gt_boxes_canvas"]) / scale,
                "labels": torch.from_numpy(arrays["gt_labels"])}]
    losses = model.train()([image], targets)
    assert isinstance(losses, dict)
    prefix = f"{variant}/loss/"
    expected = {key[len(prefix):]: float(value) for key, value in arrays.items()
                if key.startswith(prefix)}
    assert set(losses) == set(expected)
    if variant == "frozen_batch_norm":  # every loss has terms: positives in both stages
        assert all(value > 0 for value in expected.values())
    for name, value in expected.items():
        assert abs(float(losses[name].detach()) - value) <= 1e-4 * max(abs(value), 1.0), name


@pytest.mark.parametrize("depth", [101, 152])
def test_variable_map_covers_the_full_size_checkpoints(depth: int) -> None:
    """Every variable of the OD API's full-size ResNet-101/152 Faster R-CNN checkpoints (keys
    and shapes listed by make_fixture.py --keys) has one target of the same size, and every
    parameter one variable."""
    with gzip.open(FIXTURES / f"keys_resnet{depth}.json.gz", "rt") as stream:
        shapes = {key: shape for key, shape in json.load(stream)}
    config = cfg.load(CONFIGS / f"faster_rcnn_resnet{depth}_v1_640x640_coco17_tpu-8.config")
    model = build_faster_rcnn(config.model.faster_rcnn)
    variable_map = model.tf2_variable_map()
    assert set(variable_map) == set(shapes)
    state = model.state_dict()
    for key, target in variable_map.items():
        assert int(np.prod(shapes[key])) == state[target.name].numel(), key
    covered = {target.name for target in variable_map.values()}
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable <= covered


def test_detection_fine_tune_restores_the_extractor_only() -> None:
    """``fine_tune_checkpoint_type: detection``: the OD API restores the two extractor models
    (restore_from_objects), not the RPN or box predictor."""
    config = cfg.load(FIXTURES / "pipeline.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    report = load_tf2_checkpoint(model, FIXTURES / "checkpoint" / "ckpt-0", "detection")
    assert report.loaded and all(name.startswith("feature_extractor.") for name in report.loaded)
    backbone = {name for name in model.state_dict() if name.startswith("feature_extractor.")
                and not name.endswith("num_batches_tracked")}
    assert set(report.loaded) == backbone
    assert any(name.startswith("proposal_head.") for name in report.fresh)
    assert any(name.startswith("box_predictor.") for name in report.fresh)
