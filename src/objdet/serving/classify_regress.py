"""TF Serving's Classify, Regress and MultiInference, answered for objdet's signatures.

An objdet export has one signature, ``serving_default`` (method ``tensorflow/serving/predict``):
one input and four or more outputs (detection_boxes, detection_scores, ...). TF Serving,
with its default ``--enable_signature_method_name_check=false``, runs Classify on a signature
with one input ``inputs`` and one or two outputs among ``classes`` / ``scores``, and Regress
on one with one input ``inputs`` and one output ``outputs``; a detector's signature is
neither, so TF Serving answers these RPCs with an error, and so does objdet, with the same
codes and messages, checked in the same order (classification_service.cc, classifier.cc
``GetClassificationSignatureDef`` / ``PreProcessClassification``, regressor.cc,
multi_inference_helper.cc, multi_inference.cc):

1. Classify / Regress without a model_spec: INVALID_ARGUMENT ``Missing ModelSpec``;
2. the servable: an empty name is INVALID_ARGUMENT ``ModelSpec has no name specified.``, an
   unknown model, version or label NOT_FOUND as for Predict;
3. the signature: INVALID_ARGUMENT ``No signature was found with the name: X``, then the
   signature's shape, e.g. ``Expected one or two output Tensors, found 4`` (Classify) or
   ``Expected one output Tensor.`` (Regress);
4. MultiInference checks its tasks as ``TensorFlowMultiInferenceRunner::Infer`` does (one
   model name, no signature twice, method_name classify or regress) and each signature as 3.

With ``--enable_signature_method_name_check`` (``ServingCore.method_name_check``) step 3
starts with the signature's method_name: INVALID_ARGUMENT ``Expected classification
signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict``
(``regression``/``regress`` for Regress), which is what an objdet export then answers.

The input examples are never read: TF Serving checks the signature before it parses them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from google.protobuf import text_format

from objdet.export.signature import SIGNATURE_NAME
from objdet.serving.errors import Code, ServingError, invalid_argument, unavailable
from objdet.serving.messages import signature_def_map
from objdet.serving.protos import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    meta_graph_pb2,
    model_pb2,
    regression_pb2,
)
from objdet.serving.service import ServingCore, Target

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# TF Serving's signature_constants: the names a classify / regress signature must use
CLASSIFY_INPUTS, CLASSIFY_CLASSES, CLASSIFY_SCORES = "inputs", "classes", "scores"
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"


def target_of(spec: model_pb2.ModelSpec) -> Target:
    """The model, version or version label a ``ModelSpec`` asks for."""
    choice = spec.WhichOneof("version_choice")
    return Target(spec.name, spec.version.value if choice == "version" else None,
                  spec.version_label if choice == "version_label" else None)


def classify(core: ServingCore, request: classification_pb2.ClassificationRequest,
             entrypoint: str) -> NoReturn:
    """PredictionService.Classify (and REST ``:classify``): TF Serving's error for the
    requested signature (``ServingError``); an objdet signature is never a classifier's."""
    with _counted(core, request.model_spec.name, "classify", entrypoint):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        signatures = _signatures(core, request.model_spec)
        check_classification_signature(
            _named_signature(signatures, request.model_spec.signature_name),
            method_name_check=core.method_name_check)
        raise _not_served(CLASSIFY_METHOD)


def regress(core: ServingCore, request: regression_pb2.RegressionRequest,
            entrypoint: str) -> NoReturn:
    """PredictionService.Regress (and REST ``:regress``), as ``classify``."""
    with _counted(core, request.model_spec.name, "regress", entrypoint):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        signatures = _signatures(core, request.model_spec)
        check_regression_signature(
            _named_signature(signatures, request.model_spec.signature_name),
            method_name_check=core.method_name_check)
        raise _not_served(REGRESS_METHOD)


