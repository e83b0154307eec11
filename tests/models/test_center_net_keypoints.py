"""CenterNet keypoint estimation: the builder reads every KeypointEstimation field (or refuses
it by name), training on keypoints, eval outputs, and the target / refinement rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from objdet import config as cfg
from objdet.errors import ConfigError, DataError
from objdet.models import build_model
from objdet.models.meta_arch import center_net_keypoints as keypoints_lib
from objdet.models.meta_arch.center_net import CenterNet
from objdet.models.meta_arch.center_net_keypoint_builder import _KEYPOINT_FIELDS
from objdet.protos import center_net_pb2
from objdet.protos.model_pb2 import DetectionModel

FIXTURE = Path(__file__).parents[1] / "fixtures" / "odapi_center_net_keypoints"
REFUSED_WHEN_TRUE = {"predict_depth", "argmax_postprocessing"}


def tiny_config(**changes: object) -> DetectionModel:
    """The parity fixture's tiny model (2 classes, task "pose": 4 keypoints of class 1)."""
    config = cfg.load(FIXTURE / "pipeline.config").model
    center_net = config.center_net
    center_net.keypoint_label_map_path = str(FIXTURE / center_net.keypoint_label_map_path)
    for name, value in changes.items():
        setattr(center_net.keypoint_estimation_task[0], name, value)
    return config


def tiny_model(**changes: object) -> CenterNet:
    torch.manual_seed(0)
    model = build_model(tiny_config(**changes))
    assert isinstance(model, CenterNet)
    return model


def test_every_keypoint_field_is_read_or_refused() -> None:
    fields = {field.name for field in center_net_pb2.CenterNet.KeypointEstimation.DESCRIPTOR.fields}
    assert fields == _KEYPOINT_FIELDS | REFUSED_WHEN_TRUE


def test_builder_reads_the_keypoint_fields() -> None:
    values = {"task_loss_weight": 0.5, "keypoint_regression_loss_weight": 0.2,
              "keypoint_heatmap_loss_weight": 0.3, "keypoint_offset_loss_weight": 0.4,
              "keypoint_candidate_score_threshold": 0.25, "num_candidates_per_keypoint": 7,
              "peak_max_pool_kernel_size": 5, "unmatched_keypoint_score": 0.05,
              "box_scale": 1.5, "candidate_search_scale": 0.4,
              "candidate_ranking_mode": "gaussian_weighted", "score_distance_offset": 2.0,
              "score_distance_multiplier": 0.3, "std_dev_multiplier": 2.0,
              "offset_peak_radius": 2, "per_keypoint_offset": False,
              "clip_out_of_frame_keypoints": True, "rescore_instances": True,
              "rescoring_threshold": 0.3, "heatmap_bias_init": -1.5}
    model = tiny_model(**values)
    task = model.keypoint_tasks[0]
    renamed = {"keypoint_regression_loss_weight": "regression_loss_weight",
               "keypoint_heatmap_loss_weight": "heatmap_loss_weight",
               "keypoint_offset_loss_weight": "offset_loss_weight",
               "keypoint_candidate_score_threshold": "candidate_score_threshold",
               "num_candidates_per_keypoint": "num_candidates"}
    for name, value in values.items():
        if name != "heatmap_bias_init":
            assert getattr(task, renamed.get(name, name)) == pytest.approx(value), name
    assert task.task_name == "pose" and task.class_id == 0
    assert task.keypoint_indices == (0, 1, 2, 3)
    assert task.keypoint_std_dev == pytest.approx((0.5, 0.8, 0.8, 1.2))  # keypoint_label_to_std
    heatmap_head = model.heads["pose/keypoint/heatmap"][0]
    assert torch.allclose(heatmap_head[-1].bias, torch.full((4,), -1.5))
    assert heatmap_head[0].out_channels == 8  # heatmap_head_params.num_filters
    assert model.heads["pose/keypoint/offset"][0][-1].out_channels == 2  # shared offsets
    assert model.heads["pose/keypoint/regression"][0][-1].out_channels == 8


