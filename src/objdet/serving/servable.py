"""``Servable``: one loaded, warmed-up version of a model (an ``objdet export`` directory).

A version directory with ``model.onnx`` runs in ONNX Runtime (``OnnxPredictor``: several
images of one size in one ``predict_batch`` call); one without runs the torch program
(``Predictor.predict_pixels``, one image at a time). Loading checks the directory is
complete (every file ``export.json`` lists), loads the model and runs a warm-up prediction
whose outputs are checked, so a half-written or broken version raises here and never serves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from objdet.errors import ObjdetError
from objdet.export.exporter import (
    CONFIG_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ONNX_FILE,
    SIGNATURE_FILE,
    WEIGHTS_FILE,
)
from objdet.export.signature import INPUT_TYPES, INSTANCE_OUTPUTS, OUTPUT_NAMES, shape_matches
from objdet.inference.predictor import OnnxPredictor, Predictor
from objdet.structures.detections import Detections
from objdet.structures.label_map import LabelMap

WARM_UP_SIZE = (64, 64)  # (height, width) of the dummy image the warm-up predicts on


@dataclass(frozen=True)
class SignatureInfo:
    """What ``GetModelMetadata`` reports and requests are checked against."""

    input_type: str  # image_tensor | encoded_image_string_tensor | tf_example
    input_dtype: str  # "uint8" or "string"
    max_detections: int
    # the outputs beyond OUTPUT_NAMES (masks, keypoints): name -> one detection's shape
    instance_outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every output a prediction of this signature has, in order."""
        return (*OUTPUT_NAMES, *(name for name, _ in self.instance_outputs))

    def output_shapes(self) -> dict[str, list[int]]:
        """Output name -> its shape with a batch dimension (-1: any number of images)."""
        size = self.max_detections
        shapes = {"detection_boxes": [-1, size, 4], "detection_scores": [-1, size],
                  "detection_classes": [-1, size], "num_detections": [-1]}
        return shapes | {name: [-1, size, *shape] for name, shape in self.instance_outputs}


class Servable:
    """A loaded model version; ``predict`` maps decoded images to their detections."""

    def __init__(self, *, version: int, directory: Path, predictor: Predictor,
                 signature: SignatureInfo) -> None:
        self.version = version
        self.directory = directory
        self.signature = signature
        # Unloading drops the manager's reference to this object: a request that resolved
        # this version just before still finishes with it, and the model's memory goes with
        # the last reference (the manager then runs the garbage collector).
        self._predictor = predictor
        self.label_map: LabelMap | None = predictor.label_map
        self.batched = isinstance(predictor, OnnxPredictor)  # several images in one call

    def predict(self, images: list[torch.Tensor]) -> list[Detections]:
        """``uint8 [3, H, W]`` RGB images -> each one's detections (all of them, up to
        max_detections). Images of one size go through ONNX Runtime in one call."""
        predictor = self._predictor
        if not isinstance(predictor, OnnxPredictor):
            return [predictor.predict_pixels(image) for image in images]
        results: list[Detections | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(index)
        for indices in by_size.values():
            batch = torch.stack([images[i] for i in indices]).permute(0, 2, 3, 1)  # [B, H, W, 3]
            for index, detections in zip(indices, predictor.predict_batch(batch)):
                results[index] = detections
        return [detections for detections in results if detections is not None]


def load_servable(directory: str | os.PathLike[str], version: int, *,
                  warmup_iterations: int = 1) -> Servable:
    """Load, warm up and verify the export in ``directory``; ``ObjdetError`` saying what is
    missing or broken otherwise. ``warmup_iterations`` predictions verify it (TF Serving's
    --num_request_iterations_for_warmup); 0 (--enable_model_warmup=false) serves it
    unverified, its first request paying for the lazy initializations."""
    directory = Path(directory)
    metadata = _read_json(directory / METADATA_FILE)
    formats = metadata.get("formats", ["pt2"])
    if not isinstance(formats, list):
        raise ObjdetError(f"{directory / METADATA_FILE}: formats must be a list, got {formats!r}")
    required = [METADATA_FILE, SIGNATURE_FILE, CONFIG_FILE]
    if "onnx" in formats:
        required.append(ONNX_FILE)
    else:
        required += [MODEL_FILE, WEIGHTS_FILE]
    missing = [name for name in required if not (directory / name).is_file()]
    if missing:
        raise ObjdetError(f"{directory}: incomplete export, missing {', '.join(missing)}")
    signature_json = _read_json(directory / SIGNATURE_FILE)
    input_type = str(signature_json.get("input_type", ""))
    if input_type not in INPUT_TYPES:
        raise ObjdetError(f"{directory / SIGNATURE_FILE}: input_type {input_type!r} unknown")
    runtime = "onnxruntime" if "onnx" in formats else "torch"
    predictor = Predictor.from_export(directory, runtime=runtime)
    signature = SignatureInfo(input_type=input_type,
                              input_dtype=str(INPUT_TYPES[input_type]["dtype"]),
                              max_detections=int(predictor.max_detections),
                              instance_outputs=_instance_outputs(directory, signature_json))
    servable = Servable(version=version, directory=directory, predictor=predictor,
                        signature=signature)
    for _ in range(warmup_iterations):
        _warm_up(servable)
    return servable


def _warm_up(servable: Servable) -> None:
    """One prediction on a grey image: the first real request is not slow, and a model that
    loads but cannot run (or returns garbage) fails here."""
    image = torch.full((3, *WARM_UP_SIZE), 128, dtype=torch.uint8)
    [detections] = servable.predict([image])
    outputs = detections.to_outputs(servable.signature.max_detections)
    expected = servable.signature.output_shapes()
    if sorted(outputs) != sorted(expected):
        raise ObjdetError(f"{servable.directory}: warm-up prediction gave the outputs "
                          f"{sorted(outputs)}; {SIGNATURE_FILE} names {sorted(expected)}")
    wrong = [name for name, array in outputs.items()
             if not shape_matches(expected[name], array.shape) or not np.isfinite(array).all()]
    if wrong:
        raise ObjdetError(f"{servable.directory}: warm-up prediction gave non-finite or "
                          f"misshapen {', '.join(wrong)} (expected {expected[wrong[0]]}, got "
                          f"{list(outputs[wrong[0]].shape)})")


def _instance_outputs(directory: Path, signature: dict[str, object],
                      ) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``signature.json``'s outputs beyond the four box outputs: name -> one detection's
    shape (``[1, max, *shape]`` there)."""
    outputs = signature.get("outputs")
    if not isinstance(outputs, dict):
        raise ObjdetError(f"{directory / SIGNATURE_FILE}: outputs must be an object")
    found = []
    for name in INSTANCE_OUTPUTS:
        if name not in outputs:
            continue
        shape = outputs[name].get("shape") if isinstance(outputs[name], dict) else None
        if not isinstance(shape, list) or len(shape) < 3 or not all(
                isinstance(size, int) and size > 0 for size in shape):
            raise ObjdetError(f"{directory / SIGNATURE_FILE}: outputs.{name}.shape must be "
                              f"[1, max_detections, ...] positive sizes, got {shape!r}")
        found.append((name, tuple(shape[2:])))
    return tuple(found)


def _read_json(path: Path) -> dict[str, object]:
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise ObjdetError(f"{path}: missing (incomplete export)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ObjdetError(f"{path}: unreadable: {error}") from None
    if not isinstance(content, dict):
        raise ObjdetError(f"{path}: expected a JSON object")
    return content
