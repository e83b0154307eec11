"""The model contract, for every registered meta-architecture x feature extractor: build,
one train step, one eval step (batched == per image), and export -> detect equal to eval mode
(once per extractor for SSD, once per family for Faster R-CNN and CenterNet), on tiny inputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from family_contract_configs import (
    FASTER_RCNN_VARIANTS,
    center_net_contract_config_text,
    faster_rcnn_contract_config_text,
    faster_rcnn_depth_multiplier,
)
from ssd_configs import contract_config_text, parse_model
from torch import nn

from objdet.errors import ConfigError
from objdet.export.graph import check_exportable, export_network, fixed_canvas_size
from objdet.inference.predictor import Predictor
from objdet.models import build_model, parameter_groups
from objdet.models.builder import META_ARCHITECTURES
from objdet.models.contract import DetectionModel, check_detection_model
from objdet.models.feature_extractors.center_net_hourglass import HOURGLASS_SPECS, HourglassSpec
from objdet.models.feature_extractors.faster_rcnn_registry import FASTER_RCNN_FEATURE_EXTRACTORS
from objdet.models.feature_extractors.registry import SSD_FEATURE_EXTRACTORS
from objdet.models.meta_arch.center_net_builder import CENTER_NET_FEATURE_EXTRACTORS
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 48, 80, generator=generator), torch.rand(3, 64, 64, generator=generator)]


TARGETS = [
    {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
    {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [0.0, 0.0, 20.0, 20.0]]),
     "labels": torch.tensor([2, 1])},
]


# Where each registered meta-architecture's contract test lives (this file covers SSD x every
# SSD extractor); a new meta-architecture fails the test below until it is added here.
CONTRACT_TESTS = {
    "ssd": "tests/models/test_contract.py::test_every_ssd_extractor_keeps_the_contract",
    "faster_rcnn": "tests/models/test_contract.py::test_every_faster_rcnn_extractor_keeps_the_"
                   "contract (+ R-FCN, Mask R-CNN) and ::test_faster_rcnn_export_detects_as_eval",
    "center_net": "tests/models/test_contract.py::test_every_center_net_extractor_keeps_the_"
                  "contract and ::test_center_net_export_detects_as_eval",
}


def test_every_meta_architecture_has_a_contract_test() -> None:
    assert set(META_ARCHITECTURES) == set(CONTRACT_TESTS)


# EfficientNet b4-b7 are b0-b3's code at a larger compound scaling (widths, depths, BiFPN
# repeats): ~60 s of the suite for no other line run. Their zoo configs (D4-D7) build and take
# a train step in `objdet configs-report` (benchmarks/RESULTS.md) and D4-D7's parity rows
# ran at full size.
SCALED_UP_ONLY = frozenset(f"ssd_efficientnet-b{n}_bifpn_keras" for n in (4, 5, 6, 7))

# Extractors whose export runs no line that another case's export does not: the same builder
# under a second name, or a deeper/wider instance of the same code. They keep the build, train
# and eval checks; the export check (torch.export, ~5-9 s each) runs on the extractor named.
EXPORT_COVERED_BY = {
    "ssd_mobilenet_v3_large_keras": "ssd_mobilenet_v3_large",  # one builder, two names
    "ssd_mobilenet_v3_small_keras": "ssd_mobilenet_v3_small",
    "ssd_resnet101_v1_fpn": "ssd_resnet50_v1_fpn",  # block counts 3-4-23-3 instead of 3-4-6-3
    "ssd_resnet152_v1_fpn": "ssd_resnet50_v1_fpn",
    "ssd_resnet101_v1_fpn_keras": "ssd_resnet50_v1_fpn_keras",
    "ssd_resnet152_v1_fpn_keras": "ssd_resnet50_v1_fpn_keras",
    **{f"ssd_efficientnet-b{n}_bifpn_keras": "ssd_efficientnet-b0_bifpn_keras" for n in (1, 2, 3)},
}


def test_export_coverage_names_registered_extractors() -> None:
    assert set(EXPORT_COVERED_BY) | set(EXPORT_COVERED_BY.values()) <= set(SSD_FEATURE_EXTRACTORS)
    assert not set(EXPORT_COVERED_BY.values()) & set(EXPORT_COVERED_BY)  # each base is exported


@pytest.mark.parametrize("extractor", sorted(set(SSD_FEATURE_EXTRACTORS) - SCALED_UP_ONLY))
def test_every_ssd_extractor_keeps_the_contract(extractor: str) -> None:
    torch.manual_seed(0)
    model = build_model(parse_model(contract_config_text(extractor)))
    detector = check_detection_model(model)
    assert detector.num_classes == 2 and detector.graph_outputs

    model.train()
    optimizer = torch.optim.SGD(parameter_groups(model), lr=1e-3)
    losses = model(_images(), TARGETS)
    assert isinstance(losses, dict) and losses
    total = torch.stack(list(losses.values())).sum()
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()

    model.eval()
    images = _images()
    with torch.no_grad():
        detections = model(images)
    assert isinstance(detections, list) and len(detections) == 2
    for detection, image in zip(detections, images):
        assert detection["boxes"].shape[1] == 4 and len(detection["scores"]) <= detector.max_detections
        boxes = detection["boxes"]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
        assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
        assert (detection["scores"][:-1] >= detection["scores"][1:]).all()
        assert ((detection["labels"] >= 1) & (detection["labels"] <= 2)).all()

    if extractor not in EXPORT_COVERED_BY:
        _check_export_equals_eval(model, detector, images[0])


def _check_export_equals_eval(model: nn.Module, detector: DetectionModel,
                              image: torch.Tensor) -> int:
    """The exported network + the model's postprocess (Predictor) detect on ``image`` as eval
    mode does; returns the number of detections."""
    program = export_network(model, fixed_canvas_size(detector))
    graph = program.module()

    def network(*inputs: torch.Tensor) -> dict[str, torch.Tensor]:  # canvas (+ image shapes)
        return dict(zip(detector.graph_outputs, graph(*inputs), strict=True))

    predictor = Predictor(model=model, network=network)
    pixels = (image * 255).round().to(torch.uint8)
    found = predictor.predict_pixels(pixels)
    with torch.no_grad():
        reference = model([pixels.float() / 255.0])[0]
    assert len(found.scores) == len(reference["scores"])
    torch.testing.assert_close(torch.as_tensor(found.scores).float(), reference["scores"], atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.as_tensor(found.boxes).float(), reference["boxes"], atol=1e-2, rtol=0)
    return len(found.scores)


def test_a_module_without_the_contract_is_named() -> None:
    with pytest.raises(TypeError, match=r"Linear does not keep the detection model contract.*"
                                        r"num_classes.*tf2_variable_map"):
        check_detection_model(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="cannot be exported: Linear does not keep"):
        check_exportable(nn.Linear(2, 2))


# -- Faster R-CNN (R-FCN, Mask R-CNN) and CenterNet: every registered extractor --

def _mask_targets() -> list[dict[str, torch.Tensor]]:
    """TARGETS with a 0/1 instance mask filling each box (Mask R-CNN trains on masks)."""
    targets = []
    for target, image in zip(TARGETS, _images(), strict=True):
        masks = torch.zeros(len(target["boxes"]), *image.shape[1:], dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, target["boxes"].int().tolist(), strict=True):
            mask[y1:y2, x1:x2] = 1
        targets.append({**target, "masks": masks})
    return targets


# The slim ResNets' variance-scaling init keeps their 0..255 inputs' scale through 100+ layers:
# with random weights and unit moving variances, eval mode overflows and no box survives. Their
# batch norms first take a training batch's statistics as their moving ones (momentum 1).
# (Elsewhere that calibration hurts: near-zero batch variances amplify float noise 30x a layer,
# and batched != per image.)
CALIBRATE_BATCH_NORM = frozenset({"faster_rcnn_resnet50", "faster_rcnn_resnet101",
                                  "faster_rcnn_resnet152"})


def _calibrate_batch_norm(model: nn.Module, targets: list[dict[str, torch.Tensor]]) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(_images(), targets)


def _train_one_step(model: nn.Module, targets: list[dict[str, torch.Tensor]]) -> None:
    """One SGD step on TARGETS: finite named losses, and a gradient for every trainable
    parameter of the feature extractor (the loss reaches its first layer). After the eval
    checks: a step of 1e-3 on random weights can overflow eval mode (the ResNets' stems get
    gradients of ~200 from 0..255 inputs; batch norms over the hourglasses' 1x1 innermost maps
    give gradients of ~1e8)."""
    model.train()
    optimizer = torch.optim.SGD(parameter_groups(model), lr=1e-3)
    losses = model(_images(), targets)
    assert isinstance(losses, dict) and losses
    assert all(name.startswith("Loss/") and value.dim() == 0 and bool(torch.isfinite(value))
               for name, value in losses.items()), losses
    torch.stack(list(losses.values())).sum().backward()
    extractor: nn.Module = model.feature_extractor  # type: ignore[assignment]
    missing = [name for name, parameter in extractor.named_parameters()
               if parameter.requires_grad and parameter.grad is None]
    assert not missing, f"no gradient reaches {missing[:3]} (of {len(missing)})"
    optimizer.step()


def _check_eval(model: nn.Module, detector: DetectionModel, keys: set[str]) -> None:
    """Eval mode: per image exactly ``keys`` -- boxes [D, 4] (x1, y1, x2, y2) inside the
    input image, scores [D] sorted, labels [D] in 1..num_classes (masks [D, 1, H, W] in
    [0, 1]) -- with 0 < D <= max_detections; the padded image alone detects as in the batch."""
    model.eval()
    images = _images()
    with torch.no_grad():
        detections = model(images)
        alone = model(images[:1])  # 48x80: resized and padded onto the square canvas
    assert isinstance(detections, list) and len(detections) == 2
    for detection, image in zip(detections, images, strict=True):
        assert set(detection) == keys
        count = len(detection["scores"])
        assert 0 < count <= detector.max_detections
        boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
        assert boxes.shape == (count, 4) and boxes.dtype == scores.dtype == torch.float32
        assert scores.shape == labels.shape == (count,) and labels.dtype == torch.int64
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
        assert (boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all()
        assert (scores[:-1] >= scores[1:]).all()
        assert ((labels >= 1) & (labels <= detector.num_classes)).all()
        if "masks" in keys:
            masks = detection["masks"]
            assert masks.shape == (count, 1, *image.shape[1:])
            assert 0.0 <= float(masks.min()) and float(masks.max()) <= 1.0
    assert isinstance(alone, list) and set(alone[0]) == keys
    batched = dict(detections[0])
    if "masks" in keys:
        # A box clipped to the image (x2 = W) has the image's last column sample its mask
        # exactly at the far edge, where a 1e-5 box difference flips "outside is 0" (as the
        # OD API's reframe_box_masks_to_image_masks): compare the masks inside that border.
        batched["masks"], alone[0]["masks"] = (masks[..., :-1, :-1] for masks in
                                               (batched["masks"], alone[0]["masks"]))
    for key in sorted(keys):  # the export check's tolerances: 1e-4 (scores), 1e-2 (pixels)
        torch.testing.assert_close(alone[0][key], batched[key], rtol=0,
                                   atol=1e-4 if key == "scores" else 1e-2, msg=_named(key))


def _named(key: str) -> Callable[[str], str]:
    """An assert_close message that starts with the output's name."""
    return lambda text: f"{key}: {text}"


