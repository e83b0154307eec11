"""CenterNet: building from OD API configs (or refusing by field name), peak decoding,
losses and a training step. Parity with the OD API itself: test_center_net_parity.py."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.models import build_model
from objdet.models.center_net_losses import PenaltyReducedLogisticFocalLoss
from objdet.models.contract import check_detection_model
from objdet.models.meta_arch.center_net import BOX_OFFSET, BOX_SCALE, OBJECT_CENTER, CenterNet
from objdet.models.meta_arch.center_net_builder import _head_params
from objdet.models.meta_arch.center_net_keypoint_builder import build_keypoint_tasks
from objdet.protos import model_pb2
from objdet.zoo.catalog import shipped_keypoint_label_map

CONFIGS = Path(__file__).parents[3] / "shared" / "data" / "odapi" / "configs" / "tf2"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "odapi_center_net"
TINY = FIXTURES / "mobilenet_v2_fpn" / "pipeline.config"


def _boxes_only(path: Path) -> model_pb2.DetectionModel:
    """A config's model without its keypoint task (what objdet builds so far)."""
    model = cfg.load(path).model
    del model.center_net.keypoint_estimation_task[:]
    model.center_net.ClearField("keypoint_label_map_path")
    return model


def _tiny_model() -> CenterNet:
    model = build_model(cfg.load(TINY).model)
    assert isinstance(model, CenterNet)
    return model


# The TF2 CenterNet configs with keypoint tasks: objdet builds boxes-only CenterNets so far.
KEYPOINT_CONFIGS = [
    "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8",
    "centernet_resnet50_v2_512x512_kpts_coco17_tpu-8",
    "centernet_hourglass104_512x512_kpts_coco17_tpu-32",
    "centernet_hourglass104_1024x1024_kpts_coco17_tpu-32",
]
BOXES_ONLY_CONFIGS = [
    "centernet_resnet101_v1_fpn_512x512_coco17_tpu-8",  # its extractor is resnet_v2_101
    "centernet_hourglass104_512x512_coco17_tpu-8",
    "centernet_hourglass104_1024x1024_coco17_tpu-32",
]


@pytest.mark.parametrize("name", KEYPOINT_CONFIGS)
def test_keypoint_configs_build_with_a_keypoint_label_map(name: str) -> None:
    config = cfg.load(CONFIGS / f"{name}.config").model
    with pytest.raises(ConfigError, match=r"model\.center_net\.keypoint_label_map_path"):
        build_model(config)  # the OD API's placeholder
    config.center_net.keypoint_label_map_path = str(shipped_keypoint_label_map())
    [(task, heads)] = build_keypoint_tasks(config.center_net, "model.center_net", _head_params)
    assert task.task_name == "human_pose" and task.class_id == 0 and task.per_keypoint_offset
    assert task.keypoint_indices == tuple(range(17)) and task.offset_peak_radius == 3
    assert task.keypoint_std_dev[0] == pytest.approx(0.26)  # nose
    assert heads["human_pose/keypoint/heatmap"] == ([3], [256], pytest.approx(-2.19))
    if "resnet50_v2" in name:  # one whole model (hourglass-104 builds slowly)
        with torch.device("meta"):  # the structure only: no weights allocated
            model = build_model(config)
        assert isinstance(model, CenterNet) and model.num_keypoints == 17
        assert model.heads["human_pose/keypoint/offset"][-1][-1].out_channels == 34


@pytest.mark.parametrize("name", BOXES_ONLY_CONFIGS)
def test_boxes_only_tf2_configs_build_as_they_are(name: str) -> None:
    model = build_model(cfg.load(CONFIGS / f"{name}.config").model)
    assert isinstance(model, CenterNet) and model.num_classes == 90
    assert model.max_detections == 100
    check_detection_model(model)


def test_deepmac_is_refused_at_build_time() -> None:
    path = CONFIGS / "center_net_deepmac_512x512_voc_only_tpu-32.config"
    with pytest.raises(ConfigError, match=r"deepmac_mask_estimation"):
        build_model(cfg.load(path).model)


