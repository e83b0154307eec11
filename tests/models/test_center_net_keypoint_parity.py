"""CenterNet keypoint estimation against the OD API on the fixture its reference environment
made (tests/fixtures/odapi_center_net_keypoints/make_fixture.py): the TF2 checkpoint is
imported with objdet's importer; raw keypoint heads, detection_keypoints /
detection_keypoint_scores (objdet's postprocessing fed the OD API's raw heads, and end to
end), the same under other keypoint settings (ranking modes, clipping, rescoring, ...) and
the training losses are compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from objdet import config as cfg
from objdet.models import build_model
from objdet.models.checkpoints.importer import load_tf2_checkpoint
from objdet.models.meta_arch.center_net import BOX_OFFSET, BOX_SCALE, OBJECT_CENTER, CenterNet
from objdet.protos.model_pb2 import DetectionModel

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odapi_center_net_keypoints"
TASK = "pose"
HEADS = {OBJECT_CENTER: "object_center", BOX_SCALE: "box_scale", BOX_OFFSET: "box_offset",
         f"{TASK}/keypoint/heatmap": "keypoint_heatmap",
         f"{TASK}/keypoint/offset": "keypoint_offset",
         f"{TASK}/keypoint/regression": "keypoint_regression"}
# make_fixture.py's VARIANTS: keypoint_estimation_task fields changed on the built model.
VARIANTS = {
    "": {},
    "score_distance_ratio": {"candidate_ranking_mode": "score_distance_ratio"},
    "score_scaled_distance_ratio": {"candidate_ranking_mode": "score_scaled_distance_ratio",
                                    "score_distance_multiplier": 0.2},
    "gaussian_weighted": {"candidate_ranking_mode": "gaussian_weighted",
                          "std_dev_multiplier": 1.5},
    "clip_rescore": {"clip_out_of_frame_keypoints": True, "rescore_instances": True,
                     "rescoring_threshold": 0.2, "box_scale": 1.0,
                     "candidate_search_scale": 0.5, "unmatched_keypoint_score": 0.05,
                     "peak_max_pool_kernel_size": 1, "num_candidates_per_keypoint": 5,
                     "keypoint_candidate_score_threshold": 0.3},
}
COORDINATE_TOLERANCE = 1e-3  # of the image size
SCORE_TOLERANCE = 1e-4
LOSS_RELATIVE_TOLERANCE = 1e-4


def _model_config(changes: dict[str, object]) -> DetectionModel:
    config = cfg.load(FIXTURE / "pipeline.config").model
    center_net = config.center_net
    center_net.keypoint_label_map_path = str(FIXTURE / center_net.keypoint_label_map_path)
    for name, value in changes.items():
        setattr(center_net.keypoint_estimation_task[0], name, value)
    return config


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "reference.npz"))


@pytest.fixture(scope="module")
def models() -> dict[str, CenterNet]:
    """One model per variant, all with the fixture's weights."""
    built: dict[str, CenterNet] = {}
    for variant, changes in VARIANTS.items():
        model = build_model(_model_config(changes))
        assert isinstance(model, CenterNet)
        if not built:
            load_tf2_checkpoint(model, FIXTURE / "checkpoint" / "ckpt-0", "full")
        else:
            model.load_state_dict(built[""].state_dict())
        built[variant] = model.eval()
    return built


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32)).permute(0, 3, 1, 2)


def _image(arrays: dict[str, np.ndarray], index: int) -> torch.Tensor:
    return torch.from_numpy(arrays[f"image_{index}"]).permute(2, 0, 1).float() / 255.0