def _faster_rcnn(extractor: str, variant: str = "faster_rcnn") -> nn.Module:
    """The tiny config's model, built as build_model does but at the contract test's width."""
    torch.manual_seed(0)
    config = parse_model(faster_rcnn_contract_config_text(extractor, variant))
    model = build_faster_rcnn(config.faster_rcnn,
                              backbone_depth_multiplier=faster_rcnn_depth_multiplier(extractor))
    return model.to(memory_format=torch.channels_last)


# Every registered extractor as a plain Faster R-CNN; R-FCN and Mask R-CNN once each (the
# ResNet-50 Keras extractor, the parity fixtures' own).
FASTER_RCNN_CASES = [(extractor, "faster_rcnn")
                     for extractor in sorted(FASTER_RCNN_FEATURE_EXTRACTORS)]
FASTER_RCNN_CASES += [("faster_rcnn_resnet50_keras", variant) for variant in FASTER_RCNN_VARIANTS
                      if variant != "faster_rcnn"]


@pytest.mark.parametrize(("extractor", "variant"), FASTER_RCNN_CASES,
                         ids=[f"{variant}-{extractor}" for extractor, variant in FASTER_RCNN_CASES])
def test_every_faster_rcnn_extractor_keeps_the_contract(extractor: str, variant: str) -> None:
    model = _faster_rcnn(extractor, variant)
    detector = check_detection_model(model)
    assert detector.num_classes == 2 and detector.graph_outputs
    assert detector.graph_inputs == ("preprocessed_inputs", "true_image_shapes")
    targets = _mask_targets() if variant == "mask_rcnn" else TARGETS
    if extractor in CALIBRATE_BATCH_NORM:
        _calibrate_batch_norm(model, targets)
    _check_eval(model, detector, {"boxes", "scores", "labels"}
                | ({"masks"} if variant == "mask_rcnn" else set()))
    _train_one_step(model, targets)


