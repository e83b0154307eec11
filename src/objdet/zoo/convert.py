"""A cached zoo model -> an objdet model directory (``NAME/objdet``), by the checkpoint import.

The directory is what ``objdet import-checkpoint`` writes (``pipeline.config`` +
``ckpt-0.pt``), so ``objdet eval``/``export``/``detect`` and ``Predictor.from_checkpoint``
take it. The zoo's configs leave their label maps as ``PATH_TO_BE_CONFIGURED/...``: the
converted config names the OD API's ``mscoco_label_map.pbtxt``, copied into the cache (for
the CenterNet keypoint models, whose ``keypoint_label_map_path`` is a placeholder too, the
same map with COCO's 17 person keypoints, for both).
A model objdet cannot build yet is not converted; :func:`build_problem` says why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import objdet.config
from objdet.atomic import atomic_directory, atomic_write
from objdet.errors import ObjdetError
from objdet.protos.model_pb2 import DetectionModel
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig
from objdet.zoo.cache import ZooCache
from objdet.zoo.catalog import shipped_keypoint_label_map, shipped_label_map
from objdet.zoo.download import CachedModel

PLACEHOLDER = "PATH_TO_BE_CONFIGURED"


@dataclass(frozen=True)
class Conversion:
    directory: Path | None  # the objdet model directory; None when skipped
    skipped_because: str | None  # why objdet cannot build the model (a ConfigError line)


def build_problem(config_path: str | os.PathLike[str]) -> str | None:
    """None when objdet builds the model ``config_path`` describes; else the error's line.

    Built on the ``meta`` device (no weights are allocated: a fraction of a second even for
    EfficientDet D7); a model that cannot be built there is built on the CPU.
    """
    import torch

    from objdet.models import build_model

    try:
        model_config = objdet.config.load(config_path).model
        configure_keypoint_label_map(model_config, Path(str(shipped_keypoint_label_map())))
        try:
            with torch.device("meta"):
                build_model(model_config)
        except ObjdetError:
            raise
        except Exception:  # noqa: BLE001 (an op without a meta kernel: build it for real)
            build_model(model_config)
    except ObjdetError as error:
        return str(error)
    return None


def convert_cached(cached: CachedModel, cache: ZooCache, *, force: bool = False) -> Conversion:
    """Convert ``cached`` into ``cache.converted_dir`` (written atomically) unless it is
    there already (or ``force``); skipped, with the reason, if objdet cannot build it."""
    from objdet.engine.tf2_import import import_tf2_checkpoint

    target = cache.converted_dir(cached.model.name)
    if target.is_dir() and not force:
        return Conversion(target, None)
    problem = build_problem(cached.pipeline_config)
    if problem is not None:
        return Conversion(None, problem)
    config = objdet.config.load(cached.pipeline_config)
    if configure_keypoint_label_map(config.model, ensure_keypoint_label_map(cache)):
        _configure_label_maps(config, ensure_keypoint_label_map(cache))
    _configure_label_maps(config, ensure_label_map(cache))
    try:
        with atomic_directory(target) as folder:
            objdet.config.save(config, folder / "pipeline.config")
            import_tf2_checkpoint(folder / "pipeline.config", cached.checkpoint_prefix, folder)
    except ObjdetError as error:
        raise type(error)(
            f"zoo model {cached.model.name}: converting it failed (the download stays in "
            f"{cached.directory}): {error}"
        ) from None
    return Conversion(target, None)


def ensure_label_map(cache: ZooCache) -> Path:
    """``mscoco_label_map.pbtxt`` in the cache (copied from the package data if absent)."""
    path = cache.label_map_path
    if not path.is_file():
        with atomic_write(path, "wb") as handle:
            handle.write(shipped_label_map().read_bytes())
    return path


def ensure_keypoint_label_map(cache: ZooCache) -> Path:
    """``mscoco_keypoints_label_map.pbtxt`` in the cache (copied from the package data)."""
    path = cache.label_map_path.with_name("mscoco_keypoints_label_map.pbtxt")
    if not path.is_file():
        with atomic_write(path, "wb") as handle:
            handle.write(shipped_keypoint_label_map().read_bytes())
    return path


def configure_keypoint_label_map(model_config: DetectionModel, label_map: Path) -> bool:
    """Point a CenterNet's placeholder ``keypoint_label_map_path`` (the OD API's keypoint
    configs ship it so) at ``label_map``; True if it did."""
    if model_config.WhichOneof("model") != "center_net":
        return False
    center_net = model_config.center_net
    if not (center_net.keypoint_estimation_task
            and center_net.keypoint_label_map_path.startswith(PLACEHOLDER)):
        return False
    center_net.keypoint_label_map_path = os.fspath(label_map)
    return True


def _configure_label_maps(config: TrainEvalPipelineConfig, label_map: Path) -> None:
    """Point every input reader whose label map is the zoo's placeholder at ``label_map``."""
    for reader in [config.train_input_reader, *config.eval_input_reader]:
        if reader.label_map_path.startswith(PLACEHOLDER):
            reader.label_map_path = os.fspath(label_map)
