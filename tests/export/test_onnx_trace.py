"""trace_to_onnx: the fast TorchScript exporter when its graph keeps the batch dynamic, the
dynamo exporter otherwise, and an error naming both when neither does."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from objdet.errors import ObjdetError
from objdet.export.onnx_trace import run_onnx, trace_to_onnx


class Pooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: Tensor) -> Tensor:
        return self.conv(images).flatten(1).mean(dim=1)  # [B]


class BatchBakedIn(nn.Module):
    """Reads the batch size as a Python number: a trace records the example's."""

    def forward(self, images: Tensor) -> Tensor:
        return images.reshape(int(images.shape[0]), -1).sum(dim=1)


def test_a_batch_agnostic_module_takes_the_torchscript_path_and_runs_any_batch(
        caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    module = Pooled().eval()
    with caplog.at_level(logging.INFO, logger="objdet.export.onnx_trace"):
        proto = trace_to_onnx(module, (torch.rand(2, 3, 8, 8),), ["images"], ["pooled"])
    assert not caplog.records  # no fallback
    images = torch.rand(5, 3, 8, 8)
    (found,) = run_onnx(proto, {"images": images.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(found, module(images).numpy(), atol=1e-6)


def test_a_module_that_fixes_the_batch_is_refused_naming_both_exporters(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="objdet.export.onnx_trace"), \
            pytest.raises(ObjdetError) as error:
        trace_to_onnx(BatchBakedIn(), (torch.rand(2, 3, 4, 4),), ["images"], ["sums"])
    message = str(error.value)
    assert message.startswith("ONNX export: BatchBakedIn cannot be exported with a dynamic batch")
    assert "torchscript_export:" in message and "at batch 3" in message
    assert "dynamo_export:" in message and "\n" not in message
    assert any("torchscript_export" in record.getMessage() for record in caplog.records)
