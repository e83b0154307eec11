"""Which models to serve: ``--model_name/--model_base_path`` or a ``--model_config_file``.

The config file is TF Serving's ``ModelServerConfig`` in protobuf text format::

    model_config_list {
      config {
        name: "detector"
        base_path: "/models/detector"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }   # or all {} / specific { versions: 1 }
        version_labels { key: "stable" value: 1 }
      }
    }

and ``--batching_parameters_file`` is TF Serving's ``BatchingParameters`` text format
(``max_batch_size { value: 8 }``, ``batch_timeout_micros``, ``num_batch_threads``,
``max_enqueued_batches``); with --enable_per_model_batching_parameters a version directory's
``batching_params.pbtxt`` in the same format sets that model's batching instead.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from objdet.errors import ConfigError
from objdet.serving.protos import model_server_config_pb2 as config_pb2

ModelConfig = config_pb2.ModelConfig
VersionPolicy = config_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


def single_model_config(name: str, base_path: str | os.PathLike[str]) -> ModelConfig:
    """The config of ``--model_name NAME --model_base_path DIR`` (latest version only)."""
    if not name:
        raise ConfigError("--model_name: must not be empty")
    return ModelConfig(name=name, base_path=os.fspath(Path(base_path).absolute()),
                       model_platform="tensorflow")


def read_model_config_file(path: str | os.PathLike[str]) -> list[ModelConfig]:
    """The models of a ``ModelServerConfig`` text file; ``ConfigError`` naming the file and
    field when it does not parse or a model lacks a name/base_path or repeats a name."""
    message = config_pb2.ModelServerConfig()
    parse_text_file(path, message)
    if message.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: expected model_config_list {{ config {{ ... }} }}")
    names: set[str] = set()
    configs = []
    for index, model in enumerate(message.model_config_list.config):
        where = f"{path}: model_config_list.config[{index}]"
        if not model.name or not model.base_path:
            raise ConfigError(f"{where}: name and base_path are required")
        if model.name in names:
            raise ConfigError(f"{where}: model name {model.name!r} appears twice")
        if model.model_platform not in ("", "tensorflow", "objdet"):
            raise ConfigError(f"{where}.model_platform: {model.model_platform!r} is not served; "
                              "expected tensorflow (an objdet export)")
        base = Path(model.base_path)
        if not base.is_absolute():  # TF Serving reads relative paths from its working dir
            model.base_path = os.fspath(base.absolute())
        names.add(model.name)
        configs.append(model)
    if not configs:
        raise ConfigError(f"{path}: model_config_list has no config")
    return configs


def versions_to_serve(policy: VersionPolicy, available: list[int]) -> list[int]:
    """The versions a ``model_version_policy`` wants among ``available`` (sorted ascending);
    no policy means ``latest { num_versions: 1 }``, as in TF Serving."""
    available = sorted(set(available))
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return available
    if choice == "specific":
        wanted = set(policy.specific.versions)
        return [version for version in available if version in wanted]
    count = max(1, policy.latest.num_versions) if choice == "latest" else 1
    return available[-count:]


@dataclass(frozen=True)
class BatchingOptions:
    """``--batching_parameters_file``, with TF Serving's defaults for unset fields."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    # TF Serving's default: one per core. On a CPU a batch of 8 runs about as long as 8
    # single images (measured in benchmarks/serve_load.py), so concurrent batches matter.
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_enqueued_batches: int = 100
    # the batch sizes a model call may take (increasing, the last = max_batch_size): a batch
    # is padded up to the next one, as TF Serving pads; empty: any size
    allowed_batch_sizes: tuple[int, ...] = ()

    def padded_size(self, images: int) -> int:
        """The batch size ``images`` images are run at (more than any allowed size: as is)."""
        return next((size for size in self.allowed_batch_sizes if size >= images), images)


# --enable_per_model_batching_parameters: a version directory's own BatchingParameters, in
# its top level (TF Serving's kBatchingParamsFilename, beside saved_model.pb)
BATCHING_PARAMS_FILE = "batching_params.pbtxt"


def read_batching_parameters(path: str | os.PathLike[str] | None) -> BatchingOptions:
    """``BatchingOptions`` from a ``BatchingParameters`` text file (defaults without one)."""
    if path is None:
        return BatchingOptions()
    message = config_pb2.BatchingParameters()
    parse_text_file(path, message)
    defaults = BatchingOptions()
    values = {}
    for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads",
                  "max_enqueued_batches"):
        value = getattr(message, name).value if message.HasField(name) else getattr(defaults, name)
        minimum = 0 if name == "batch_timeout_micros" else 1
        if value < minimum:
            raise ConfigError(f"{path}: {name}: must be >= {minimum}, got {value}")
        values[name] = int(value)
    if message.HasField("thread_pool_name"):
        raise ConfigError(f"{path}: thread_pool_name is not supported (each model has its own "
                          "batch threads, num_batch_threads)")
    allowed = tuple(int(size) for size in message.allowed_batch_sizes)
    # TF Serving's own checks (batching_util.cc ValidateAllowedBatchSizes)
    if any(size < 1 for size in allowed) or any(b <= a for a, b in itertools.pairwise(allowed)):
        raise ConfigError(f"{path}: allowed_batch_sizes: must be positive and strictly "
                          f"increasing, got {list(allowed)}")
    if allowed and allowed[-1] != values["max_batch_size"]:
        raise ConfigError(f"{path}: allowed_batch_sizes: the last entry must equal "
                          f"max_batch_size ({values['max_batch_size']}), got {allowed[-1]}")
    return BatchingOptions(**values, allowed_batch_sizes=allowed)


def parse_text_file(path: str | os.PathLike[str], message: object) -> None:
    """Parse the text-format proto file ``path`` into ``message`` (``ConfigError`` naming it)."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        text_format.Parse(text, message)  # type: ignore[arg-type]
    except text_format.ParseError as error:
        raise ConfigError(f"{path}:{error}") from None


DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's kPrometheusPath


def read_monitoring_config(path: str | os.PathLike[str]) -> str | None:
    """The Prometheus path of a ``--monitoring_config_file`` (TF Serving's MonitoringConfig,
    ``prometheus_config { enable: true path: "/metrics" }``): None when not enabled (no
    metrics page, as TF Serving), TF Serving's default path when ``path`` is empty."""
    message = _monitoring_config_class()()
    parse_text_file(path, message)
    prometheus = message.prometheus_config  # type: ignore[attr-defined]
    if not prometheus.enable:
        return None
    metrics_path = str(prometheus.path) or DEFAULT_PROMETHEUS_PATH
    if not metrics_path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with /, got {metrics_path!r}")
    return metrics_path


def _monitoring_config_class() -> type:
    """``tensorflow.serving.MonitoringConfig`` (monitoring_config.proto: two messages, built
    here from their descriptor rather than generated)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    proto = descriptor_pb2.FileDescriptorProto(
        name="monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
    Field = descriptor_pb2.FieldDescriptorProto
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=Field.TYPE_BOOL, label=Field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=Field.TYPE_MESSAGE,
                         label=Field.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
