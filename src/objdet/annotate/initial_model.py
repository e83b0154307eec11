"""``InitialModel``: suggestions before the project has a model of its own.

A project trained from scratch (or from a backbone-only ``fine_tune_checkpoint``) has no
exported version until its first training round, so its first images would come with no
suggestion at all. ``--initial_model`` names a detector that suggests boxes until then:

- an exported model directory (``objdet export``; a base path with versions takes the newest),
- a model directory with ``pipeline.config`` and a checkpoint (``objdet import-checkpoint``,
  ``objdet train``), or
- ``zoo:NAME``, a TF2 zoo model already in the cache (``objdet zoo download NAME``; never
  downloaded here: the app starts offline).

Its classes are mapped onto the project's labels: by name (case-insensitive; the label map's
name or display name), or as ``--initial_labels`` says (``bear=raccoon,dog=raccoon``; ``*=L``
maps every class to ``L``, ``3=L`` maps class id 3). Detections of classes that map to no
label are dropped; classes merged onto one label go through NMS again so one object gets one
box. Its suggestions are version 0; the first version the trainer exports replaces it.

Its weights (``initial_weights``: a model directory's latest checkpoint, an export's
``weights.pt``) are also where the trainer's first round starts, when its architecture is the
pipeline config's (``model_architecture``): a ``detection`` fine-tune, as the OD API's, so
every tensor whose name and shape match is restored, the class layers' rows remapped onto the
project's labels as the suggestions are (``objdet.annotate.class_heads``), so a label keeps
the trained rows of the class mapped onto it whatever the class order or count
(``objdet.annotate.trainer.starting_point``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from objdet.errors import ConfigError, ObjdetError
from objdet.structures.label_map import LabelMap

if TYPE_CHECKING:
    from torch import Tensor

    from objdet.inference.predictor import Predictor
    from objdet.protos.model_pb2 import DetectionModel
    from objdet.structures.detections import Detections

MERGED_NMS_IOU = 0.5  # classes merged onto one label: boxes overlapping more are one object
ANY_CLASS = "*"


@dataclass
class InitialModel:
    """A detector of other classes and how its class ids map to the project's label ids."""

    spec: str
    predictor: Predictor
    class_map: dict[int, int]  # model class id -> project label id

    def predict(self, pixels: Tensor) -> Detections:
        """``uint8 [3, H, W]`` -> detections with project label ids (unmapped classes dropped)."""
        import numpy as np
        import torch
        from torchvision.ops import batched_nms

        from objdet.structures.detections import Detections

        detections = self.predictor.predict_pixels(pixels)
        labels = np.array([self.class_map.get(int(c), 0) for c in detections.labels], dtype=np.int64)
        keep = labels > 0  # [D]
        if keep.any() and len(set(self.class_map.values())) < len(self.class_map):
            survivors = batched_nms(torch.from_numpy(detections.boxes[keep]).float(),
                                    torch.from_numpy(detections.scores[keep]).float(),
                                    torch.from_numpy(labels[keep]), MERGED_NMS_IOU).numpy()
            merged = np.zeros(int(keep.sum()), dtype=bool)
            merged[survivors] = True
            keep[np.flatnonzero(keep)[~merged]] = False
        return Detections(boxes=detections.boxes[keep], scores=detections.scores[keep],
                          labels=labels[keep], image_size=detections.image_size)


def load_initial_model(spec: str, label_map: LabelMap, label_mapping: str | None = None) -> InitialModel:
    """The detector ``spec`` names (see the module docstring), its classes mapped onto
    ``label_map``; ``ConfigError`` (one line, naming the flag) when it cannot be used."""
    predictor = _load_predictor(spec)
    model_names = model_class_names(predictor.label_map, label_map)
    class_map = class_mapping(model_names, label_map, label_mapping, spec)
    return InitialModel(spec, predictor, class_map)


def _load_predictor(spec: str) -> Predictor:
    from objdet.inference.predictor import Predictor

    try:
        if spec.startswith("zoo:"):
            directory = cached_zoo_model(spec.removeprefix("zoo:"))
            return Predictor.from_checkpoint(directory / "pipeline.config", directory)
        path = Path(spec)
        if not path.is_dir():
            raise ConfigError(f"--initial_model {spec}: neither a directory nor zoo:NAME")
        if _is_model_dir(path):
            return Predictor.from_checkpoint(path / "pipeline.config", path)
        return Predictor.from_export(path, use_graph=False)
    except ConfigError:
        raise
    except ObjdetError as error:
        raise ConfigError(f"--initial_model {spec}: {error}") from None


def _is_model_dir(path: Path) -> bool:
    """A training model directory (pipeline.config + checkpoints), not an export."""
    return (path / "pipeline.config").is_file() and not (path / "signature.json").is_file()


@dataclass(frozen=True)
class InitialWeights:
    """The weights of an ``--initial_model`` and the architecture they belong to."""

    weights_path: Path  # a model directory's latest ckpt-N.pt, or an export's weights.pt
    architecture: str  # model_architecture() of its pipeline.config
    num_classes: int  # of its pipeline.config
    label_map: LabelMap | None  # its classes (None: the project's ids, as the suggestions take it)