@pytest.mark.parametrize(("config", "keys"), [
    ("centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8", "keys_resnet50_fpn"),
    ("centernet_resnet50_v2_512x512_kpts_coco17_tpu-8", "keys_resnet50_v2"),
    ("centernet_hourglass104_512x512_kpts_coco17_tpu-32", "keys_hourglass_104"),
])
def test_variable_map_is_the_od_api_checkpoint(config: str, keys: str) -> None:
    """The full-size network (boxes only, 3 classes); the keys file lists the keys and shapes
    of the checkpoint the OD API wrote for it (make_fixtures.py --keys_file)."""
    model_config = _boxes_only(CONFIGS / f"{config}.config")
    model_config.center_net.num_classes = 3  # as make_fixtures.py builds it
    model = build_model(model_config)
    assert isinstance(model, CenterNet)
    shapes = {key: entry["shape"] if isinstance(entry, dict) else entry
              for key, entry in _keys(keys).items()}
    variable_map = model.tf2_variable_map()
    assert set(shapes) <= set(variable_map)  # every OD API variable has a place...
    assert {key for key, target in variable_map.items()  # ...and every objdet one a source
            if target.layout != "ignored"} <= set(shapes)
    state = model.state_dict()
    for key, target in variable_map.items():
        if target.layout == "ignored":
            continue
        shape = shapes[key]
        expected = ([shape[3], shape[2], shape[0], shape[1]] if target.layout == "conv"
                    else shape)
        assert list(state[target.name].shape) == expected, key
    filled = {target.name for target in variable_map.values()}
    assert {name for name, _ in model.named_parameters()} <= filled


def _keys(name: str) -> dict[str, dict[str, object] | list[int]]:
    """A keys file: checkpoint key -> {"shape", "variable" (Keras name)} (or the shape)."""
    with gzip.open(FIXTURES / f"{name}.json.gz", "rt") as handle:
        return json.load(handle)  # type: ignore[no-any-return]


_TORCH_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                "moving_mean": "running_mean", "moving_variance": "running_var"}


def _resnet_v1_module(layer: str) -> str | None:
    """tf.keras.applications ResNet50 layer name -> objdet module (None: not a ResNet layer)."""
    if layer in ("conv1_conv", "conv1_bn"):
        return "stem." + ("0" if layer.endswith("conv") else "1")
    match = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", layer)
    if match is None:
        return None
    stage, block, part, kind = match.groups()
    unit = {"0": "shortcut", "1": "conv1", "2": "conv2", "3": "conv3"}[part]
    return f"stages.{int(stage) - 2}.{int(block) - 1}.{unit}.{0 if kind == 'conv' else 1}"


def _resnet_v2_module(layer: str) -> str | None:
    """tf.keras.applications ResNet50V2 layer name -> objdet module."""
    if layer == "conv1_conv":
        return "stem"
    match = re.fullmatch(r"conv(\d)_block(\d+)_(preact_bn|\d_conv|\d_bn)", layer)
    if match is None:
        return None
    stage, block, part = int(match.group(1)), int(match.group(2)), match.group(3)
    index = sum((3, 4, 6, 3)[: stage - 2]) + block - 1
    unit = {"preact_bn": "preact", "0_conv": "shortcut", "1_conv": "conv1", "1_bn": "norm1",
            "2_conv": "conv2", "2_bn": "norm2", "3_conv": "conv3"}[part]
    return f"blocks.{index}.{unit}"


@pytest.mark.parametrize(("config", "keys", "module_of"), [
    ("centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8", "keys_resnet50_fpn",
     _resnet_v1_module),
    ("centernet_resnet50_v2_512x512_kpts_coco17_tpu-8", "keys_resnet50_v2", _resnet_v2_module),
])
def test_backbone_variables_land_where_their_keras_names_say(
        config: str, keys: str, module_of: Callable[[str], str | None]) -> None:
    """``layer_with_weights-N`` counts layers in Keras' topological order; the Keras
    variable names the OD API saved beside the keys pin each to its objdet module (shapes
    alone cannot: a shortcut and a block's last conv often have the same)."""
    model_config = _boxes_only(CONFIGS / f"{config}.config")
    model_config.center_net.num_classes = 3
    variable_map = build_model(model_config).tf2_variable_map()
    checked = 0
    for key, entry in _keys(keys).items():
        assert isinstance(entry, dict)
        layer, variable = str(entry["variable"]).removesuffix(":0").split("/")
        module = module_of(layer)
        if module is None or "/_base_model/" not in key:
            continue
        expected = f"feature_extractor.classification_backbone.{module}.{_TORCH_NAMES[variable]}"
        assert variable_map[key].name == expected, (key, entry["variable"])
        checked += 1
    assert checked >= 266  # every conv and batch norm variable of ResNet-50 (v2: 266)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda c: setattr(c.object_center_params, "use_labeled_classes", True),
     "object_center_params.use_labeled_classes"),
    (lambda c: c.object_center_params.keypoint_weights_for_center.append(1.0),
     "object_center_params.keypoint_weights_for_center"),
    (lambda c: c.object_detection_task.localization_loss.weighted_l2.SetInParent(),
     "object_detection_task.localization_loss.weighted_l2"),
    (lambda c: c.object_center_params.classification_loss.weighted_sigmoid.SetInParent(),
     "object_center_params.classification_loss.weighted_sigmoid"),
    (lambda c: c.post_processing.SetInParent(), "post_processing"),
    (lambda c: c.ClearField("object_detection_task"), "object_detection_task"),
    (lambda c: c.object_detection_task.scale_head_params.kernel_sizes.append(5),
     "object_detection_task.scale_head_params"),
    (lambda c: setattr(c.feature_extractor, "type", "resnet_v1_51_fpn"),
     "feature_extractor.type"),
    (lambda c: c.feature_extractor.channel_stds.extend([1.0, 0.0, 1.0]),
     "feature_extractor.channel_stds"),
])
def test_unsupported_fields_are_refused_by_name(edit: object, field: str) -> None:
    model = cfg.load(TINY).model
    edit(model.center_net)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=rf"model\.center_net\.{field}"):
        build_model(model)


