"""The gRPC front end: TF Serving's ``PredictionService`` (Classify, Regress, Predict,
MultiInference, GetModelMetadata) and ``ModelService`` (GetModelStatus,
HandleReloadConfigRequest), with its messages, so a tensorflow-serving-api client works
unchanged. Errors abort the call with the matching gRPC status code. objdet exports have a
predict signature only: Classify, Regress and MultiInference answer TF Serving's errors for
one (see ``classify_regress``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import HealthServicer

from objdet.export.signature import INPUT_NAME, SIGNATURE_NAME
from objdet.serving.classify_regress import classify, multi_inference, regress, target_of
from objdet.serving.errors import ServingError, invalid_argument
from objdet.serving.messages import images_from_tensor, model_spec, tensor_proto
from objdet.serving.protos import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from objdet.serving.servable import SignatureInfo
from objdet.serving.service import ServingCore

Reply = TypeVar("Reply")
# the grpc.health.v1 service names --enable_grpc_healthcheck_service answers for: the whole
# server ("") and TF Serving's two services
HEALTH_SERVICES = ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


class ServingHealth:
    """grpc.health.v1.Health for --enable_grpc_healthcheck_service: every name of
    ``HEALTH_SERVICES`` is SERVING while ``ready()`` (every model has a version loaded),
    NOT_SERVING otherwise; ``update`` after each version poll, ``shut_down`` at SIGTERM
    (NOT_SERVING from then on, so load balancers drain the server first)."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready
        self.servicer = HealthServicer()
        self._serving: bool | None = None
        self._lock = threading.Lock()

    def update(self) -> None:
        with self._lock:
            serving = self.ready()
            if serving == self._serving:
                return  # Watch streams get a message only when the status changes
            self._serving = serving
            status = (health_pb2.HealthCheckResponse.SERVING if serving
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for service in HEALTH_SERVICES:
                self.servicer.set(service, status)

    def shut_down(self) -> None:
        self.servicer.enter_graceful_shutdown()


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def Predict(self, request: predict_pb2.PredictRequest,
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def run() -> predict_pb2.PredictResponse:
            _check_signature_name(request.model_spec.signature_name)

            def decode(signature: SignatureInfo) -> list:  # type: ignore[type-arg]
                # the filter is checked against the version that will run the request
                unknown = sorted(set(request.output_filter) - set(signature.output_names))
                if unknown:
                    raise invalid_argument(f"output_filter: {unknown} not in the signature's "
                                           f"outputs {list(signature.output_names)}")
                names = sorted(request.inputs)
                if names != [INPUT_NAME]:
                    raise invalid_argument(f"inputs: expected exactly {INPUT_NAME!r}, got {names}")
                return images_from_tensor(request.inputs[INPUT_NAME], signature.input_type,
                                          f"inputs['{INPUT_NAME}']")

            prediction = self.core.predict(target_of(request.model_spec), decode, "GRPC")
            response = predict_pb2.PredictResponse(
                model_spec=model_spec(request.model_spec.name, prediction.version, SIGNATURE_NAME))
            for name in request.output_filter or prediction.outputs:
                response.outputs[name].CopyFrom(tensor_proto(prediction.outputs[name]))
            return response

        return _answer(context, run)

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext,
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        def run() -> get_model_metadata_pb2.GetModelMetadataResponse:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid_argument(f"Metadata field {fields} is not supported; expected "
                                       "exactly ['signature_def']")
            return self.core.metadata(target_of(request.model_spec), "GRPC")

        return _answer(context, run)

    def Classify(self, request: classification_pb2.ClassificationRequest,
                 context: grpc.ServicerContext) -> classification_pb2.ClassificationResponse:
        return _answer(context, lambda: classify(self.core, request, "GRPC"))

    def Regress(self, request: regression_pb2.RegressionRequest,
                context: grpc.ServicerContext) -> regression_pb2.RegressionResponse:
        return _answer(context, lambda: regress(self.core, request, "GRPC"))

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,
                       context: grpc.ServicerContext) -> inference_pb2.MultiInferenceResponse:
        return _answer(context, lambda: multi_inference(self.core, request, "GRPC"))


class ModelServicer(prediction_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext,
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        return _answer(context, lambda: self.core.status(target_of(request.model_spec), "GRPC"))

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext,
                                  ) -> model_management_pb2.ReloadConfigResponse:
        """Replace the served model list (``ModelManager.reload``); OK with an OK status, or
        TF Serving's error code and message (``metric_names`` are not counted: no metric)."""
        def run() -> model_management_pb2.ReloadConfigResponse:
            self.core.manager.reload(request.config)
            return model_management_pb2.ReloadConfigResponse(status=get_model_status_pb2.StatusProto())

        return _answer(context, run)


def build_grpc_server(core: ServingCore, port: int, *, host: str = "0.0.0.0",
                      max_request_bytes: int, max_threads: int = 32, socket_path: str = "",
                      channel_arguments: tuple[tuple[str, int | str], ...] = (),
                      credentials: grpc.ServerCredentials | None = None,
                      health: HealthServicer | None = None) -> grpc.Server:
    """A started-later gRPC server on ``host:port`` (port 0: none) and the UNIX socket
    ``socket_path`` (if given), ``max_threads`` answering, with ``channel_arguments`` (TF
    Serving's --grpc_channel_arguments) after objdet's own; ``ObjdetError`` if the port is
    taken. ``credentials`` (--ssl_config_file) secure both listeners, as in TF Serving;
    ``health`` (--enable_grpc_healthcheck_service) is served as grpc.health.v1.Health."""
    from objdet.errors import ObjdetError

    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0), *channel_arguments]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_threads,
                                                    thread_name_prefix="grpc"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core), server)
    prediction_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    if health is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for flag, address in (("--port", f"{host}:{port}" if port else ""),
                          ("--grpc_socket_path", f"unix:{socket_path}" if socket_path else "")):
        if not address:
            continue
        try:
            if credentials is None:
                server.add_insecure_port(address)
            else:
                server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise ObjdetError(f"{flag}: cannot listen on {address}: {error}") from None
    return server


def _check_signature_name(name: str) -> None:
    if name not in ("", SIGNATURE_NAME):
        raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')


def _answer(context: grpc.ServicerContext, run: Callable[[], Reply]) -> Reply:
    with _aborting(context):
        return run()
    raise AssertionError("unreachable")  # context.abort raises


@contextmanager
def _aborting(context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except ServingError as error:
        context.abort(error.grpc_status, error.message)
