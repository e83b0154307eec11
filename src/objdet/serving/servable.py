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
from objdet.export.signature import INPUT_TYPES, OUTPUT_NAMES
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


def load_servable(directory: str | os.PathLike[str], version: int) -> Servable:
    """Load, warm up and verify the export in ``directory``; ``ObjdetError`` saying what is
    missing or broken otherwise."""
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
                              max_detections=int(predictor.max_detections))
    servable = Servable(version=version, directory=directory, predictor=predictor,
                        signature=signature)
    _warm_up(servable)
    return servable


def _warm_up(servable: Servable) -> None:
    """One prediction on a grey image: the first real request is not slow, and a model that
    loads but cannot run (or returns garbage) fails here."""
    image = torch.full((3, *WARM_UP_SIZE), 128, dtype=torch.uint8)
    [detections] = servable.predict([image])
    outputs = detections.to_outputs(servable.signature.max_detections)
    if sorted(outputs) != sorted(OUTPUT_NAMES) or not all(
            np.isfinite(array).all() for array in outputs.values()):
        raise ObjdetError(f"{servable.directory}: warm-up prediction gave non-finite outputs")


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
