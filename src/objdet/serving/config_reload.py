"""The checks of ``ModelService.HandleReloadConfigRequest``, as TF Serving makes them.

TF Serving (model_service_impl.cc, then server_core.cc ``ServerCore::ReloadConfig``) takes a
new ``ModelServerConfig`` only as a ``model_config_list`` (the server was started with one:
``--model_config_file`` or ``--model_name``, which objdet requires), and refuses it with:

* INVALID_ARGUMENT ``ServerModelConfig type not supported by HandleReloadConfigRequest. Only
  ModelConfigList is currently supported`` for any other config (or none);
* INVALID_ARGUMENT ``Illegal to list model M multiple times in config list``;
* INVALID_ARGUMENT ``Expected model M to have an absolute path or URI; got base_path()=P``;
* INVALID_ARGUMENT for a model whose platform cannot be told (``Illegal setting neither
  ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform.``, ...),
  changes (``Illegal to change a model's platform. ...``) or is not served (``Model M
  requests unsupported platform P``);
* FAILED_PRECONDITION ``Request to assign label to version V of model M, which is not
  currently available for inference``.

TF Serving makes the last two checks after it took the new config in; objdet makes every
check first and changes nothing when one fails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from objdet.serving.errors import Code, ServingError, invalid_argument
from objdet.serving.model_config import ModelConfig
from objdet.serving.protos import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig
PLATFORMS = ("tensorflow", "objdet")  # the model_platform values objdet serves (its exports)


def checked_model_configs(config: ModelServerConfig, current: Mapping[str, ModelConfig],
                          available: Mapping[str, set[int]], *,
                          allow_labels_for_unavailable_versions: bool = False,
                          ) -> list[ModelConfig]:
    """The models of ``config`` if TF Serving would take it while serving ``current`` (name
    -> config) with ``available`` (name -> versions serving); ``ServingError`` otherwise.
    ``allow_labels_for_unavailable_versions`` (--allow_version_labels_for_unavailable_models)
    lets a label the model does not have yet name a version that is not available; a label
    it has must still move to an available version (clients use it)."""
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument("ServerModelConfig type not supported by "
                               "HandleReloadConfigRequest. Only ModelConfigList is currently "
                               "supported")
    models = list(config.model_config_list.config)
    names: set[str] = set()
    for model in models:
        if model.name in names:
            raise invalid_argument(f"Illegal to list model {model.name} multiple times in "
                                   "config list")
        names.add(model.name)
    for model in models:
        if _is_relative(model.base_path):
            raise invalid_argument(f"Expected model {model.name} to have an absolute path or "
                                   f"URI; got base_path()={model.base_path}")
    for model in models:
        if model.name in current:
            old_platform = _serving_platform(current[model.name])
            new_platform = platform_of(model)
            if new_platform != old_platform:
                raise invalid_argument(
                    f"Illegal to change a model's platform. For model {model.name} platform was "
                    f"{old_platform} and new platform requested is {new_platform}")
    check_version_labels(models, current, available,
                         allow_labels_for_unavailable_versions=allow_labels_for_unavailable_versions)
    for model in models:
        platform = platform_of(model)
        if platform not in PLATFORMS:
            raise invalid_argument(f"Model {model.name} requests unsupported platform {platform}")
    return [_copy(model) for model in models]


def check_version_labels(models: list[ModelConfig], current: Mapping[str, ModelConfig],
                         available: Mapping[str, set[int]], *,
                         allow_labels_for_unavailable_versions: bool = False) -> None:
    """TF Serving's ``ServerCore::UpdateModelVersionLabelMap``: FAILED_PRECONDITION for a
    label naming a version of its model that is not available, unless
    ``allow_labels_for_unavailable_versions`` and the label is new or keeps its version (an
    existing label moved to another version must name an available one: clients use it).
    At startup ``current`` and ``available`` are empty (TF Serving checks before loading)."""
    for model in models:
        existing = current[model.name].version_labels if model.name in current else {}
        for label, version in model.version_labels.items():
            if allow_labels_for_unavailable_versions and existing.get(label, version) == version:
                continue
            if version not in available.get(model.name, set()):
                raise ServingError(Code.FAILED_PRECONDITION,
                                   f"Request to assign label to version {version} of model "
                                   f"{model.name}, which is not currently available for "
                                   "inference")


def platform_of(model: ModelConfig) -> str:
    """TF Serving's ``GetPlatform`` (INVALID_ARGUMENT for a model that names none, or both
    the deprecated model_type and model_platform)."""
    model_type = model_server_config_pb2.ModelType
    if model.model_type != model_type.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise invalid_argument("Illegal setting both ModelServerConfig::model_type "
                                   "(deprecated) and ModelServerConfig::model_platform.")
        if model.model_type != model_type.TENSORFLOW:
            raise invalid_argument(f"ModelServerConfig::model_type choice {model.model_type} "
                                   "not supported.")
        return "tensorflow"
    if not model.model_platform:
        raise invalid_argument("Illegal setting neither ModelServerConfig::model_type "
                               "(deprecated) nor ModelServerConfig::model_platform.")
    return str(model.model_platform)


def _serving_platform(model: ModelConfig) -> str:
    """The platform of a model being served (``--model_config_file`` may name none: objdet
    serves it as ``tensorflow``, the platform of ``--model_name``)."""
    if not model.model_platform and not model.model_type:
        return "tensorflow"
    return platform_of(model)


def _is_relative(uri: str) -> bool:
    """TF Serving's ``UriIsRelativePath``: no ``scheme://`` and no leading ``/``."""
    return re.match(r"^[a-zA-Z][0-9a-zA-Z.]*://", uri) is None and not uri.startswith("/")


def _copy(model: ModelConfig) -> ModelConfig:
    copy = ModelConfig()
    copy.CopyFrom(model)
    return copy