def _worst_keypoint_errors(detections: dict[str, torch.Tensor], arrays: dict[str, np.ndarray],
                           index: int, prefix: str) -> tuple[float, float, float]:
    """(coordinate error / image size, keypoint score error, detection score error) against
    the OD API's first num_detections outputs."""
    count = int(arrays[f"num_detections_{index}"][0])
    height, width = arrays[f"image_{index}"].shape[:2]
    expected = torch.from_numpy(arrays[f"{prefix}detection_keypoints_{index}"][0, :count])
    expected = expected.flip(-1) * torch.tensor([width, height])  # (x, y) pixels
    expected_scores = torch.from_numpy(arrays[f"{prefix}detection_keypoint_scores_{index}"][0, :count])
    expected_detection_scores = torch.from_numpy(arrays[f"{prefix}detection_scores_{index}"][0, :count])
    assert detections["keypoints"].shape == (count, 4, 2)
    assert detections["keypoints_scores"].shape == (count, 4)
    return (float((detections["keypoints"] - expected).abs().max()) / max(height, width),
            float((detections["keypoints_scores"] - expected_scores).abs().max()),
            float((detections["scores"] - expected_detection_scores).abs().max()))


def test_keypoint_heads_match_the_od_api(models: dict[str, CenterNet],
                                         arrays: dict[str, np.ndarray]) -> None:
    model = models[""]
    for index in range(2):
        with torch.no_grad():
            predictions = model.predict(model.resize_batch([_image(arrays, index)]).images)
        for name, key in HEADS.items():
            expected = _nchw(arrays[f"{key}_{index}"])
            relative = (predictions[name] - expected).abs().max() / expected.abs().max()
            assert float(relative) <= 1e-5, (name, float(relative))


@pytest.mark.parametrize("variant", list(VARIANTS), ids=[v or "config" for v in VARIANTS])
def test_detection_keypoints_match_the_od_api(models: dict[str, CenterNet],
                                              arrays: dict[str, np.ndarray], variant: str
                                              ) -> None:
    model = models[variant]
    prefix = f"{variant}_" if variant else ""
    for index in range(2):
        batch = model.resize_batch([_image(arrays, index)])
        fed = {name: _nchw(arrays[f"{key}_{index}"]) for name, key in HEADS.items()}
        with torch.no_grad():
            from_reference = model.postprocess(fed, batch.resized_sizes, batch.original_sizes)
            end_to_end = model([_image(arrays, index)])
        for detections in (from_reference[0], end_to_end[0]):
            coordinates, scores, detection_scores = _worst_keypoint_errors(
                detections, arrays, index, prefix)
            assert coordinates <= COORDINATE_TOLERANCE, (variant, index, coordinates)
            assert scores <= SCORE_TOLERANCE, (variant, index, scores)
            assert detection_scores <= SCORE_TOLERANCE, (variant, index, detection_scores)
    count = int(arrays["num_detections_0"][0])
    unmatched_score = VARIANTS[variant].get("unmatched_keypoint_score", 0.1)
    unmatched = np.isclose(arrays[f"{prefix}detection_keypoint_scores_0"][0, :count],
                           unmatched_score)
    assert 0 < unmatched.mean() < 1  # both snapped and unmatched keypoints are compared


def test_training_losses_match_the_od_api(models: dict[str, CenterNet],
                                          arrays: dict[str, np.ndarray]) -> None:
    model = models[""]
    images, targets = [], []
    for index in range(2):
        height, width = arrays[f"image_{index}"].shape[:2]
        images.append(_image(arrays, index))
        boxes = torch.from_numpy(arrays[f"loss_boxes_{index}"])
        keypoints = torch.from_numpy(arrays[f"loss_keypoints_{index}"])  # (y, x), NaN
        targets.append({"boxes": boxes[:, [1, 0, 3, 2]] * torch.tensor([width, height] * 2),
                        "labels": torch.from_numpy(arrays[f"loss_labels_{index}"]),
                        "keypoints": keypoints.flip(-1) * torch.tensor([width, height])})
    with torch.no_grad():
        batch = model.resize_batch(images)
        losses = model.compute_loss(model.predict(batch.images), targets, batch)
    assert set(losses) == {"Loss/object_center", "Loss/box/scale", "Loss/box/offset",
                           f"Loss/{TASK}/keypoint/heatmap", f"Loss/{TASK}/keypoint/offset",
                           f"Loss/{TASK}/keypoint/regression"}
    for key, value in losses.items():
        expected = float(arrays[key.replace("/", "_")])
        assert abs(float(value) - expected) <= LOSS_RELATIVE_TOLERANCE * abs(expected), (
            key, float(value), expected)