# hourglass_104 is 188M parameters (7 s to build here; its zoo configs build at full width in
# test_center_net.py): its contract runs the same network -- 2 stacked hourglasses, 5
# downsamplings, blocks (2, 2, 2, 2, 2, 4) -- at 1/16 of the width.
NARROW_HOURGLASS_104 = HourglassSpec(8, (16, 16, 24, 24, 24, 32), (2, 2, 2, 2, 2, 4),
                                     num_hourglasses=2)


@pytest.mark.parametrize("extractor", sorted(CENTER_NET_FEATURE_EXTRACTORS))
def test_every_center_net_extractor_keeps_the_contract(extractor: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if extractor == "hourglass_104":
        full = HOURGLASS_SPECS[extractor]
        narrow = NARROW_HOURGLASS_104
        assert (full.num_hourglasses, full.blocks_per_stage, len(full.channel_dims)) == (
            narrow.num_hourglasses, narrow.blocks_per_stage, len(narrow.channel_dims))
        monkeypatch.setitem(HOURGLASS_SPECS, extractor, NARROW_HOURGLASS_104)
    torch.manual_seed(0)
    model = build_model(parse_model(center_net_contract_config_text(extractor)))
    detector = check_detection_model(model)
    assert detector.num_classes == 2 and detector.max_detections == 10
    assert detector.graph_inputs == ("preprocessed_inputs",)
    _check_eval(model, detector, {"boxes", "scores", "labels"})
    _train_one_step(model, TARGETS)


# Export -> detect once per family (tracing costs 1-4 s a model), on its cheapest extractor.

def test_faster_rcnn_export_detects_as_eval_mode() -> None:
    """model.pt2 takes the canvas and true_image_shapes: the 48x80 image's 38x64 window on
    the 64x64 canvas clips its proposals as in eval mode."""
    model = _faster_rcnn("faster_rcnn_resnet50_keras").eval()
    assert _check_export_equals_eval(model, check_detection_model(model), _images()[0]) > 0


def test_center_net_export_detects_as_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_model(parse_model(center_net_contract_config_text("hourglass_10"))).eval()
    assert _check_export_equals_eval(model, check_detection_model(model), _images()[0]) > 0
