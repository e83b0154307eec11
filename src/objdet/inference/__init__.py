"""Inference with exported models or checkpoints.

- ``objdet.inference.predictor``: ``Predictor`` (``from_export``, ``from_checkpoint``), returning
  ``objdet.structures.detections.Detections``.
- ``objdet.inference.inputs``: decoding per input_type (pixels, image bytes, tf.Example).
- ``objdet.inference.tfrecords``: ``infer_detections`` over TFRecords of tf.Examples.

Importing this package does not import torch; ``Predictor`` loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor", "infer_detections"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from objdet.inference.predictor import Predictor

        return Predictor
    if name == "infer_detections":
        from objdet.inference.tfrecords import infer_detections

        return infer_detections
    raise AttributeError(f"module 'objdet.inference' has no attribute {name!r}")
