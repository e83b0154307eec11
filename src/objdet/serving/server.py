"""``serve``: run the model manager, the REST and the gRPC front ends until SIGTERM/SIGINT.

Startup loads every model's current versions (so the ports open ready to answer), then
starts polling the base paths. On SIGTERM the front ends stop accepting work, requests in
flight finish (REST: uvicorn's graceful shutdown; gRPC: ``stop(grace)``), queued batches
run, and the models are unloaded.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from objdet.errors import ObjdetError
from objdet.serving.grpc_service import build_grpc_server
from objdet.serving.manager import ModelManager
from objdet.serving.metrics import Metrics
from objdet.serving.model_config import BatchingOptions, ModelConfig
from objdet.serving.rest import build_app
from objdet.serving.service import ServingCore

logger = logging.getLogger(__name__)
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class ServerOptions:
    port: int = 8500  # gRPC; 0 disables it
    rest_api_port: int = 8501  # REST; 0 disables it
    host: str = "0.0.0.0"
    file_system_poll_wait_seconds: float = 1.0
    batching: BatchingOptions | None = None  # None: no batching
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    shutdown_grace_seconds: float = 30.0


class Server:
    """The running server (``start``/``stop``; ``serve`` runs it until a signal)."""

    def __init__(self, configs: list[ModelConfig], options: ServerOptions) -> None:
        if not options.port and not options.rest_api_port:
            raise ObjdetError("--port and --rest_api_port are both 0: nothing to serve on")
        self.options = options
        metrics = Metrics()
        self.manager = ModelManager(configs, poll_seconds=options.file_system_poll_wait_seconds,
                                    batching=options.batching, on_batch=metrics.record_batch)
        self.core = ServingCore(self.manager, metrics)
        self._grpc = (build_grpc_server(self.core, options.port, host=options.host,
                                        max_request_bytes=options.max_request_bytes)
                      if options.port else None)
        self._rest: object | None = None
        self._rest_thread: threading.Thread | None = None

    def start(self) -> None:
        self.manager.start()
        if self._grpc is not None:
            self._grpc.start()
        if self.options.rest_api_port:
            self._start_rest()
        logger.info("serving %s (gRPC port %d, REST port %d)", ", ".join(self.manager.model_names()),
                    self.options.port, self.options.rest_api_port)

    def _start_rest(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            build_app(self.core, self.options.max_request_bytes), host=self.options.host,
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
