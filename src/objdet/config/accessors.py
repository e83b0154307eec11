"""Small read-only questions many components ask of a pipeline config."""

from __future__ import annotations

from objdet.errors import ConfigError
from objdet.protos.pipeline_pb2 import TrainEvalPipelineConfig


def get_architecture(config: TrainEvalPipelineConfig) -> str:
    """The meta-architecture chosen in ``model`` (``"ssd"``, ``"faster_rcnn"``, ...)."""
    architecture = config.model.WhichOneof("model")
    if architecture is None:
        raise ConfigError("model: no meta-architecture set (e.g. model { ssd { ... } })")
    return architecture


def get_num_classes(config: TrainEvalPipelineConfig) -> int:
    """``model.<architecture>.num_classes``: object classes, background not counted."""
    architecture = get_architecture(config)
    model = getattr(config.model, architecture)
    if "num_classes" not in model.DESCRIPTOR.fields_by_name:
        raise ConfigError(f"model.{architecture}: has no num_classes field")
    return int(model.num_classes)