def test_head_params_set_the_head_convs() -> None:
    model = cfg.load(TINY).model
    params = model.center_net.object_center_params.center_head_params
    params.ClearField("num_filters")
    params.ClearField("kernel_sizes")
    params.num_filters.extend([16, 8])
    params.kernel_sizes.extend([3, 5])
    built = build_model(model)
    assert isinstance(built, CenterNet)
    convs = [layer for layer in built.heads[OBJECT_CENTER][0] if isinstance(layer, torch.nn.Conv2d)]
    assert [(conv.out_channels, conv.kernel_size) for conv in convs] == [
        (16, (3, 3)), (8, (5, 5)), (3, (1, 1))]
    assert torch.allclose(convs[-1].bias, torch.full((3,), -2.19))  # heatmap_bias_init


def test_postprocess_decodes_peaks_to_input_pixel_boxes() -> None:
    model = _tiny_model().eval()
    height = width = 8  # a 32x32 canvas at stride 4
    center = torch.full((1, 3, height, width), -10.0)
    center[0, 2, 3, 5] = 2.0  # class id 3 at output (y 3, x 5)
    center[0, 0, 3, 4] = 1.0  # beside it but another class: a peak of its own
    center[0, 0, 6, 1] = 0.5
    center[0, 0, 6, 2] = 0.4  # not a peak (its neighbour is larger)
    scale = torch.zeros(1, 2, height, width)
    scale[0, :, 3, 5] = torch.tensor([4.0, 6.0])  # height, width in output pixels
    offset = torch.zeros(1, 2, height, width)
    offset[0, :, 3, 5] = torch.tensor([0.5, 0.25])
    predictions = {OBJECT_CENTER: center, BOX_SCALE: scale, BOX_OFFSET: offset}
    # the 32x32 canvas holds a 32x24 (h x w) resized image of a 64x48 input
    detections = model.postprocess(predictions, [(32, 24)], [(64, 48)])[0]
    sigmoid = torch.sigmoid(torch.tensor([2.0, 1.0, 0.5, -10.0]))
    assert torch.allclose(detections["scores"][:3], sigmoid[:3])
    assert detections["labels"][:3].tolist() == [3, 1, 1]
    assert not torch.isclose(detections["scores"], torch.sigmoid(torch.tensor(0.4))).any()
    # ymin = (3 + 0.5 - 2) * 4 / 32, xmin = (5 + 0.25 - 3) * 4 / 24 (clipped to 1 at the right)
    y1, x1, y2, x2 = 1.5 * 4 / 32, 2.25 * 4 / 24, 5.5 * 4 / 32, min(8.25 * 4 / 24, 1.0)
    expected = torch.tensor([x1 * 48, y1 * 64, x2 * 48, y2 * 64])
    assert torch.allclose(detections["boxes"][0], expected, atol=1e-4)
    assert detections["boxes"].shape[0] <= model.max_detections


def test_penalty_reduced_focal_loss_values() -> None:
    loss = PenaltyReducedLogisticFocalLoss(alpha=2.0, beta=4.0)
    logits = torch.tensor([[[0.0, 2.0, -1.0]]])
    targets = torch.tensor([[[1.0, 0.5, 0.0]]])
    values = loss(logits, targets, torch.ones(1, 1, 1))
    p = torch.sigmoid(logits)[0, 0]
    expected = torch.stack([-(1 - p[0]) ** 2 * torch.log(p[0]),
                            -(0.5**4) * p[1] ** 2 * torch.log(1 - p[1]),
                            -(p[2] ** 2) * torch.log(1 - p[2])])
    assert torch.allclose(values[0, 0], expected)
    # the OD API clips the sigmoid to [1e-4, 1 - 1e-4]: a confident miss stays finite
    clipped = loss(torch.tensor([[[-50.0]]]), torch.ones(1, 1, 1), torch.ones(1, 1, 1))
    assert math.isclose(float(clipped), -((1 - 1e-4) ** 2) * math.log(1e-4), rel_tol=1e-5)


