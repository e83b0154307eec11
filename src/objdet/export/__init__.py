"""Exported models: a checkpoint turned into a directory any runtime can serve.

    from objdet.export import export_inference_graph
    export_inference_graph(pipeline_config_path="pipeline.config",
                           trained_checkpoint_dir="model_dir", output_directory="exported",
                           input_type="image_tensor")

- ``objdet.export.exporter``: the directory layout and ``export_inference_graph``.
- ``objdet.export.signature``: inputs and outputs in OD API terms (``signature.json``).
- ``objdet.export.graph``: the network as a ``torch.export`` program (``model.pt2``).
- ``objdet.export.onnx_graph``: the whole detector as one ONNX graph (``model.onnx``), built
  in parts (``onnx_builder``): pre-processing, the traced network, NMS and the detection
  outputs (``onnx_nms``); a Faster R-CNN's two stages in ``onnx_faster_rcnn``.
- ``objdet.export.program``: the whole detector as a ``torch.export`` program
  (``detector.pt2``).

Models are restored from checkpoints (raw or EMA weights) by ``objdet.engine.restore``.

Importing this package does not import torch; the names below load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_inference_graph"]


def __getattr__(name: str) -> Any:
    if name == "export_inference_graph":
        from objdet.export.exporter import export_inference_graph

        return export_inference_graph
    raise AttributeError(f"module 'objdet.export' has no attribute {name!r}")