def initial_weights(spec: str) -> InitialWeights:
    """The weights file of the detector ``spec`` names (see the module docstring), which
    ``objdet.engine.fine_tune`` reads; ``ConfigError`` (one line) when there is none."""
    import objdet.config
    from objdet.engine.restore import resolve_checkpoint
    from objdet.export.exporter import (
        CONFIG_FILE,
        LABEL_MAP_FILE,
        WEIGHTS_FILE,
        configured_label_map_path,
    )
    from objdet.inference.predictor import resolve_export_directory
    from objdet.structures.label_map import load_label_map

    try:
        label_map_path: Path | None = None
        if spec.startswith("zoo:"):
            directory = cached_zoo_model(spec.removeprefix("zoo:"))
            weights = resolve_checkpoint(directory)
        elif not Path(spec).is_dir():
            raise ConfigError(f"--initial_model {spec}: neither a directory nor zoo:NAME")
        elif _is_model_dir(Path(spec)):
            directory = Path(spec)
            weights = resolve_checkpoint(directory)
        else:
            directory = resolve_export_directory(spec)
            weights = directory / WEIGHTS_FILE
            if not weights.is_file():
                raise ConfigError(f"--initial_model {spec}: {directory} keeps no {WEIGHTS_FILE} to train from")
            label_map_path = directory / LABEL_MAP_FILE
        config = objdet.config.read_config(directory / CONFIG_FILE)
        if label_map_path is None:  # a model directory: its pipeline.config names it
            label_map_path = configured_label_map_path(config)
        label_map = load_label_map(label_map_path) if label_map_path is not None and label_map_path.is_file() else None
    except ConfigError:
        raise
    except ObjdetError as error:
        raise ConfigError(f"--initial_model {spec}: {error}") from None
    meta = config.model.WhichOneof("model")
    num_classes = int(getattr(getattr(config.model, meta), "num_classes", 0)) if meta else 0
    return InitialWeights(weights, model_architecture(config.model), num_classes, label_map)


def model_architecture(model: DetectionModel) -> str:
    """``meta_architecture/feature_extractor`` (e.g. ``ssd/ssd_mobilenet_v2``): models whose
    weights can be restored into each other's, up to tensors of other shapes."""
    meta = model.WhichOneof("model") or "none"
    if meta == "experimental_model":
        return f"{meta}/{model.experimental_model.name}"
    return f"{meta}/{getattr(model, meta).feature_extractor.type}" if meta != "none" else meta


def cached_zoo_model(name: str) -> Path:
    """The converted (objdet) directory of zoo model ``name`` in the cache; an error saying
    how to fetch it when it is not there (no download at app start)."""
    from objdet.zoo import ZooCache, find_model

    model = find_model(name)
    directory = ZooCache().converted_dir(model.name)
    if not (directory / "pipeline.config").is_file():
        raise ConfigError(f"--initial_model zoo:{model.name}: not in the zoo cache {directory.parent}; "
                          f"run `objdet zoo download {model.name}` first")
    return directory


def model_class_names(model_label_map: LabelMap | None, label_map: LabelMap) -> dict[int, tuple[str, ...]]:
    """model class id -> the names it answers to (lower case); a model without a label map
    is taken to use the project's ids."""
    names_of = model_label_map or label_map
    return {item.id: tuple(sorted({item.name.lower(), item.label.lower()}))
            for item in (names_of.item(i) for i in names_of.ids)}


def class_mapping(model_names: dict[int, tuple[str, ...]], label_map: LabelMap,
                  label_mapping: str | None, spec: str) -> dict[int, int]:
    """model class id -> project label id: by name, or by ``label_mapping``
    (``FROM=TO,...``; FROM a model class name, a class id or ``*``; TO a project label)."""
    project = {label_map.item(i).name.lower(): i for i in label_map.ids}
    if not label_mapping:
        mapping = {class_id: project[name] for class_id, names in model_names.items()
                   for name in names if name in project}
        if not mapping:
            some = ", ".join(names[0] for names in list(model_names.values())[:5])
            raise ConfigError(f"--initial_model {spec}: none of its {len(model_names)} classes ({some}, ...) "
                              f"is a label of {label_map.source}; map them with --initial_labels MODEL_CLASS=LABEL,...")
        return mapping
    mapping = {}
    for pair in label_mapping.split(","):
        source, _, target = (part.strip() for part in pair.partition("="))
        if not source or target.lower() not in project:
            raise ConfigError(f"--initial_labels: {pair.strip()!r}; expected MODEL_CLASS=LABEL with LABEL "
                              f"one of {', '.join(sorted(project))}")
        matched = [class_id for class_id, names in model_names.items()
                   if source == ANY_CLASS or source.lower() in names or source == str(class_id)]
        if not matched:
            raise ConfigError(f"--initial_labels: {source!r} is not a class of --initial_model {spec}")
        mapping.update((class_id, project[target.lower()]) for class_id in matched)
    return mapping


def describe(spec: str) -> str:
    """How the page names the initial model: a zoo name, or the directory's name."""
    return spec if spec.startswith("zoo:") else os.path.basename(os.path.normpath(spec))