def test_one_training_step_reduces_the_loss() -> None:
    torch.manual_seed(0)
    model = _tiny_model().train()
    images = [torch.rand(3, 40, 56), torch.rand(3, 64, 48)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 36.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.tensor([[0.0, 0.0, 48.0, 64.0], [10.0, 20.0, 20.0, 40.0]]),
                "labels": torch.tensor([1, 3])}]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(3):
        losses = model(images, targets)
        assert isinstance(losses, dict)
        assert set(losses) == {"Loss/object_center", "Loss/box/scale", "Loss/box/offset"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < totals[0]


def test_an_image_without_boxes_trains() -> None:
    model = _tiny_model().train()
    losses = model([torch.rand(3, 32, 32)], [{"boxes": torch.zeros(0, 4),
                                             "labels": torch.zeros(0, dtype=torch.long)}])
    assert isinstance(losses, dict)
    assert all(torch.isfinite(value) for value in losses.values())
    assert float(losses["Loss/box/scale"].detach()) == 0.0


def test_predict_returns_the_graph_outputs() -> None:
    model = _tiny_model().eval()
    with torch.no_grad():
        predictions = model.predict(torch.rand(2, 3, 64, 64))
    assert tuple(predictions) == model.graph_outputs
    assert predictions[OBJECT_CENTER].shape == (2, 3, 16, 16)
    assert predictions[BOX_SCALE].shape == predictions[BOX_OFFSET].shape == (2, 2, 16, 16)


def test_stacked_hourglasses_train_every_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hourglasses (as hourglass_104, narrower): heads on both outputs, the losses
    averaged over them (the OD API's num_feature_outputs), eval predicts from the last."""
    from objdet.models.feature_extractors.center_net_hourglass import (
        HOURGLASS_SPECS,
        HourglassSpec,
    )

    monkeypatch.setitem(HOURGLASS_SPECS, "hourglass_10", HourglassSpec(
        8, (8, 12), (2, 2), num_hourglasses=2))
    config = cfg.load(TINY).model
    config.center_net.feature_extractor.type = "hourglass_10"
    model = build_model(config)
    assert isinstance(model, CenterNet)
    model.train()
    canvas = model.resize_batch([torch.rand(3, 40, 40)])
    predictions = model.predict(canvas.images)
    assert {"object_center/0", "box_scale/0", "box_offset/0"} <= set(predictions)
    target = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 36.0]]), "labels": torch.tensor([2])}]
    losses = model.compute_loss(predictions, target, canvas)

    def losses_of(output: str) -> dict[str, torch.Tensor]:
        """The losses if both outputs had predicted what ``output`` ("" last, "/0" first) did."""
        same = {name: predictions[name + output] for name in model.graph_outputs}
        return model.compute_loss(same | {f"{name}/0": same[name] for name in same}, target,
                                  canvas)

    last, first = losses_of(""), losses_of("/0")
    for key, value in losses.items():  # the mean of the two outputs' losses
        assert torch.isclose(value, (last[key] + first[key]) / 2), key
    model.eval()
    with torch.no_grad():
        assert set(model.predict(canvas.images)) == set(model.graph_outputs)


def test_use_depthwise_builds_separable_heads() -> None:
    """``use_depthwise``: Keras SeparableConv2D in the heads (parity: make_fixtures.py
    --use_depthwise, checked outside make test)."""
    from objdet.models.layers.separable_conv import SeparableConv2d

    config = cfg.load(TINY).model
    config.center_net.use_depthwise = True
    model = build_model(config)
    assert isinstance(model, CenterNet)
    head = model.heads[BOX_OFFSET][0]
    assert isinstance(head[0], SeparableConv2d) and isinstance(head[2], torch.nn.Conv2d)
    keys = [key for key in model.tf2_variable_map() if "box.Soffset/0/" in key]
    assert sorted(key.split("/")[4] + "/" + key.split("/")[5] for key in keys) == [
        "layer_with_weights-0/bias", "layer_with_weights-0/depthwise_kernel",
        "layer_with_weights-0/pointwise_kernel", "layer_with_weights-1/bias",
        "layer_with_weights-1/kernel"]
