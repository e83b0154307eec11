"""Class rows remapped onto the project's labels, per family: a detector restored from a model
whose two classes are swapped detects the same objects with the same scores, its labels
swapped back (SSD's convolutional and weight-shared predictors, with and without a background
slot; Faster R-CNN with masks; R-FCN; CenterNet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from family_contract_configs import (
    center_net_contract_config_text,
    faster_rcnn_contract_config_text,
)
from ssd_configs import contract_config_text, parse_model, ssd_config_text
from torch import nn

from objdet.annotate.class_heads import (
    ClassLayer,
    class_layers,
    remap_class_rows,
    write_remapped_weights,
)
from objdet.engine.fine_tune import load_fine_tune_checkpoint
from objdet.models.meta_arch.center_net_builder import build_center_net
from objdet.models.meta_arch.faster_rcnn_builder import build_faster_rcnn
from objdet.models.meta_arch.ssd_builder import build_ssd

SWAPPED = {1: 2, 2: 1}  # model class id -> project label id


def _ssd(text: str) -> nn.Module:
    return build_ssd(parse_model(text).ssd)


FAMILIES = {
    "ssd-convolutional": lambda: _ssd(ssd_config_text()),
    "ssd-weight-shared-no-background": lambda: _ssd(contract_config_text("ssd_mobilenet_v1_fpn_keras").replace(
        "normalize_loss_by_num_matches: true", "normalize_loss_by_num_matches: true add_background_class: false")),
    "mask_rcnn": lambda: build_faster_rcnn(parse_model(faster_rcnn_contract_config_text(
        "faster_rcnn_resnet50_keras", "mask_rcnn")).faster_rcnn, backbone_depth_multiplier=0.0625),
    "rfcn": lambda: build_faster_rcnn(parse_model(faster_rcnn_contract_config_text(
        "faster_rcnn_resnet50_keras", "rfcn")).faster_rcnn, backbone_depth_multiplier=0.0625),
    "center_net": lambda: build_center_net(parse_model(center_net_contract_config_text("mobilenet_v2_fpn")).center_net),
}
EXPECTED_LAYERS = {  # (class layers, their background flags)
    "ssd-convolutional": (12, {True}), "ssd-weight-shared-no-background": (2, {False}),
    "mask_rcnn": (6, {True, False}), "rfcn": (4, {True, False}), "center_net": (2, {False}),
}


def _sorted_detections(output: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    order = torch.argsort(output["scores"], descending=True, stable=True)
    return {key: value[order] for key, value in output.items()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_model_with_swapped_classes_detects_the_same_with_labels_swapped(family: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    initial = FAMILIES[family]().eval()
    with torch.no_grad():  # spread-out random weights, so scores differ per class
        for parameter in initial.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    torch.manual_seed(1)
    project = FAMILIES[family]().eval()  # the project's model, freshly built
    layers = class_layers(project)
    assert (len(layers), {layer.background for layer in layers}) == EXPECTED_LAYERS[family], layers
    checkpoint = tmp_path / "initial.pt"
    torch.save(initial.state_dict(), checkpoint)

    weights = write_remapped_weights(project, checkpoint, SWAPPED, 2, tmp_path / "remapped.pt")
    assert weights.fresh == [] and len(weights.remapped) == len(layers)
    load_fine_tune_checkpoint(project, weights.path, "detection")  # as the engine restores it
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = _sorted_detections(initial([image])[0])
        found = _sorted_detections(project([image])[0])
    assert len(expected["scores"]) > 0
    torch.testing.assert_close(found["scores"], expected["scores"], rtol=0, atol=1e-5)
    torch.testing.assert_close(found["boxes"], expected["boxes"], rtol=0, atol=1e-3)
    assert found["labels"].tolist() == [SWAPPED[int(label)] for label in expected["labels"]]
    if "masks" in expected:
        torch.testing.assert_close(found["masks"], expected["masks"], rtol=0, atol=1e-4)


def test_rows_of_unmapped_labels_stay_fresh_and_merged_classes_take_the_first() -> None:
    # a layer of 2 anchors x (background + 3 classes) rows, [8, 1]; the model has 4 classes
    layer = ClassLayer("head.weight", groups=2, background=True)
    own = {"head.weight": -torch.ones(8, 1)}
    source = {"head.weight": torch.arange(10.0)[:, None]}  # anchor a, slot s: row 5a + s
    remapped = remap_class_rows(own, source, [layer], {4: 1, 2: 1, 3: 3}, source_num_classes=4)
    # label 1 <- model class 4 (listed first), label 2 <- none (fresh), label 3 <- class 3
    assert remapped["head.weight"][:, 0].tolist() == [0, 4, -1, 3, 5, 9, -1, 8]
    assert remap_class_rows(own, {"head.weight": torch.zeros(9, 1)}, [layer], {1: 1}, 4) == {}  # another layout