@pytest.mark.parametrize(("changes", "named"), [
    ({"predict_depth": True}, "predict_depth"),
    ({"argmax_postprocessing": True}, "argmax_postprocessing"),
    ({"candidate_ranking_mode": "gaussian_weighted_const"}, "candidate_ranking_mode"),
    ({"keypoint_class_name": "other"}, "keypoint_class_name"),
    ({"task_name": "a.b"}, "task_name"),
    ({"num_candidates_per_keypoint": 0}, "num_candidates_per_keypoint"),
])
def test_builder_refuses_unsupported_keypoint_settings(changes: dict[str, object],
                                                       named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        build_model(tiny_config(**changes))


def test_builder_refuses_a_placeholder_label_map_and_other_losses() -> None:
    config = tiny_config()
    config.center_net.keypoint_label_map_path = "PATH_TO_BE_CONFIGURED"
    with pytest.raises(ConfigError, match="keypoint_label_map_path"):
        build_model(config)
    config = tiny_config()
    loss = config.center_net.keypoint_estimation_task[0].loss
    loss.classification_loss.weighted_sigmoid.SetInParent()
    with pytest.raises(ConfigError, match=r"loss\.classification_loss\.weighted_sigmoid"):
        build_model(config)


def _person(keypoints: list[list[float]]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor([[10.0, 8.0, 50.0, 60.0]]), "labels": torch.tensor([1]),
            "keypoints": torch.tensor([keypoints])}


def test_training_on_keypoints_lowers_the_keypoint_losses() -> None:
    model = tiny_model().train()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    target = _person([[30.0, 12.0], [14.0, 30.0], [46.0, 30.0], [float("nan")] * 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        losses = model([image], [target])
        assert isinstance(losses, dict)
        history.append({key: float(value.detach()) for key, value in losses.items()})
        optimizer.zero_grad()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        optimizer.step()
    for key in ("heatmap", "offset", "regression"):
        values = [step[f"Loss/pose/keypoint/{key}"] for step in history]
        assert all(torch.isfinite(torch.tensor(values))), (key, values)
        assert values[-1] < values[0], (key, values)


def test_training_without_keypoints_says_what_is_missing() -> None:
    model = tiny_model().train()
    with pytest.raises(DataError, match="keypoints"):
        model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]),
                                         "labels": torch.tensor([1])}])


def test_eval_outputs_keypoints_per_detection() -> None:
    model = tiny_model().eval()
    with torch.no_grad():
        outputs = model([torch.rand(3, 48, 64), torch.rand(3, 64, 40)])
    for output in outputs:
        count = output["boxes"].shape[0]
        assert count > 0
        assert output["keypoints"].shape == (count, 4, 2)
        assert output["keypoints_scores"].shape == (count, 4)
        assert torch.isfinite(output["keypoints"]).all()
        other_class = output["labels"] == 2  # no task: zeros, as the OD API
        assert (output["keypoints_scores"][other_class] == 0).all()


def test_keypoint_heatmap_blacks_out_boxes_of_unlabelled_keypoints() -> None:
    task = tiny_model().keypoint_tasks[0]
    keypoints = torch.tensor([[[2.0, 3.0], [float("nan")] * 2, [4.0, 4.0], [5.0, 1.0]],
                              [[9.0, 9.0], [10.0, 10.0], [11.0, 11.0], [12.0, 12.0]]])
    boxes = torch.tensor([[1.0, 1.0, 6.0, 6.0], [8.0, 8.0, 14.0, 14.0]])  # y, x output pixels
    image = keypoints_lib.task_keypoints(task, keypoints, torch.ones(2, 4, dtype=torch.bool),
                                         torch.tensor([0, 1]), torch.ones(2), boxes)
    heatmap, counts, valid = keypoints_lib.keypoint_heatmap(task, image, (16, 16))
    assert counts.tolist() == [1, 0, 1, 1]  # the second object is not of the task's class
    assert heatmap[2, 3, 0] == 1.0 and heatmap[:, :, 1].max() == 0
    assert valid[3, 3, 1] == 0 and valid[3, 3, 0] == 1  # keypoint 1 unlabelled in box 0
    assert valid[10, 10].sum() == 0  # the other class's box: every type blacked out
    offsets, regressions = keypoints_lib.offset_and_regression_targets(task, image, 0, (16, 16))
    assert offsets.weights.sum() == 3 * 5  # radius 1: 5 pixels around each labelled keypoint
    assert regressions.weights.sum() == 3 * 5


def test_export_has_the_keypoint_outputs_and_heads() -> None:
    """The export signature gets detection_keypoints / detection_keypoint_scores, and
    model.pt2 the keypoint heads postprocess decodes (tests/export/test_export_masks_keypoints.py
    exports one)."""
    from objdet.export.graph import check_exportable, instance_outputs

    model = tiny_model()
    check_exportable(model)
    assert instance_outputs(model) == {"detection_keypoints": (4, 2),
                                       "detection_keypoint_scores": (4,)}
    with torch.no_grad():
        assert set(model.eval().predict(torch.rand(1, 3, 64, 64))) == set(model.graph_outputs)
