"""TF Serving's ``tensorflow_model_server`` command-line flags, for ``objdet serve``.

Every flag of TF Serving's ``model_servers/main.cc`` is accepted by name (``--flag=value``,
``--flag value``; booleans also bare, ``--flag``, or ``=true/false/1/0``), so a TF Serving
command line never meets argparse's "unrecognized arguments". Each flag either works
(``IMPLEMENTED``: mapped onto ``ServerOptions`` by ``server_options``), is a no-op that is
logged (``IGNORED``: only where TF Serving itself does nothing with it on a CPU, or it names
a TensorFlow-only cache objdet does not have), or is refused with a one-line ``ConfigError``
saying why (``UNSUPPORTED``) when it is given a value other than TF Serving's default.

Where objdet's default differs from TF Serving's, the flag's help says so.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from objdet.errors import ConfigError

if TYPE_CHECKING:
    from objdet.serving.model_config import ModelConfig
    from objdet.serving.server import ServerOptions

logger = logging.getLogger(__name__)

_CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class NotServed:
    """A TF Serving flag objdet does not implement: its type, TF Serving's default (given
    that value, the flag is accepted silently) and why."""

    kind: type
    default: object
    reason: str


# No-ops on objdet serve's CPU runtimes (logged when given a non-default value).
IGNORED: dict[str, NotServed] = {
    "per_process_gpu_memory_fraction": NotServed(
        float, 0.0, "objdet serve runs on the CPU: no GPU memory to reserve"),
    "flush_filesystem_caches": NotServed(
        bool, True, "TensorFlow's file-system caches (GCS, S3); objdet reads local files"),
    "xla_cpu_compilation_enabled": NotServed(
        bool, False, "objdet exports contain no XLA-compiled functions"),
    "xla_gpu_compilation_enabled": NotServed(
        bool, False, "objdet exports contain no XLA-compiled functions (and run on the CPU)"),
    "skip_initialize_tpu": NotServed(bool, False, "no TPU: nothing to initialize"),
    "remove_unused_fields_from_bundle_metagraph": NotServed(
        bool, True, "objdet keeps no MetaGraphDef in memory"),
    "num_tflite_pools": NotServed(
        int, _CPUS, "TensorFlow Lite interpreter pools exist only with --prefer_tflite_model"),
    "num_tflite_interpreters_per_pool": NotServed(
        int, 1, "TensorFlow Lite interpreter pools exist only with --prefer_tflite_model"),
}

# Refused when given anything but TF Serving's default.
UNSUPPORTED: dict[str, NotServed] = {
    "use_alts_credentials": NotServed(bool, False, "Google ALTS exists only on Google Cloud"),
    "platform_config_file": NotServed(
        str, "", "objdet serves objdet exports only; their runtime is chosen by export.json"),
    "tensorflow_session_config_file": NotServed(
        str, "", "there is no TensorFlow session; use --tensorflow_intra_op_parallelism and "
        "--tensorflow_inter_op_parallelism"),
    "thread_pool_factory_config_file": NotServed(
        str, "", "there is no TensorFlow thread-pool factory; use the *_parallelism flags"),
    "num_load_threads": NotServed(
        int, 0, "objdet loads versions one at a time in its polling thread (TF Serving's 0)"),
    "num_unload_threads": NotServed(
        int, 0, "objdet unloads versions one at a time in its polling thread (TF Serving's 0)"),
    "prefer_tflite_model": NotServed(
        bool, False, "objdet exports have no model.tflite (they run model.onnx or model.pt2)"),
    "enable_profiler": NotServed(
        bool, True, "there is no TensorFlow profiler service; profile with torch.profiler"),
    "enable_serialization_as_tensor_content": NotServed(
        bool, False, "responses carry float_val, TF Serving's default serialization"),
    "mixed_precision": NotServed(
        str, "", "objdet exports run in the precision they were exported in"),
}


def parse_bool(text: str) -> bool:
    """TF's command-line booleans: true/false/1/0 (any case)."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false/1/0, got {text!r}")


def add_bool_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str,
                  default: bool, help_text: str) -> None:
    """``--name`` (true), ``--name=true|false|1|0`` or ``--name VALUE``."""
    parser.add_argument(f"--{name}", type=parse_bool, nargs="?", const=True, default=default,
                        metavar="BOOL", help=help_text)


