"""The model contract, for every registered meta-architecture x feature extractor: build,
one train step, one eval step, and export -> detect equal to eval mode (tiny inputs)."""

from __future__ import annotations

import pytest
import torch
from ssd_configs import contract_config_text, parse_model
from torch import nn

from objdet.errors import ConfigError
from objdet.export.graph import check_exportable, export_network, fixed_canvas_size
from objdet.inference.predictor import Predictor
from objdet.models import build_model, parameter_groups
from objdet.models.builder import META_ARCHITECTURES
from objdet.models.contract import DetectionModel, check_detection_model
from objdet.models.feature_extractors.registry import SSD_FEATURE_EXTRACTORS


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
    "faster_rcnn": "tests/models/test_faster_rcnn.py (train, eval, graph outputs) and "
                   "tests/export/test_export_families.py (export -> detect equal to eval)",
    "center_net": "tests/models/test_center_net.py (train, eval, export -> detect per extractor)",
}


def test_every_meta_architecture_has_a_contract_test() -> None:
    assert set(META_ARCHITECTURES) == set(CONTRACT_TESTS)


@pytest.mark.parametrize("extractor", sorted(SSD_FEATURE_EXTRACTORS))
def test_every_ssd_extractor_keeps_the_contract(extractor: str) -> None:
    torch.manual_seed(0)
    model = build_model(parse_model(contract_config_text(extractor)))
    detector = check_detection_model(model)
    assert detector.num_classes == 2 and detector.graph_outputs

    model.train()
    optimizer = torch.optim.SGD(parameter_groups(model), lr=1e-3)
    losses = model(_images(), TARGETS)
    assert isinstance(losses, dict) and losses
    total = sum(losses.values())
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

    _check_export_equals_eval(model, detector, images[0], detections[0])


def _check_export_equals_eval(model: nn.Module, detector: DetectionModel, image: torch.Tensor,
                              expected: dict[str, torch.Tensor]) -> None:
    program = export_network(model, fixed_canvas_size(detector))
    graph = program.module()

    def network(canvas: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(detector.graph_outputs, graph(canvas), strict=True))

    predictor = Predictor(model=model, network=network)
    pixels = (image * 255).round().to(torch.uint8)
    found = predictor.predict_pixels(pixels)
    with torch.no_grad():
        reference = model([pixels.float() / 255.0])[0]
    assert len(found.scores) == len(reference["scores"])
    torch.testing.assert_close(torch.as_tensor(found.scores).float(), reference["scores"], atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.as_tensor(found.boxes).float(), reference["boxes"], atol=1e-2, rtol=0)


def test_a_module_without_the_contract_is_named() -> None:
    with pytest.raises(TypeError, match=r"Linear does not keep the detection model contract.*"
                                        r"num_classes.*tf2_variable_map"):
        check_detection_model(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="cannot be exported: Linear does not keep"):
        check_exportable(nn.Linear(2, 2))
