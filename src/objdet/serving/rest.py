"""The REST front end (TF Serving's REST API, https://www.tensorflow.org/tfx/serving/api_rest).

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature_def
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    predict
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   classify (TF Serving's errors:
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    objdet exports predict only)
    GET  /monitoring/prometheus/metrics                          Prometheus metrics
    GET  /v1/ready (200 once every model has a version serving, else 503), /v1/health

Errors are ``{"error": "<message>"}`` with TF Serving's HTTP status for the error code. A
body over ``max_request_bytes`` is refused with 413 before it is read whole.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import anyio
import anyio.to_thread
import orjson
import torch
from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException

from objdet.serving.classify_regress import classify, regress
from objdet.serving.errors import Code, ServingError, invalid_argument
from objdet.serving.example_json import fill_request
from objdet.serving.messages import metadata_json, to_json
from objdet.serving.protos.classification_pb2 import ClassificationRequest
from objdet.serving.protos.regression_pb2 import RegressionRequest
from objdet.serving.rest_codec import RestPredictRequest, parse_predict_request, predict_response
from objdet.serving.servable import SignatureInfo
from objdet.serving.service import ServingCore, Target

# TF Serving's own URL pattern (http_rest_api_handler.cc).
_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<method>[a-z]+))?$")
JSON = "application/json"
# TF Serving's --rest_api_enable_cors_support headers
CORS_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
                "Access-Control-Allow-Headers": "Content-Type"}
T = TypeVar("T")


def build_app(core: ServingCore, max_request_bytes: int, *, threads: int = 32,
              timeout_seconds: float = 0.0, cors: bool = False,
              prometheus_path: str | None = "/monitoring/prometheus/metrics") -> FastAPI:
    """The REST app: at most ``threads`` requests run model work at once (TF Serving's
    --rest_api_num_threads); a predict/classify/regress taking over ``timeout_seconds`` (> 0)
    is answered DEADLINE_EXCEEDED (--rest_api_timeout_in_ms); ``cors`` adds TF Serving's
    CORS headers and answers preflights; metrics at ``prometheus_path`` (None: none)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    workers = _Workers(threads, timeout_seconds)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = f"Malformed request: {request.method} {request.url.path}"
        return _error(ServingError(Code.NOT_FOUND, message), error.status_code)

    if cors:
        @app.middleware("http")
        async def cors_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]],
                               ) -> Response:
            response = (Response(status_code=204) if request.method == "OPTIONS"
                        else await call_next(request))
            response.headers.update(CORS_HEADERS)
            return response

    if prometheus_path is not None:
        @app.get(prometheus_path)
        async def metrics() -> Response:
            return Response(core.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/health")
    async def health() -> Response:
        return Response(b'{"status": "alive"}', media_type=JSON)

    @app.get("/v1/ready")
    async def ready() -> Response:
        if core.manager.ready() and not core.draining:
            return Response(b'{"ready": true}', media_type=JSON)
        return _error(ServingError(Code.UNAVAILABLE, "not ready: a model has no version serving yet, or the "
                                       "server is shutting down"), 503)

    @app.api_route("/v1/models/{path:path}", methods=["GET", "POST"])
    async def models(request: Request) -> Response:
        try:
            return await _handle(core, request, max_request_bytes, workers)
        except ServingError as error:
            return _error(error)

    return app


class _Workers:
    """Runs request work in threads, ``threads`` at a time, predictions under a deadline."""

    def __init__(self, threads: int, timeout_seconds: float) -> None:
        self.threads = threads
        self.timeout_seconds = timeout_seconds
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop

    async def run(self, function: Callable[..., T], *args: object, deadline: bool = False) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        work = anyio.to_thread.run_sync(functools.partial(function, *args),
                                        limiter=self._limiter, abandon_on_cancel=True)
        if not deadline or self.timeout_seconds <= 0:
            return await work
        try:
            return await asyncio.wait_for(work, self.timeout_seconds)
        except TimeoutError:  # the thread runs to its end; its answer is dropped
            raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded: the request ran "
                               f"over --rest_api_timeout_in_ms "
                               f"{round(self.timeout_seconds * 1000)}") from None


async def _handle(core: ServingCore, request: Request, max_request_bytes: int,
                  workers: _Workers) -> Response:
    match = _MODEL_URL.match(request.url.path)
    if match is None:
        raise ServingError(Code.NOT_FOUND, f"Malformed request: {request.method} {request.url.path}")
    version = int(match["version"]) if match["version"] else None
    target = Target(match["name"], version, match["label"])
    if request.method == "GET":
        if match["method"]:
            raise ServingError(Code.NOT_FOUND, f"Malformed request: GET {request.url.path}")
        if match["metadata"]:
            response = await workers.run(core.metadata, target, "REST")
            return _json(metadata_json(response))
        status = await workers.run(core.status, target, "REST")
        return _json(to_json(status))
    if match["metadata"] or match["method"] is None:
        raise ServingError(Code.NOT_FOUND, f"Malformed request: POST {request.url.path}")
    if match["method"] in ("classify", "regress"):
        body = await _read_body(request, max_request_bytes)
        await workers.run(_classify_or_regress, core, target, match["method"], body,
                          deadline=True)
    if match["method"] != "predict":
        raise ServingError(Code.NOT_FOUND, f"Malformed request: POST {request.url.path}")
    body = await _read_body(request, max_request_bytes)

    def run() -> bytes:
        parsed: list[RestPredictRequest] = []

        def decode(signature: SignatureInfo) -> list[torch.Tensor]:
            parsed.append(parse_predict_request(body, signature.input_type))
            unknown = sorted(set(parsed[0].output_filter) - set(signature.output_names))
            if unknown:
                raise invalid_argument(f"output_filter: {unknown} not in the signature's "
                                       f"outputs {list(signature.output_names)}")
            return parsed[0].images

        prediction = core.predict(target, decode, "REST")
        outputs = {name: values for name, values in prediction.outputs.items()
                   if not parsed[0].output_filter or name in parsed[0].output_filter}
        return predict_response(outputs, parsed[0].row_format)

    return Response(await workers.run(run, deadline=True), media_type=JSON)


def _classify_or_regress(core: ServingCore, target: Target, method: str, body: bytes) -> NoReturn:
    """As TF Serving's REST handler: the body is parsed into the request first (its JSON
    errors come before the model's), then the request runs as over gRPC."""
    request: ClassificationRequest | RegressionRequest = (
        ClassificationRequest() if method == "classify" else RegressionRequest())
    request.model_spec.name = target.name
    if target.version is not None:
        request.model_spec.version.value = target.version
    if target.label is not None:
        request.model_spec.version_label = target.label
    fill_request(body, request)
    if isinstance(request, ClassificationRequest):
        classify(core, request, "REST")
    regress(core, request, "REST")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with RESOURCE_EXHAUSTED/413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    if size == 0:
        raise invalid_argument("JSON Parse error: The document is empty")
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ServingError:
    return ServingError(Code.RESOURCE_EXHAUSTED,
                        f"Request body of {size} bytes exceeds --max_request_bytes {limit}", 413)


def _error(error: ServingError, status: int | None = None) -> Response:
    status = status or error.http_status
    return Response(orjson.dumps({"error": error.message}), status_code=status, media_type=JSON)


def _json(content: object) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_INDENT_2), media_type=JSON)
