"""The parity comparison of the two-stage and CenterNet families
(``objdet.models.checkpoints.parity_faster_rcnn`` / ``parity_center_net``, what
benchmarks/odapi_parity.py runs on the full-size configs) on the committed tiny fixtures the
OD API made (tests/fixtures/odapi_faster_rcnn, odapi_mask_rcnn, odapi_center_net,
odapi_center_net_keypoints): every level within its tolerance, and a changed reference
value reported by the level it belongs to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from objdet import config as cfg
from objdet.models import build_model
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.checkpoints.parity import (
    ParityResult,
    Tolerances,
    WorstLevels,
    detections_to_reference_form,
    finish,
    image_indices,
    reference_detections,
)
from objdet.models.checkpoints.parity_center_net import compare_center_net
from objdet.models.checkpoints.parity_faster_rcnn import compare_faster_rcnn, compare_masks
from objdet.models.meta_arch.center_net import CenterNet
from objdet.models.meta_arch.faster_rcnn import FasterRCNN
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RESNET_DEPTH_MULTIPLIER = 0.0625  # the Faster R-CNN fixtures' (make_fixture.py)
Arrays = dict[str, np.ndarray]


def tiny_faster_rcnn(name: str) -> FasterRCNN:
    config = cfg.load(FIXTURES / name / "pipeline.config").model.faster_rcnn
    model = build_faster_rcnn(config, backbone_depth_multiplier=RESNET_DEPTH_MULTIPLIER)
    load_tf2_checkpoint(model, FIXTURES / name / "checkpoint" / "ckpt-0")
    return model.eval()


@pytest.fixture(scope="module")
def faster_rcnn() -> tuple[FasterRCNN, Arrays]:
    arrays = dict(np.load(FIXTURES / "odapi_faster_rcnn" / "reference.npz"))
    return tiny_faster_rcnn("odapi_faster_rcnn"), arrays


@torch.no_grad()
def compare_frcnn(model: FasterRCNN, arrays: Arrays) -> ParityResult:
    result = compare_faster_rcnn(model, arrays, image_indices(arrays), Tolerances(), "tiny")
    return finish(result, Tolerances())


def test_faster_rcnn_levels_match(faster_rcnn: tuple[FasterRCNN, Arrays]) -> None:
    result = compare_frcnn(*faster_rcnn)
    assert result.ok, result.failures
    assert result.family == "faster_rcnn" and result.anchors_max_abs is not None
    assert result.proposals_matched == 1.0 and result.end_to_end_proposals_matched == 1.0
    assert result.second_stage_classes_max_abs is not None
    assert result.second_stage_classes_max_abs <= 1e-4
    assert result.postprocess_matched == 1.0 and result.end_to_end_matched == 1.0
    assert result.masks_mean_abs is None and result.keypoints_max_abs is None


def test_faster_rcnn_reports_the_level_that_differs(
        faster_rcnn: tuple[FasterRCNN, Arrays]) -> None:
    model, arrays = faster_rcnn
    changed = dict(arrays)
    logits = arrays["class_predictions_1"].copy()  # [P, K + 1]
    logits[0, 1] += 0.01 * np.abs(logits).max()
    changed["class_predictions_1"] = logits
    proposals = arrays["proposal_boxes_0"].copy()  # [1, P, 4] canvas pixels
    proposals[0, 0] += 3.0
    changed["proposal_boxes_0"] = proposals
    result = compare_frcnn(model, changed)
    assert not result.ok
    failed = {failure.split()[0] for failure in result.failures}
    assert {"second_stage_classes_max_abs", "proposals_matched",
            "end_to_end_proposals_matched"} <= failed
    assert "raw_classes_max_abs" not in failed and "anchors_max_abs" not in failed


@torch.no_grad()
def test_mask_levels_match() -> None:
    model = tiny_faster_rcnn("odapi_mask_rcnn")
    arrays = dict(np.load(FIXTURES / "odapi_mask_rcnn" / "reference.npz"))
    images = np.load(FIXTURES / "odapi_faster_rcnn" / "reference.npz")  # the same inputs
    worst = WorstLevels()
    for index in (0, 1):
        arrays[f"image_{index}"] = images[f"image_{index}"]
        image = torch.from_numpy(images[f"image_{index}"]).permute(2, 0, 1).float() / 255.0
        features = model.predict_first_stage(model.resize_batch([image]).images)["features"]
        own = model([image])[0]
        assert isinstance(own, dict)
        own_form = detections_to_reference_form(own, (int(image.shape[1]), int(image.shape[2])))
        compare_masks(model, arrays, index, features, reference_detections(arrays, index), own,
                      own_form, worst)
    assert worst["mask_head"] <= 1e-4
    assert worst["masks"] <= Tolerances().masks_mean_abs


def center_net_arrays(directory: Path, heads: dict[str, str]) -> Arrays:
    """A fixture's arrays with its heads renamed as dump_reference.py names them
    (``head_<OD API key, '/' as '.'>_<i>``)."""
    arrays = dict(np.load(directory / "reference.npz"))
    for index in image_indices(arrays):
        for fixture_key, odapi_key in heads.items():
            arrays[f"head_{odapi_key.replace('/', '.')}_{index}"] = arrays.pop(
                f"{fixture_key}_{index}")
    return arrays


def tiny_center_net(directory: Path) -> CenterNet:
    config = cfg.load(directory / "pipeline.config").model
    if config.center_net.keypoint_label_map_path:
        path = directory / config.center_net.keypoint_label_map_path
        config.center_net.keypoint_label_map_path = str(path)
    model = build_model(config)
    assert isinstance(model, CenterNet)
    load_tf2_checkpoint(model, directory / "checkpoint" / "ckpt-0", "full")
    return model.eval()


BOX_HEADS = {"object_center": "object_center", "box_scale": "box/scale",
             "box_offset": "box/offset"}


@torch.no_grad()
def test_center_net_levels_match() -> None:
    directory = FIXTURES / "odapi_center_net" / "mobilenet_v2_fpn"
    arrays = center_net_arrays(directory, BOX_HEADS)
    result = finish(compare_center_net(tiny_center_net(directory), arrays,
                                       image_indices(arrays), Tolerances(), "tiny"), Tolerances())
    assert result.ok, result.failures
    assert result.anchors_max_abs is None and result.keypoints_max_abs is None
    assert result.end_to_end_matched == 1.0


@torch.no_grad()
def test_center_net_keypoint_levels_match_and_a_moved_keypoint_is_reported() -> None:
    directory = FIXTURES / "odapi_center_net_keypoints"
    heads = {**BOX_HEADS, "keypoint_heatmap": "pose/keypoint/heatmap",
             "keypoint_offset": "pose/keypoint/offset",
             "keypoint_regression": "pose/keypoint/regression"}
    arrays = center_net_arrays(directory, heads)
    model = tiny_center_net(directory)
    for index in image_indices(arrays):  # this fixture does not keep its input: objdet's own
        image = torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0
        preprocessed = model.preprocess(model.resize_batch([image]).images)
        arrays[f"preprocessed_{index}"] = preprocessed.permute(0, 2, 3, 1).numpy()
    result = finish(compare_center_net(model, arrays, [0, 1], Tolerances(), "tiny"),
                    Tolerances())
    assert result.ok, result.failures
    assert result.keypoints_max_abs is not None and result.keypoint_scores_max_abs is not None
    assert result.keypoint_detections_compared is not None
    assert result.keypoint_detections_compared > 0
    moved = arrays["detection_keypoints_1"].copy()  # [1, D, K, 2] normalized (y, x)
    moved[0, 0, 2, 1] += 0.01
    result = finish(compare_center_net(model, {**arrays, "detection_keypoints_1": moved},
                                       [0, 1], Tolerances(), "tiny"), Tolerances())
    assert [failure.split()[0] for failure in result.failures] == ["keypoints_max_abs"]
