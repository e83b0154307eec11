from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from objdet.engine.fine_tune import load_fine_tune_checkpoint, select_trainable
from objdet.errors import ConfigError, ObjdetError


class Detector(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.feature_extractor = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.box_head = nn.Conv2d(4, 4, 1)
        self.class_head = nn.Conv2d(4, num_classes + 1, 1)


def test_classification_checkpoint_fills_the_backbone_only(tmp_path: Path) -> None:
    from ssd_configs import parse_model, ssd_config_text

    from objdet.models import build_model

    source = build_model(parse_model(ssd_config_text()))
    backbone = {name: torch.full_like(value, 0.5) if value.is_floating_point() else value
                for name, value in source.backbone().state_dict().items()}
    torch.save(backbone, tmp_path / "backbone.pth")  # a torchvision-style state_dict
    model = build_model(parse_model(ssd_config_text()))
    predictor_before = {name: value.clone() for name, value in model.box_predictor.state_dict().items()}
    report = load_fine_tune_checkpoint(model, tmp_path / "backbone.pth", "classification")
    assert report.loaded == len(backbone) and not report.missing
    assert all(torch.all(value == 0.5) for name, value in model.backbone().state_dict().items()
               if value.is_floating_point())
    for name, value in model.box_predictor.state_dict().items():  # left as initialized
        assert torch.equal(value, predictor_before[name]), name


def test_detection_checkpoint_skips_the_class_head(tmp_path: Path) -> None:
    source = Detector(num_classes=90)
    nn.init.constant_(source.box_head.weight, 2.0)
    torch.save({"model": source.state_dict(), "step": 5}, tmp_path / "ckpt-5.pt")  # an objdet checkpoint
    model = Detector(num_classes=1)
    report = load_fine_tune_checkpoint(model, tmp_path / "ckpt-5.pt", "detection")
    assert sorted(report.skipped_shape) == ["class_head.bias", "class_head.weight"]
    assert torch.all(model.box_head.weight == 2.0)


def test_full_checkpoint_must_match(tmp_path: Path) -> None:
    torch.save(Detector(num_classes=90).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ObjdetError, match="type full"):
        load_fine_tune_checkpoint(Detector(num_classes=1), tmp_path / "other.pt", "full")
    with pytest.raises(ConfigError, match="supported: classification, detection, full"):
        load_fine_tune_checkpoint(Detector(1), tmp_path / "other.pt", "weird")
    with pytest.raises(ObjdetError, match="file not found"):
        load_fine_tune_checkpoint(Detector(1), tmp_path / "missing.pt", "full")


def test_freeze_and_update_trainable_regexes() -> None:
    model = Detector(num_classes=1)
    trainable = select_trainable(model, freeze_variables=["feature_extractor"])
    assert all(not name.startswith("feature_extractor") for name in trainable)
    assert not model.feature_extractor[0].weight.requires_grad
    trainable = select_trainable(model, update_trainable_variables=["class_head"])
    assert trainable == ["class_head.weight", "class_head.bias"]
    with pytest.raises(ConfigError, match="leave no parameter"):
        select_trainable(model, freeze_variables=[".*"])