def multi_inference(core: ServingCore, request: inference_pb2.MultiInferenceRequest,
                    entrypoint: str) -> NoReturn:
    """PredictionService.MultiInference: the servable of the first task's model_spec, then
    every task checked in order (TF Serving's ``TensorFlowMultiInferenceRunner::Infer``)."""
    first = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
    with _counted(core, first.name, "multi_inference", entrypoint):
        signatures = _signatures(core, first)
        model_name = ""
        seen: set[str] = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if model_name and task.model_spec.name != model_name:
                raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access "
                                       "the same model name.")
            model_name = task.model_spec.name
            name = task.model_spec.signature_name or SIGNATURE_NAME
            if name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            if name not in signatures.signature_def:
                raise invalid_argument(f"Requested signature not found in model graph: {name}")
            if task.method_name == CLASSIFY_METHOD:
                check_classification_signature(signatures.signature_def[name],
                                               method_name_check=core.method_name_check)
            elif task.method_name == REGRESS_METHOD:
                check_regression_signature(signatures.signature_def[name],
                                           method_name_check=core.method_name_check)
            else:
                raise ServingError(Code.UNIMPLEMENTED,
                                   f"Unsupported signature method_name: {task.method_name}")
        raise _not_served("tensorflow/serving/classify or regress")


def check_classification_signature(signature: meta_graph_pb2.SignatureDef, *,
                                   method_name_check: bool = False) -> None:
    """TF Serving's ``PreProcessClassification``: ``ServingError`` unless ``signature`` is a
    classifier's (``method_name_check``: its --enable_signature_method_name_check)."""
    if method_name_check and signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument("Expected classification signature method_name to be "
                               f"{CLASSIFY_METHOD}. Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise invalid_argument("No classification inputs found in SignatureDef: "
                               f"{_debug_string(signature)}")
    if CLASSIFY_CLASSES not in signature.outputs and CLASSIFY_SCORES not in signature.outputs:
        raise invalid_argument("Expected classification signature outputs to contain at least "
                               f'one of "{CLASSIFY_CLASSES}" or "{CLASSIFY_SCORES}". Signature '
                               f"was: {_debug_string(signature)}")


def check_regression_signature(signature: meta_graph_pb2.SignatureDef, *,
                               method_name_check: bool = False) -> None:
    """TF Serving's ``PreProcessRegression``, as ``check_classification_signature``."""
    if method_name_check and signature.method_name != REGRESS_METHOD:
        raise invalid_argument("Expected regression signature method_name to be "
                               f"{REGRESS_METHOD}. Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise invalid_argument("No regression inputs found in SignatureDef: "
                               f"{_debug_string(signature)}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise invalid_argument("No regression outputs found in SignatureDef: "
                               f"{_debug_string(signature)}")


def _signatures(core: ServingCore, spec: model_pb2.ModelSpec,
                ) -> get_model_metadata_pb2.SignatureDefMap:
    """The signatures of the version ``spec`` names (TF Serving's ``GetServableHandle``)."""
    if not spec.name:
        raise invalid_argument("ModelSpec has no name specified.")
    return signature_def_map(core.signature(target_of(spec)))


def _named_signature(signatures: get_model_metadata_pb2.SignatureDefMap, name: str,
                     ) -> meta_graph_pb2.SignatureDef:
    name = name or SIGNATURE_NAME
    if name not in signatures.signature_def:
        raise invalid_argument(f"No signature was found with the name: {name}")
    return signatures.signature_def[name]


def _not_served(method: str) -> ServingError:
    # Past the checks only with a classifier's / regressor's signature, which no objdet
    # export has (every one has the detection outputs): refused rather than guessed at.
    return ServingError(Code.UNIMPLEMENTED, f"objdet serves detectors: no {method} signature")


def _debug_string(message: meta_graph_pb2.SignatureDef) -> str:
    return str(text_format.MessageToString(message))


@contextmanager
def _counted(core: ServingCore, model_name: str, api: str, entrypoint: str) -> Iterator[None]:
    """Counted in the request metrics by outcome, as Predict is; refused once draining."""
    start = time.perf_counter()
    status = "OK"
    try:
        if core.draining:
            raise unavailable("the server is shutting down")
        yield
    except ServingError as error:
        status = error.code_name
        raise
    finally:
        core.metrics.record_request(model_name, api, entrypoint, status,
                                    time.perf_counter() - start)
