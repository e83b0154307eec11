"""What each meta-architecture exports today: a family the exporter cannot trace yet fails
with one line naming it, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet import config as cfg
from objdet.errors import ConfigError
from objdet.export.graph import check_exportable, export_network, fixed_canvas_size
from objdet.export.onnx_graph import onnx_unsupported_reason
from objdet.models import build_model

FASTER_RCNN = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_faster_rcnn" / "pipeline.config"


def test_faster_rcnn_export_is_a_clear_error() -> None:
    model = build_model(cfg.load(FASTER_RCNN).model).eval()
    with pytest.raises(ConfigError, match="the FasterRCNN network cannot be traced by torch.export yet"):
        export_network(model, fixed_canvas_size(check_exportable(model)))
    assert "FasterRCNN meta-architecture has no ONNX graph yet" in (onnx_unsupported_reason(model) or "")
