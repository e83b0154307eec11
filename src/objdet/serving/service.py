"""``ServingCore``: what both front ends (REST and gRPC) do for a request.

It resolves the model version, runs the prediction, builds TF Serving's messages, counts
the request in the metrics, and refuses new work with UNAVAILABLE once shutdown began.
Errors are ``ServingError``s with TF Serving's codes; an unexpected exception becomes
INTERNAL with its one-line message (the server keeps serving).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from objdet.errors import ObjdetError
from objdet.export.signature import SIGNATURE_NAME
from objdet.serving.errors import Code, ServingError, invalid_argument, unavailable
from objdet.serving.manager import ModelManager
from objdet.serving.messages import (
    PREDICT_METHOD,
    metadata_response,
    signature_def_map,
    status_response,
)
from objdet.serving.metrics import Metrics
from objdet.serving.protos import get_model_metadata_pb2, get_model_status_pb2
from objdet.serving.rest_codec import batched_outputs
from objdet.serving.servable import SignatureInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """The model a request names: a version, a label, or (neither) the latest."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass
class Prediction:
    version: int
    outputs: dict[str, np.ndarray]  # OD API outputs with a batch dimension


class ServingCore:
    def __init__(self, manager: ModelManager, metrics: Metrics, *,
                 method_name_check: bool = False) -> None:
        """``method_name_check``: TF Serving's --enable_signature_method_name_check."""
        self.manager = manager
        self.metrics = metrics
        self.method_name_check = method_name_check
        self.draining = False

    def signature(self, target: Target) -> SignatureInfo:
        """The input type the target version expects (to decode the request with)."""
        with self._errors():
            return self.manager.resolve(target.name, target.version, target.label).servable.signature

    def predict(self, target: Target, decode: Callable[[SignatureInfo], list[torch.Tensor]],
                entrypoint: str) -> Prediction:
        """``decode`` turns the request into ``uint8 [3, H, W]`` images for the signature of
        the version that will run them (resolved once, so a reload in between is harmless)."""
        with self._counted(target, "predict", entrypoint):
            loaded = self.manager.resolve(target.name, target.version, target.label)
            signature = loaded.servable.signature
            if self.method_name_check:
                check_prediction_method(_signature_method(signature))
            images = decode(signature)
            if not images:
                raise invalid_argument("the request holds no image")
            detections = loaded.predict(images)
            return Prediction(loaded.servable.version,
                              batched_outputs(detections, signature.max_detections))

    def metadata(self, target: Target, entrypoint: str,
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        with self._counted(target, "metadata", entrypoint):
            loaded = self.manager.resolve(target.name, target.version, target.label)
            return metadata_response(target.name, loaded.servable.version, loaded.servable.signature)

    def status(self, target: Target, entrypoint: str) -> get_model_status_pb2.GetModelStatusResponse:
        with self._counted(target, "status", entrypoint):
            return status_response(self.manager.statuses(target.name, target.version, target.label))

    @contextmanager
    def _counted(self, target: Target, api: str, entrypoint: str) -> Iterator[None]:
        start = time.perf_counter()
        status = "OK"
        try:
            if self.draining:
                raise unavailable("the server is shutting down")
            with self._errors():
                yield
        except ServingError as error:
            status = error.code_name
            raise
        finally:
            self.metrics.record_request(target.name, api, entrypoint, status,
                                        time.perf_counter() - start)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Every failure as a ``ServingError``: objdet's input errors are INVALID_ARGUMENT."""
        try:
            yield
        except ServingError:
            raise
        except ObjdetError as error:
            raise invalid_argument(str(error)) from None
        except Exception as error:
            logger.exception("request failed")
            raise ServingError(Code.INTERNAL, f"{type(error).__name__}: {error}") from None


PREDICTION_METHODS = (PREDICT_METHOD, "tensorflow/serving/classify", "tensorflow/serving/regress")


@functools.lru_cache(maxsize=64)
def _signature_method(signature: SignatureInfo) -> str:
    """The method_name of ``signature``'s serving_default (built once per signature)."""
    return str(signature_def_map(signature).signature_def[SIGNATURE_NAME].method_name)


def check_prediction_method(method: str) -> None:
    """TF Serving's Predict with --enable_signature_method_name_check (predict_util.cc
    ``VerifySignature``): INTERNAL unless the signature's ``method`` is predict, classify or
    regress (an objdet export's is always predict)."""
    if method not in PREDICTION_METHODS:
        raise ServingError(Code.INTERNAL, "Expected prediction signature method_name to be one "
                           f"of {{{', '.join(PREDICTION_METHODS)}}}. Was: {method}")
