"""``serve``: run the model manager, the REST and the gRPC front ends until SIGTERM/SIGINT.

Startup loads every model's current versions (so the ports open ready to answer), then
starts polling the base paths. On SIGTERM the front ends stop accepting work, requests in
flight finish (REST: uvicorn's graceful shutdown; gRPC: ``stop(grace)``), queued batches
run, and the models are unloaded.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from dataclasses import dataclass

from objdet.errors import ConfigError, ObjdetError
from objdet.serving.config_reload import ModelServerConfig
from objdet.serving.grpc_service import ServingHealth, build_grpc_server
from objdet.serving.manager import ModelManager
from objdet.serving.metrics import Metrics
from objdet.serving.model_config import (
    DEFAULT_PROMETHEUS_PATH,
    BatchingOptions,
    ModelConfig,
    parse_text_file,
)
from objdet.serving.rest import build_app
from objdet.serving.servable import load_servable
from objdet.serving.service import ServingCore
from objdet.serving.tls import TLSConfig

logger = logging.getLogger(__name__)
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class ServerOptions:
    """What ``objdet serve``'s flags ask for (``objdet.serving.flags`` maps TF Serving's)."""

    port: int = 8500  # gRPC; 0 disables it
    rest_api_port: int = 8501  # REST; 0 disables it
    host: str = "0.0.0.0"
    file_system_poll_wait_seconds: float = 1.0  # 0: poll once, at startup
    batching: BatchingOptions | None = None  # None: no batching
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    shutdown_grace_seconds: float = 30.0
    grpc_socket_path: str = ""  # also serve gRPC on this UNIX socket
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    grpc_max_threads: int = 32
    rest_api_num_threads: int = 32  # REST requests running model work at once
    rest_api_timeout_seconds: float = 30.0  # REST predict/classify/regress; 0: none
    cors: bool = False
    prometheus_path: str | None = DEFAULT_PROMETHEUS_PATH  # None: no metrics page
    intra_op_threads: int = 0  # 0: torch's and ONNX Runtime's defaults
    inter_op_threads: int = 0
    warmup_iterations: int = 1  # predictions on a grey image per loaded version; 0: none
    model_config_file: str | None = None  # re-read every model_config_poll_seconds (> 0)
    model_config_poll_seconds: float = 0.0
    allow_labels_for_unavailable_versions: bool = False
    max_load_retries: int = 0
    load_retry_seconds: float = 60.0
    method_name_check: bool = False  # TF Serving's --enable_signature_method_name_check
    tls: TLSConfig | None = None  # --ssl_config_file: TLS on the gRPC listeners
    grpc_healthcheck: bool = False  # --enable_grpc_healthcheck_service
    # --enable_per_model_batching_parameters: a version's batching_params.pbtxt, not ``batching``
    per_model_batching: bool = False


class Server:
    """The running server (``start``/``stop``; ``serve`` runs it until a signal)."""

    def __init__(self, configs: list[ModelConfig], options: ServerOptions) -> None:
        if not options.port and not options.rest_api_port and not options.grpc_socket_path:
            raise ObjdetError("--port and --rest_api_port are both 0: nothing to serve on")
        self.options = options
        set_thread_counts(options.intra_op_threads, options.inter_op_threads)
        metrics = Metrics()
        self.manager = ModelManager(
            configs, poll_seconds=options.file_system_poll_wait_seconds,
            batching=options.batching, on_batch=metrics.record_batch,
            loader=functools.partial(load_servable, warmup_iterations=options.warmup_iterations),
            max_load_retries=options.max_load_retries,
            load_retry_seconds=options.load_retry_seconds,
            allow_labels_for_unavailable_versions=options.allow_labels_for_unavailable_versions,
            per_model_batching=options.per_model_batching)
        self.core = ServingCore(self.manager, metrics, method_name_check=options.method_name_check)
        self.health = ServingHealth(self.manager.ready) if options.grpc_healthcheck else None
        if self.health is not None:
            self.manager.on_poll = self.health.update
        self._grpc = (build_grpc_server(
            self.core, options.port, host=options.host,
            max_request_bytes=options.max_request_bytes, max_threads=options.grpc_max_threads,
            socket_path=options.grpc_socket_path,
            channel_arguments=options.grpc_channel_arguments,
            credentials=options.tls.server_credentials() if options.tls else None,
            health=self.health.servicer if self.health else None)
            if options.port or options.grpc_socket_path else None)
        self._rest: object | None = None
        self._rest_thread: threading.Thread | None = None
        self._config_poller = (
            ConfigFilePoller(options.model_config_file, options.model_config_poll_seconds,
                             self.manager)
            if options.model_config_file and options.model_config_poll_seconds > 0 else None)

    def start(self) -> None:
        self.manager.start()
        if self._grpc is not None:
            self._grpc.start()
        if self.options.rest_api_port:
            self._start_rest()
        if self._config_poller is not None:
            self._config_poller.start()
        logger.info("serving %s (gRPC port %d, REST port %d)", ", ".join(self.manager.model_names()),
                    self.options.port, self.options.rest_api_port)

    def _start_rest(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            build_app(self.core, self.options.max_request_bytes,
                      threads=self.options.rest_api_num_threads,
                      timeout_seconds=self.options.rest_api_timeout_seconds,
                      cors=self.options.cors, prometheus_path=self.options.prometheus_path),
            host=self.options.host,
            port=self.options.rest_api_port, lifespan="off", access_log=False,
            log_level="warning", timeout_graceful_shutdown=int(self.options.shutdown_grace_seconds))
        server = uvicorn.Server(config)
        # uvicorn in a thread leaves the signals to serve(): one shutdown order for both ends
        self._rest_thread = threading.Thread(target=server.run, name="rest", daemon=True)
        self._rest = server
        self._rest_thread.start()
        while not server.started:
            if not self._rest_thread.is_alive():
                raise ObjdetError(f"--rest_api_port {self.options.rest_api_port}: the REST server "
                                  "did not start (port in use?)")
            self._rest_thread.join(0.02)

    def stop(self) -> None:
        """Graceful: stop accepting, let in-flight requests finish, unload the models."""
        if self._config_poller is not None:
            self._config_poller.stop()
        if self.health is not None:
            self.health.shut_down()
        if self._rest is not None:
            self._rest.should_exit = True  # type: ignore[attr-defined]
        grpc_stopped = (self._grpc.stop(self.options.shutdown_grace_seconds)
                        if self._grpc is not None else None)
        if self._rest_thread is not None:
            self._rest_thread.join()
        if grpc_stopped is not None:
            grpc_stopped.wait()
        self.core.draining = True
        self.manager.stop()

    def serve(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop gracefully."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            print(f"objdet serve: ready (gRPC port {self.options.port}, REST port "
                  f"{self.options.rest_api_port})", flush=True)
            while not stop.wait(0.5):  # a timed wait: signal handlers run promptly
                pass
            logger.info("shutting down: finishing requests in flight")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def set_thread_counts(intra_op: int, inter_op: int) -> None:
    """TF Serving's --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism
    for torch (ONNX Runtime's intra-op threads follow ``torch.get_num_threads()``); 0 keeps
    the default. ``ConfigError`` when torch already started its inter-op pool."""
    import torch

    if intra_op:
        torch.set_num_threads(intra_op)
    if inter_op and inter_op != torch.get_num_interop_threads():
        try:
            torch.set_num_interop_threads(inter_op)
        except RuntimeError as error:
            raise ConfigError(f"--tensorflow_inter_op_parallelism {inter_op}: {error}") from None


class ConfigFilePoller:
    """--model_config_file_poll_wait_seconds: re-reads the config file every ``seconds`` and
    serves what it lists (``ModelManager.reload``) when it changed. As TF Serving's
    ``PollFilesystemAndReloadConfig``, a file that does not parse or a config the reload
    refuses is logged and the models served stay as they were."""

    def __init__(self, path: str, seconds: float, manager: ModelManager) -> None:
        self.path, self.seconds, self.manager = path, seconds, manager
        self._applied = self._read()  # the config startup read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def poll_once(self) -> None:
        try:
            config = self._read()
        except ObjdetError as error:
            logger.error("Failed to read ModelServerConfig file: %s", error)
            return
        if config == self._applied:
            return
        try:
            self.manager.reload(config)
        except ObjdetError as error:
            logger.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", error)
            return
        self._applied = config
        logger.info("serving the models of %s: %s", self.path,
                    ", ".join(self.manager.model_names()))

    def _read(self) -> ModelServerConfig:
        config = ModelServerConfig()
        parse_text_file(self.path, config)
        return config

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.poll_once()
