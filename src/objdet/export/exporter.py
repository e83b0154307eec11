"""``export_inference_graph``: a trained checkpoint -> a self-describing export directory.

Layout of ``output_directory`` (written atomically: it appears complete or not at all)::

    model.pt2         the network as a torch.export program (see objdet.export.graph)
    model.onnx        the whole detector, pre-processing and NMS inside, any batch size
                      (see objdet.export.onnx_graph; absent when formats leave it out)
    detector.pt2      the whole detector as a torch.export program, pre-processing and NMS
                      inside, any batch and image size; runs with torch + torchvision alone
                      (see objdet.export.program; absent when formats leave it out)
    weights.pt        the model's state_dict (torch.save), EMA weights when configured
    pipeline.config   the config as used, overrides applied
    label_map.pbtxt   a copy of the input reader's label map (when the config names one)
    signature.json    inputs and outputs in OD API terms (see objdet.export.signature)
    export.json       objdet version, checkpoint, step, weights used, input_type
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import objdet
from objdet import config as cfg
from objdet.atomic import atomic_directory, require_writable_directory
from objdet.engine.restore import restore_model
from objdet.errors import ConfigError
from objdet.export.graph import (
    check_exportable,
    export_network,
    fixed_canvas_size,
    instance_outputs,
)
from objdet.export.signature import build_signature, check_input_type
from objdet.models.contract import DetectionModel
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig
from objdet.structures.label_map import load_label_map

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
PROGRAM_FILE = "detector.pt2"
FORMATS = ("pt2", "onnx", "program")
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "pipeline.config"
LABEL_MAP_FILE = "label_map.pbtxt"
SIGNATURE_FILE = "signature.json"
METADATA_FILE = "export.json"


@dataclass
class ExportResult:
    directory: Path
    input_type: str
    checkpoint_path: Path
    step: int
    weights: str  # "ema" or "model"
    canvas_size: tuple[int, int]


def export_inference_graph(
    *,
    pipeline_config_path: str | os.PathLike[str],
    trained_checkpoint_dir: str | os.PathLike[str],
    output_directory: str | os.PathLike[str],
    input_type: str = "image_tensor",
    overrides: Iterable[str] = (),
    config_override_text: str | None = None,
    formats: Iterable[str] | None = None,
    version: int | str | None = None,
) -> ExportResult:
    """Export the latest checkpoint of ``trained_checkpoint_dir`` (or a ``ckpt-N.pt`` file).

    ``formats``: "pt2" (the network as a torch.export program; always written, the
    Predictor's torch runtime needs it), "onnx" (``model.onnx``, the whole detector) and
    "program" (``detector.pt2``, the whole detector as a torch.export program); for "onnx" and
    "program" a ``ConfigError`` says what a model they do not cover yet uses. None: every
    format the model supports; a warning names each one left out and why.
    ``version``: None writes the export into ``output_directory`` itself; a number writes
    ``output_directory/<version>/`` (TF Serving's base-path layout; an existing version is
    never overwritten), "next" the number after the highest one there (1 for none).
    Everything is checked before the first byte is written (input_type, config, label map,
    checkpoint, graph equivalence); an error leaves ``output_directory`` as it was. The
    directory appears complete or not at all (written under a temporary name, then renamed).
    """
    check_input_type(input_type)
    requested_formats = None if formats is None else tuple(formats)
    unknown = sorted(set(requested_formats or ()) - set(FORMATS))
    if unknown:
        raise ConfigError(f"formats: {', '.join(unknown)} unknown; expected some of {', '.join(FORMATS)}")
    requested = output_directory
    output_directory = version_directory(output_directory, version)
    output_parent = Path(output_directory).absolute().parent
    require_writable_directory(output_parent, f"output_directory {requested}")
    config = cfg.load(pipeline_config_path, overrides, config_override_text)
    label_map_path = configured_label_map_path(config)
    if label_map_path is not None:
        load_label_map(label_map_path)  # fails here, not in a half-built directory
    restored = restore_model(config, trained_checkpoint_dir, os.fspath(pipeline_config_path))
    model = restored.model
    detector = check_exportable(model)
    canvas_size = fixed_canvas_size(detector)
    _refuse_unsupported_formats(model, requested_formats)  # before minutes of tracing
    program = export_network(model, canvas_size)
    onnx_model = _onnx_model(model, canvas_size, input_type, requested_formats)
    detector_program = _detector_program(model, canvas_size, input_type, requested_formats)
    signature = _signature(detector, input_type, canvas_size, onnx_model is not None,
                           detector_program is not None)
    metadata = {
        "objdet_version": objdet.__version__,
        "torch_version": torch.__version__,
        "input_type": input_type,
        "checkpoint": os.fspath(restored.checkpoint_path),
        "step": restored.step,
        "weights": restored.weights,
        "canvas_size": list(canvas_size),
        "label_map": LABEL_MAP_FILE if label_map_path is not None else None,
        "formats": ["pt2"] + (["onnx"] if onnx_model is not None else [])
                   + (["program"] if detector_program is not None else []),
    }
    output_parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(output_directory) as staging, warnings.catch_warnings():
        # torch's archive writer looks for a contiguous tensor covering each storage and
        # warns when it finds none: channels-last weights (objdet's layout) are written
        # whole all the same; tests/export compare the loaded program with the checkpoint.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, os.fspath(staging / MODEL_FILE))
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)
        if onnx_model is not None:
            (staging / ONNX_FILE).write_bytes(onnx_model.SerializeToString())
        if detector_program is not None:
            torch.export.save(detector_program, os.fspath(staging / PROGRAM_FILE))
        cfg.save(config, staging / CONFIG_FILE)
        if label_map_path is not None:
            shutil.copyfile(label_map_path, staging / LABEL_MAP_FILE)
        _write_json(staging / SIGNATURE_FILE, signature)
        _write_json(staging / METADATA_FILE, metadata)
    return ExportResult(Path(output_directory), input_type, restored.checkpoint_path,
                        restored.step, restored.weights, canvas_size)


def _refuse_unsupported_formats(model: torch.nn.Module, formats: tuple[str, ...] | None) -> None:
    """A ConfigError for a format asked for by name that ``model`` does not have yet (by
    default such formats are left out with a warning instead)."""
    if formats is None:
        return
    from objdet.export.onnx_graph import onnx_unsupported_reason
    from objdet.export.program import program_unsupported_reason

    if "onnx" in formats and (reason := onnx_unsupported_reason(model)) is not None:
        raise ConfigError(f"ONNX export: {reason}")
    if "program" in formats and (reason := program_unsupported_reason(model)) is not None:
        raise ConfigError(f"detector program: {reason}")


def _onnx_model(
    model: torch.nn.Module, canvas_size: tuple[int, int], input_type: str,
    formats: tuple[str, ...] | None,
) -> onnx.ModelProto | None:
    """``model.onnx``'s ModelProto, or None when not asked for (or, by default, not
    supported by the model: then a warning says why)."""
    if formats is not None and "onnx" not in formats:
        return None
    from objdet.export.onnx_graph import export_onnx, onnx_unsupported_reason

    reason = onnx_unsupported_reason(model)
    if reason is not None and formats is None:
        logger.warning("export: no model.onnx: %s", reason)
        return None
    return export_onnx(model, canvas_size, input_type)


def _detector_program(
    model: torch.nn.Module, canvas_size: tuple[int, int], input_type: str,
    formats: tuple[str, ...] | None,
) -> torch.export.ExportedProgram | None:
    """``detector.pt2``'s program, or None when not asked for (or, by default, not supported
    by the model: then a warning says why)."""
    if formats is not None and "program" not in formats:
        return None
    from objdet.export.program import export_program, program_unsupported_reason

    reason = program_unsupported_reason(model)
    if reason is not None and formats is None:
        logger.warning("export: no %s: %s", PROGRAM_FILE, reason)
        return None
    return export_program(model, canvas_size, input_type)


def export_versions(base_path: str | os.PathLike[str]) -> dict[int, Path]:
    """The numbered version directories of ``base_path`` (TF Serving's layout): version ->
    directory. Other names (temporaries of an export in progress, files) are not versions."""
    base = Path(base_path)
    if not base.is_dir():
        return {}
    return {int(child.name): child for child in base.iterdir()
            if child.is_dir() and child.name.isdigit()}


def version_directory(output_directory: str | os.PathLike[str], version: int | str | None) -> Path:
    """Where an export of ``version`` (see ``export_inference_graph``) goes."""
    base = Path(output_directory)
    if version is None:
        return base
    if (base / SIGNATURE_FILE).is_file():
        raise ConfigError(f"output_directory {base}: holds an unversioned export; versions go "
                          "into a directory of their own (TF Serving's model base path)")
    existing = export_versions(base)
    if version == "next":
        return base / str(max(existing, default=0) + 1)
    if (isinstance(version, str) and not version.isdigit()) or int(version) < 1:
        raise ConfigError(f"version: expected a positive integer or 'next', got {version!r}")
    if int(version) in existing:
        raise ConfigError(f"version {int(version)} already exists in {base}: versions are "
                          "never overwritten; export to a new version")
    return base / str(int(version))


def configured_label_map_path(config: TrainEvalPipelineConfig) -> Path | None:
    """The first eval input reader's label_map_path, else the train reader's; None if unset.

    A path that is set but does not exist is a ``ConfigError`` naming the field.
    """
    candidates = [(f"eval_input_reader[{i}]", reader) for i, reader in enumerate(config.eval_input_reader)]
    candidates.append(("train_input_reader", config.train_input_reader))
    for field_path, reader in candidates:
        if reader.label_map_path:
            path = Path(reader.label_map_path)
            if not path.is_file():
                raise ConfigError(
                    f"{field_path}.label_map_path: {reader.label_map_path!r} does not exist"
                )
            return path
    return None


def _signature(
    model: DetectionModel, input_type: str, canvas_size: tuple[int, int], with_onnx: bool,
    with_program: bool,
) -> dict[str, Any]:
    with torch.no_grad():
        raw = model.predict(torch.zeros(1, 3, *canvas_size))
    graph_outputs = {name: tuple(raw[name].shape) for name in model.graph_outputs}
    return build_signature(input_type, model.max_detections, canvas_size, graph_outputs,
                           onnx_file=ONNX_FILE if with_onnx else None,
                           program_file=PROGRAM_FILE if with_program else None,
                           graph_inputs=model.graph_inputs,
                           instance_outputs=instance_outputs(model))


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")
