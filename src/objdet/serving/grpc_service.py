"""The gRPC front end: TF Serving's ``PredictionService`` (Predict, GetModelMetadata) and
``ModelService`` (GetModelStatus), with its messages, so a tensorflow-serving-api client
works unchanged. Errors abort the call with the matching gRPC status code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import TypeVar

import grpc

from objdet.export.signature import INPUT_NAME, OUTPUT_NAMES, SIGNATURE_NAME
from objdet.serving.errors import ServingError, invalid_argument
from objdet.serving.messages import images_from_tensor, model_spec, tensor_proto
from objdet.serving.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from objdet.serving.servable import SignatureInfo
from objdet.serving.service import ServingCore, Target

Reply = TypeVar("Reply")


def target_of(spec: model_pb2.ModelSpec) -> Target:
    choice = spec.WhichOneof("version_choice")
    return Target(spec.name, spec.version.value if choice == "version" else None,
                  spec.version_label if choice == "version_label" else None)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def Predict(self, request: predict_pb2.PredictRequest,
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def run() -> predict_pb2.PredictResponse:
            _check_signature_name(request.model_spec.signature_name)
            unknown = sorted(set(request.output_filter) - set(OUTPUT_NAMES))
            if unknown:
                raise invalid_argument(f"output_filter: {unknown} not in the signature's outputs "
                                       f"{list(OUTPUT_NAMES)}")

            def decode(signature: SignatureInfo) -> list:  # type: ignore[type-arg]
                names = sorted(request.inputs)
                if names != [INPUT_NAME]:
                    raise invalid_argument(f"inputs: expected exactly {INPUT_NAME!r}, got {names}")
                return images_from_tensor(request.inputs[INPUT_NAME], signature.input_type,
                                          f"inputs['{INPUT_NAME}']")

            prediction = self.core.predict(target_of(request.model_spec), decode, "GRPC")
            response = predict_pb2.PredictResponse(
                model_spec=model_spec(request.model_spec.name, prediction.version, SIGNATURE_NAME))
            for name in request.output_filter or OUTPUT_NAMES:
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


class ModelServicer(prediction_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext,
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        return _answer(context, lambda: self.core.status(target_of(request.model_spec), "GRPC"))


def build_grpc_server(core: ServingCore, port: int, *, host: str = "0.0.0.0",
                      max_request_bytes: int, max_threads: int = 32) -> grpc.Server:
    """A started-later gRPC server on ``host:port`` (``ObjdetError`` if the port is taken)."""
    from objdet.errors import ObjdetError

    options = [("grpc.max_receive_message_length", max_request_bytes),
               ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_threads,
                                                    thread_name_prefix="grpc"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core), server)
    prediction_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        raise ObjdetError(f"--port {port}: cannot listen on {host}:{port}: {error}") from None
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
