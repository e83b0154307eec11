"""``Predictor``: run an exported model (or a checkpoint) on single images.

    predictor = Predictor.from_export("exported/")
    outputs = predictor(image)            # OD API outputs: detection_boxes [1, max, 4], ...
    detections = predictor.detect(image)  # Detections: xyxy pixels, scores, labels

The input accepted by ``predictor(...)`` follows the export's ``input_type`` (see
``objdet.inference.inputs``); ``predict_pixels`` takes decoded ``uint8 [3, H, W]`` pixels
whatever the input_type. Preprocessing (resize onto the canvas) and post-processing (box
decoding, NMS) are the model's own; the network in between is ``model.pt2`` for an export
(``use_graph=False`` runs the exported weights eagerly instead) and the eager model for a
checkpoint. ``Predictor.from_export(directory, runtime="onnxruntime")`` returns an
``OnnxPredictor``: ``model.onnx`` (pre-processing, network and NMS in one graph) run by ONNX
Runtime, with ``predict_batch`` for several images of one size in one call;
``runtime="program"`` returns a ``ProgramPredictor``: ``detector.pt2``, the same whole
detector as a torch.export program (see ``objdet.export.program``), with ``predict_batch``.

A Mask R-CNN's detections carry ``masks`` (over the image) and ``box_masks`` (over each box:
the export's ``detection_masks``), a CenterNet's with keypoint tasks ``keypoints`` and
``keypoint_scores``, from every runtime.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from objdet import config as cfg
from objdet.errors import ObjdetError
from objdet.export.exporter import (
    CONFIG_FILE,
    LABEL_MAP_FILE,
    MODEL_FILE,
    ONNX_FILE,
    PROGRAM_FILE,
    SIGNATURE_FILE,
    WEIGHTS_FILE,
    configured_label_map_path,
)
from objdet.export.graph import graph_input_tensors
from objdet.export.signature import GRAPH_INPUT, GRAPH_OUTPUTS, OUTPUT_NAMES, check_input_type
from objdet.inference.inputs import decode_input
from objdet.inference.outputs import detections_from_outputs
from objdet.models.contract import DetectionModel, as_detection_model
from objdet.structures.detections import Detections
from objdet.structures.label_map import LabelMap, load_label_map

Network = Callable[..., dict[str, Tensor]]  # the model's graph inputs -> raw outputs by name
_EXPORT_FILES = (MODEL_FILE, WEIGHTS_FILE, CONFIG_FILE, SIGNATURE_FILE)
RUNTIMES = ("torch", "onnxruntime", "program")


class Predictor:
    """Detections for one image at a time from a model with a predict/postprocess split."""

    def __init__(
        self, *, model: nn.Module, network: Network, input_type: str = "image_tensor",
        label_map: LabelMap | None = None, canvas_size: tuple[int, int] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        """``model`` supplies the resizer and post-processing; ``network`` maps the canvas
        ``[1, 3, H_c, W_c]`` to the raw outputs; ``canvas_size`` is checked when given."""
        self.model: DetectionModel = as_detection_model(model.eval())
        self.network = network
        self.input_type = check_input_type(input_type)
        self.label_map = label_map
        self.canvas_size = canvas_size
        self.device = torch.device(device)
        self.max_detections = int(self.model.max_detections)

    @classmethod
    def from_export(
        cls, directory: str | os.PathLike[str], *, use_graph: bool = True,
        device: str | torch.device = "cpu", runtime: str = "torch",
    ) -> Predictor:
        """Load an ``objdet export`` directory (see ``objdet.export.exporter``); ``runtime``
        "torch" (``model.pt2`` and the model's pre/post-processing), "onnxruntime"
        (``model.onnx``, an ``OnnxPredictor``) or "program" (``detector.pt2``, a
        ``ProgramPredictor``)."""
        from objdet.export.graph import load_graph
        from objdet.models import build_model

        if runtime not in RUNTIMES:
            raise ObjdetError(f"runtime: {runtime!r} unknown; expected one of {', '.join(RUNTIMES)}")
        directory = resolve_export_directory(directory)
        if runtime == "onnxruntime":
            return OnnxPredictor.from_export(directory)
        if runtime == "program":
            return ProgramPredictor.from_export(directory)
        missing = [name for name in _EXPORT_FILES if not (directory / name).is_file()]
        if missing:
            raise ObjdetError(f"{directory}: not an objdet export directory; missing {', '.join(missing)}")
        signature = _read_json(directory / SIGNATURE_FILE)
        config = cfg.read_config(directory / CONFIG_FILE)
        model = build_model(config.model)
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        model = model.to(device).eval()
        graph_outputs = tuple(signature.get("graph", {}).get("outputs", {})) or GRAPH_OUTPUTS
        network = (load_graph(directory / MODEL_FILE, graph_outputs) if use_graph
                   else _eager_network(model))
        label_map_path = directory / LABEL_MAP_FILE
        try:
            canvas = signature["graph"]["inputs"][GRAPH_INPUT]["shape"][2:]
            input_type = signature["input_type"]
        except (KeyError, TypeError):
            raise ObjdetError(f"{directory / SIGNATURE_FILE}: missing input_type or graph input shape") from None
        return cls(
            model=model, network=network, input_type=input_type, device=device,
            label_map=load_label_map(label_map_path) if label_map_path.is_file() else None,
            canvas_size=(int(canvas[0]), int(canvas[1])),
        )

    @classmethod
    def from_checkpoint(
        cls, pipeline_config_path: str | os.PathLike[str], checkpoint_dir: str | os.PathLike[str],
        *, input_type: str = "image_tensor", overrides: Iterable[str] = (),
        device: str | torch.device = "cpu",
    ) -> Predictor:
        """The latest checkpoint of ``checkpoint_dir`` (EMA weights when configured)."""
        from objdet.engine.restore import restore_model

        check_input_type(input_type)
        config = cfg.load(pipeline_config_path, overrides)
        label_map_path = configured_label_map_path(config)
        model = restore_model(config, checkpoint_dir, os.fspath(pipeline_config_path)).model.to(device)
        return cls(
            model=model, network=_eager_network(model), input_type=input_type, device=device,
            label_map=load_label_map(label_map_path) if label_map_path is not None else None,
        )

    def __call__(self, inputs: Any) -> dict[str, np.ndarray]:
        """One input of this predictor's ``input_type`` -> the OD API's output arrays."""
        return self.detect(inputs).to_outputs(self.max_detections)

    def detect(self, inputs: Any, min_score: float = 0.0) -> Detections:
        """One input of this predictor's ``input_type`` -> detections scoring >= min_score."""
        detections = self.predict_pixels(decode_input(inputs, self.input_type))
        return detections.above(min_score) if min_score > 0 else detections

    @torch.no_grad()
    def predict_pixels(self, image: Tensor) -> Detections:
        """``uint8 [3, H, W]`` RGB (or float 0..255) -> all detections (up to ``max_detections``)."""

        height, width = int(image.shape[1]), int(image.shape[2])
        pixels = image.to(self.device, torch.float32) / 255.0
        batch = self.model.resize_batch([pixels])
        found = tuple(batch.images.shape[2:])
        if self.canvas_size is not None and found != self.canvas_size:
            raise ObjdetError(
                f"the exported graph takes a {self.canvas_size[0]}x{self.canvas_size[1]} canvas, "
                f"but this {height}x{width} image resizes to {found[0]}x{found[1]}"
            )
        raw = self.network(*graph_input_tensors(self.model, batch.images, batch.resized_sizes))
        detection = self.model.postprocess(raw, batch.resized_sizes, batch.original_sizes)[0]
        detections = Detections.from_model_output(detection, image_size=(height, width))
        box_masks = _box_masks(self.model, raw, detection, (height, width))
        return detections if box_masks is None else replace(detections, box_masks=box_masks)


class OnnxPredictor(Predictor):
    """An export's ``model.onnx`` run by ONNX Runtime on the CPU: pre-processing, network and
    NMS all inside the graph (see ``objdet.export.onnx_graph``). Its intra-op threads follow
    ``torch.get_num_threads()`` unless ``threads`` is given."""

    def __init__(
        self, *, model_path: str | os.PathLike[str], input_type: str = "image_tensor",
        label_map: LabelMap | None = None, threads: int | None = None,
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                os.fspath(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own error types
            raise ObjdetError(f"{model_path}: cannot load the ONNX model: {error}") from None
        boxes = self.session.get_outputs()[0]
        if boxes.name != "detection_boxes" or not isinstance(boxes.shape[1], int):
            raise ObjdetError(f"{model_path}: not an objdet detector graph (first output "
                              f"{boxes.name} {boxes.shape}, expected detection_boxes [B, max, 4])")
        self.input_type = check_input_type(input_type)
        self.label_map = label_map
        self.max_detections = int(boxes.shape[1])
        self.device = torch.device("cpu")
        pixels = self.session.get_inputs()[0]
        self.pixel_dtype = np.dtype(np.float32 if pixels.type == "tensor(float)" else np.uint8)

    @classmethod
    def from_export(cls, directory: str | os.PathLike[str], *, use_graph: bool = True,
                    device: str | torch.device = "cpu", runtime: str = "onnxruntime",
                    ) -> OnnxPredictor:
        """An export directory's ``model.onnx``, input type and label map."""
        directory = resolve_export_directory(directory)
        if not (directory / ONNX_FILE).is_file():
            raise ObjdetError(f"{directory}: has no {ONNX_FILE}; export it with the onnx format")
        signature = _read_json(directory / SIGNATURE_FILE)
        label_map_path = directory / LABEL_MAP_FILE
        return cls(model_path=directory / ONNX_FILE,
                   input_type=str(signature.get("input_type", "image_tensor")),
                   label_map=load_label_map(label_map_path) if label_map_path.is_file() else None)

    def predict_pixels(self, image: Tensor) -> Detections:
        """``uint8 [3, H, W]`` RGB (or float 0..255) -> all detections (up to ``max_detections``)."""
        return self.predict_batch(self.batch_input(image.permute(1, 2, 0)[None]))[0]

    def batch_input(self, images: Tensor) -> Tensor:
        """``[B, H, W, 3]`` pixels 0..255 -> the dtype this export takes (float32 for
        float_image_tensor, else uint8), for :meth:`predict_batch`."""
        return images.to(torch.float32 if self.pixel_dtype == np.float32 else torch.uint8)

    def predict_batch(self, images: Tensor | np.ndarray) -> list[Detections]:
        """``uint8 [B, H, W, 3]`` RGB of one size (``float32`` 0..255 for an export of
        float_image_tensor) -> each image's detections."""
        pixels = np.ascontiguousarray(images.cpu().numpy() if isinstance(images, Tensor) else images)
        if pixels.dtype != self.pixel_dtype or pixels.ndim != 4 or pixels.shape[3] != 3:
            raise ObjdetError(f"images: expected {self.pixel_dtype.name} [B, H, W, 3], got "
                              f"{pixels.dtype} {list(pixels.shape)}")
        outputs = self.session.run(None, {"input_tensor": pixels})
        names = [output.name for output in self.session.get_outputs()]
        return detections_from_outputs(dict(zip(names, outputs, strict=True)),
                                       image_size=(int(pixels.shape[1]), int(pixels.shape[2])))


class ProgramPredictor(Predictor):
    """An export's ``detector.pt2`` run by torch on the CPU: pre-processing, network and NMS
    all inside one torch.export program (see ``objdet.export.program``)."""

    def __init__(
        self, *, program_path: str | os.PathLike[str], input_type: str = "image_tensor",
        label_map: LabelMap | None = None, pixel_dtype: torch.dtype = torch.uint8,
        max_detections: int, output_names: tuple[str, ...] = OUTPUT_NAMES,
    ) -> None:
        """``output_names``: the program's outputs in order (its signature entry's)."""
        from objdet.export.program import load_program

        self.program = load_program(program_path)
        self.program_path = Path(program_path)
        self.input_type = check_input_type(input_type)
        self.label_map = label_map
        self.max_detections = max_detections
        self.device = torch.device("cpu")
        self.pixel_dtype = pixel_dtype
        self.output_names = output_names

    @classmethod
    def from_export(cls, directory: str | os.PathLike[str], *, use_graph: bool = True,
                    device: str | torch.device = "cpu", runtime: str = "program",
                    ) -> ProgramPredictor:
        """An export directory's ``detector.pt2``, input type and label map."""
        directory = resolve_export_directory(directory)
        if not (directory / PROGRAM_FILE).is_file():
            raise ObjdetError(f"{directory}: has no {PROGRAM_FILE}; export it with the program format")
        signature = _read_json(directory / SIGNATURE_FILE)
        try:
            program = signature["program"]
            pixels = program["inputs"]["input_tensor"]["dtype"]
            max_detections = int(program["outputs"]["detection_scores"]["shape"][1])
        except (KeyError, TypeError, IndexError, ValueError):
            raise ObjdetError(f"{directory / SIGNATURE_FILE}: missing the program entry's input "
                              "dtype or output shape") from None
        label_map_path = directory / LABEL_MAP_FILE
        return cls(program_path=directory / PROGRAM_FILE,
                   input_type=str(signature.get("input_type", "image_tensor")),
                   label_map=load_label_map(label_map_path) if label_map_path.is_file() else None,
                   pixel_dtype=torch.float32 if pixels == "float32" else torch.uint8,
                   max_detections=max_detections, output_names=tuple(program["outputs"]))

    def predict_pixels(self, image: Tensor) -> Detections:
        """``uint8 [3, H, W]`` RGB (or float 0..255) -> all detections (up to ``max_detections``)."""
        return self.predict_batch(self.batch_input(image.permute(1, 2, 0)[None]))[0]

    def batch_input(self, images: Tensor) -> Tensor:
        """``[B, H, W, 3]`` pixels 0..255 -> the dtype this program takes, for
        :meth:`predict_batch`."""
        return images.to(self.pixel_dtype)

    def predict_batch(self, images: Tensor | np.ndarray) -> list[Detections]:
        """``uint8 [B, H, W, 3]`` RGB of one size (``float32`` 0..255 for an export of
        float_image_tensor) -> each image's detections."""
        pixels = torch.as_tensor(images).cpu()
        if pixels.dtype != self.pixel_dtype or pixels.dim() != 4 or pixels.shape[3] != 3:
            raise ObjdetError(f"images: expected {self.pixel_dtype} [B, H, W, 3], got "
                              f"{pixels.dtype} {list(pixels.shape)}")
        outputs = [output.numpy() for output in self.program(pixels)]
        if len(outputs) != len(self.output_names):
            raise ObjdetError(f"{self.program_path}: the program gave {len(outputs)} outputs, its "
                              f"signature names {len(self.output_names)} ({', '.join(self.output_names)})")
        return detections_from_outputs(dict(zip(self.output_names, outputs, strict=True)),
                                       image_size=(int(pixels.shape[1]), int(pixels.shape[2])))


def _box_masks(model: DetectionModel, raw: dict[str, Tensor], detection: dict[str, Tensor],
               image_size: tuple[int, int]) -> np.ndarray | None:
    """A Mask R-CNN's masks over each of ``detection``'s boxes ``[D, mask_h, mask_w]`` (the
    export's ``detection_masks``), from the map the network gave; None for other models."""
    from objdet.models.meta_arch.faster_rcnn import FasterRCNN

    if not isinstance(model, FasterRCNN) or model.mask_head is None:
        return None
    head = model.mask_head
    if detection["boxes"].shape[0] == 0:
        return np.zeros((0, head.mask_height, head.mask_width), np.float32)
    height, width = image_size
    # fractions of the image are fractions of its window on the canvas, where NMS left them
    fractions = detection["boxes"] / detection["boxes"].new_tensor([width, height, width, height])
    masks = model.predict_masks(raw["rpn_features_to_crop"], fractions, detection["labels"])
    return masks.cpu().numpy()  # [D, mask_height, mask_width]


def resolve_export_directory(directory: str | os.PathLike[str]) -> Path:
    """An export directory itself, or the highest version of a model base path
    (``DIR/<version>/``, as ``objdet export`` writes it)."""
    from objdet.export.exporter import export_versions

    directory = Path(directory)
    if not directory.is_dir():
        raise ObjdetError(f"{directory}: exported model directory does not exist")
    if (directory / SIGNATURE_FILE).is_file():
        return directory
    versions = export_versions(directory)
    return versions[max(versions)] if versions else directory


def _eager_network(model: nn.Module) -> Network:
    return as_detection_model(model).predict


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except json.JSONDecodeError as error:
        raise ObjdetError(f"{path}: not valid JSON: {error}") from None