def add_not_served_flags(parser: argparse.ArgumentParser) -> None:
    """The ``IGNORED`` and ``UNSUPPORTED`` flags (help lists them; ``check_not_served``
    acts on them)."""
    group = parser.add_argument_group(
        "TF Serving flags objdet ignores (no-ops on the CPU) or refuses (with the reason)")
    for name, flag in {**IGNORED, **UNSUPPORTED}.items():
        status = "ignored" if name in IGNORED else "not supported"
        help_text = f"{status}: {flag.reason}"
        if flag.kind is bool:
            add_bool_flag(group, name, bool(flag.default), help_text)
        else:
            group.add_argument(f"--{name}", type=flag.kind, default=flag.default,  # type: ignore[arg-type]
                               help=help_text)


def check_not_served(args: argparse.Namespace) -> list[str]:
    """``ConfigError`` for an ``UNSUPPORTED`` flag given another value than TF Serving's
    default; the log lines of the ``IGNORED`` ones that were given (returned, and logged)."""
    for name, flag in UNSUPPORTED.items():
        value = getattr(args, name)
        if value != flag.default:
            raise ConfigError(f"--{name}={value}: not supported by objdet serve: {flag.reason}")
    ignored = []
    for name, flag in IGNORED.items():
        value = getattr(args, name)
        if value != flag.default:
            ignored.append(f"--{name}={value} ignored: {flag.reason}")
    for line in ignored:
        logger.warning("%s", line)
    return ignored


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every TF Serving flag (and objdet's own ``--host``, ``--max_request_bytes``,
    ``--max_image_pixels``)."""
    models = parser.add_argument_group(
        "models (--model_base_path [--model_name] or --model_config_file)")
    models.add_argument("--model_name", default=None,
                        help="name of the model in URLs and ModelSpec; default 'default'")
    models.add_argument("--model_base_path", default=None,
                        help="folder of numeric version directories (objdet exports)")
    models.add_argument("--model_config_file", default=None,
                        help="TF Serving ModelServerConfig text file (model_config_list)")
    models.add_argument("--model_config_file_poll_wait_seconds", type=int, default=0,
                        metavar="S", help="re-read --model_config_file every S seconds and "
                        "serve what it lists (as ReloadConfig does); 0: read it once")
    models.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0, metavar="S",
                        help="how often base paths are polled for new versions; 0: once, at "
                        "startup; default 1")
    add_bool_flag(models, "allow_version_labels_for_unavailable_models", False,
                  "let version_labels name a version that is not loaded yet: needed for labels "
                  "in the --model_config_file read at startup (nothing is loaded then, as in TF "
                  "Serving); a reload may still not move an existing label to such a version")
    models.add_argument("--max_num_load_retries", type=int, default=0, metavar="N",
                        help="retry a failed version load N times (TF Serving's default is 5; "
                        "objdet's 0: a failed version is retried when its files change)")
    models.add_argument("--load_retry_interval_micros", type=int, default=60_000_000,
                        metavar="US", help="wait between load retries; default 1 minute")
    add_bool_flag(models, "enable_model_warmup", True,
                  "predict on a grey image when a version loads (checks its outputs and makes "
                  "the first request fast); false: serve without that check")
    models.add_argument("--num_request_iterations_for_warmup", type=int, default=0, metavar="N",
                        help="warm-up predictions per loaded version (used if > 0; default 1)")
    models.add_argument("--saved_model_tags", default="serve",
                        help="objdet exports have one graph, tagged serve (the only value)")
    grpc = parser.add_argument_group("gRPC")
    grpc.add_argument("--port", type=int, default=8500, help="gRPC port (0: no gRPC); default 8500")
    grpc.add_argument("--grpc_socket_path", default="",
                      help="also serve gRPC on this UNIX socket")
    grpc.add_argument("--grpc_channel_arguments", default="", metavar="K=V,...",
                      help="gRPC server channel arguments, e.g. grpc.max_connection_age_ms=2000")
    grpc.add_argument("--grpc_max_threads", type=int, default=4 * _CPUS,
                      help="threads answering gRPC requests; default 4 per CPU")
    grpc.add_argument("--ssl_config_file", default="", metavar="F",
                      help="TF Serving SSLConfig text file (server_key, server_cert, custom_ca: "
                      "PEM text inline; client_verify: require a client certificate signed by "
                      "custom_ca): TLS on --port and --grpc_socket_path. The REST port stays "
                      "plain HTTP, as in TF Serving")
    add_bool_flag(grpc, "enable_grpc_healthcheck_service", False,
                  "serve grpc.health.v1.Health: SERVING (service '' and TF Serving's two "
                  "services) while every model has a version loaded, NOT_SERVING otherwise and "
                  "from SIGTERM on")
    rest = parser.add_argument_group("REST")
    rest.add_argument("--rest_api_port", type=int, default=8501,
                      help="REST port (0: no REST); default 8501")
    rest.add_argument("--rest_api_num_threads", type=int, default=4 * _CPUS,
                      help="threads running REST requests' work; default 4 per CPU")
    rest.add_argument("--rest_api_timeout_in_ms", type=int, default=30_000, metavar="MS",
                      help="a REST predict/classify/regress running longer is answered 504 "
                      "DEADLINE_EXCEEDED (it finishes in the background); <= 0: no limit")
    add_bool_flag(rest, "rest_api_enable_cors_support", False,
                  "answer CORS preflights and add Access-Control-Allow-* headers")
    rest.add_argument("--monitoring_config_file", default=None,
                      help="MonitoringConfig text file: prometheus_config { enable: true "
                      "path: \"...\" } (without it objdet serves /monitoring/prometheus/metrics)")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--tensorflow_session_parallelism", type=int, default=0, metavar="N",
                         help="both thread counts below at once; 0: automatic")
    runtime.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, metavar="N",
                         help="threads of one op (torch.set_num_threads; ONNX Runtime's "
                         "intra-op threads follow it); 0: automatic")
    runtime.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0, metavar="N",
                         help="ops run at once (torch.set_num_interop_threads); 0: automatic")
    add_bool_flag(runtime, "enable_signature_method_name_check", False,
                  "refuse Predict on a signature whose method_name is not predict/classify/"
                  "regress, Classify/Regress on one that is not classify/regress")
    add_bool_flag(runtime, "enable_batching", False,
                  "batch images of concurrent requests into one model call")
    runtime.add_argument("--batching_parameters_file", default=None,
                         help="TF Serving BatchingParameters text file (implies --enable_batching)")
    add_bool_flag(runtime, "enable_per_model_batching_parameters", False,
                  "with batching on, each version directory's batching_params.pbtxt (the "
                  "format of --batching_parameters_file) sets its model's batching; a version "
                  "without one is not batched. As in TF Serving, only num_batch_threads comes "
                  "from the global file")
    add_bool_flag(parser, "version", False, "print the version and exit")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on; default 0.0.0.0")
    parser.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024,
                        help="largest request body accepted (REST 413 / gRPC RESOURCE_EXHAUSTED); "
                        "default 64 MiB")
    parser.add_argument("--max_image_pixels", type=int, default=None, metavar="N",
                        help="refuse images whose header declares more than N pixels "
                        "(default: $OBJDET_MAX_IMAGE_PIXELS or 89478485; 0: no limit)")
    add_not_served_flags(parser)


def options_from_flags(args: argparse.Namespace) -> tuple[list[ModelConfig], ServerOptions]:
    """The models and ``ServerOptions`` the parsed flags ask for; ``ConfigError`` naming the
    flag for a value objdet cannot serve."""
    from objdet.serving import model_config

    check_not_served(args)
    if args.saved_model_tags != "serve":
        raise ConfigError(f"--saved_model_tags={args.saved_model_tags}: objdet exports have one "
                          "graph, tagged serve")
    if args.model_config_file:
        if args.model_name or args.model_base_path:
            raise ConfigError("--model_config_file: give it or --model_name/--model_base_path, "
                              "not both")
        configs = model_config.read_model_config_file(args.model_config_file)
    elif args.model_base_path:
        configs = [model_config.single_model_config(args.model_name or "default",
                                                    args.model_base_path)]
    else:
        raise ConfigError("give --model_base_path (and --model_name), or --model_config_file")
    _check_at_least(args, 0, "file_system_poll_wait_seconds", "model_config_file_poll_wait_seconds",
                    "max_num_load_retries", "num_request_iterations_for_warmup",
                    "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism",
                    "tensorflow_inter_op_parallelism")
    _check_at_least(args, 1, "grpc_max_threads", "rest_api_num_threads")
    intra, inter = args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism
    if intra and inter and args.tensorflow_session_parallelism:
        raise ConfigError("--tensorflow_session_parallelism: either configure it or "
                          "--tensorflow_intra_op_parallelism/--tensorflow_inter_op_parallelism, "
                          "not all three")
    if not intra and not inter:
        intra = inter = args.tensorflow_session_parallelism
    _check_startup_labels(configs, args)
    batching = None
    if args.enable_batching or args.batching_parameters_file:
        batching = model_config.read_batching_parameters(args.batching_parameters_file)
    elif args.enable_per_model_batching_parameters:
        logger.warning("--enable_per_model_batching_parameters ignored: it applies only with "
                       "--enable_batching (as in TF Serving)")
    tls = None
    if args.ssl_config_file:
        from objdet.serving.tls import read_ssl_config

        tls = read_ssl_config(args.ssl_config_file)
    prometheus_path: str | None = model_config.DEFAULT_PROMETHEUS_PATH
    if args.monitoring_config_file:
        prometheus_path = model_config.read_monitoring_config(args.monitoring_config_file)
    channel_arguments = parse_channel_arguments(args.grpc_channel_arguments)
    from objdet.serving.server import ServerOptions  # torch, grpc, ...: once the flags are good

    return configs, ServerOptions(
        port=args.port, rest_api_port=args.rest_api_port, host=args.host,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds, batching=batching,
        max_request_bytes=args.max_request_bytes,
        grpc_socket_path=args.grpc_socket_path,
        grpc_channel_arguments=channel_arguments,
        grpc_max_threads=args.grpc_max_threads, rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_seconds=max(args.rest_api_timeout_in_ms, 0) / 1000,
        cors=args.rest_api_enable_cors_support, prometheus_path=prometheus_path,
        intra_op_threads=intra, inter_op_threads=inter,
        warmup_iterations=(max(1, args.num_request_iterations_for_warmup)
                           if args.enable_model_warmup else 0),
        model_config_file=args.model_config_file,
        model_config_poll_seconds=args.model_config_file_poll_wait_seconds,
        allow_labels_for_unavailable_versions=args.allow_version_labels_for_unavailable_models,
        max_load_retries=args.max_num_load_retries,
        load_retry_seconds=max(args.load_retry_interval_micros, 0) / 1e6,
        method_name_check=args.enable_signature_method_name_check, tls=tls,
        grpc_healthcheck=args.enable_grpc_healthcheck_service,
        per_model_batching=args.enable_per_model_batching_parameters)


def parse_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """``--grpc_channel_arguments``: ``key=value,...``, a value an int where it parses as
    one (as TF Serving passes them to gRPC)."""
    arguments: list[tuple[str, int | str]] = []
    for item in filter(None, text.split(",")):
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ConfigError(f"--grpc_channel_arguments: {item!r} is not key=value")
        try:
            arguments.append((key.strip(), int(value)))
        except ValueError:
            arguments.append((key.strip(), value))
    return tuple(arguments)


def _check_startup_labels(configs: list[ModelConfig], args: argparse.Namespace) -> None:
    """TF Serving checks version_labels before it loads anything (``ServerCore::ReloadConfig``
    calls ``UpdateModelVersionLabelMap`` first, at startup too), so a label in the startup
    config names a version that is not available unless
    --allow_version_labels_for_unavailable_models: refused with its message."""
    from objdet.serving.config_reload import check_version_labels
    from objdet.serving.errors import ServingError

    try:
        check_version_labels(configs, {}, {}, allow_labels_for_unavailable_versions=(
            args.allow_version_labels_for_unavailable_models))
    except ServingError as error:
        raise ConfigError(f"{args.model_config_file}: version_labels: {error.message} (no "
                          "version is loaded at startup: give "
                          "--allow_version_labels_for_unavailable_models, as TF Serving "
                          "requires)") from None


def _check_at_least(args: argparse.Namespace, minimum: int, *names: str) -> None:
    for name in names:
        if getattr(args, name) < minimum:
            raise ConfigError(f"--{name}: must be >= {minimum}, got {getattr(args, name)}")


def version_text() -> str:
    """``--version``, in TF Serving's two lines (no TensorFlow library: objdet has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        objdet_version = version("objdet")
    except PackageNotFoundError:
        objdet_version = "unknown"
    return (f"TensorFlow ModelServer: objdet {objdet_version} (TF Serving's APIs)\n"
            "TensorFlow Library: none (objdet serves torch and ONNX Runtime exports)")
