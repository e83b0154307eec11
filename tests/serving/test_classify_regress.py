"""Classify, Regress and MultiInference (gRPC) and REST :classify / :regress against the real
``objdet serve`` (the shared server of conftest.py): TF Serving's status codes and messages
for a detector's predict signature, checked in TF Serving's order; and the pieces they are
made of (the signature checks on a classifier's signature, the JSON body parser)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import wrappers_pb2

from objdet.serving.classify_regress import (
    check_classification_signature,
    check_regression_signature,
)
from objdet.serving.errors import ServingError
from objdet.serving.example_json import fill_request, pretty_json
from objdet.serving.protos import (
    classification_pb2,
    inference_pb2,
    meta_graph_pb2,
    model_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
FOUR_OUTPUTS = "Expected one or two output Tensors, found 4"


@pytest.fixture(scope="module")
def stub(server):  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def spec(name: str, **choice: object) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=name, **choice)  # type: ignore[arg-type]


def classification(model_spec: model_pb2.ModelSpec | None) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest(model_spec=model_spec)
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(1.0)
    return request


def task(name: str, method: str = "classify", **choice: object) -> inference_pb2.InferenceTask:
    return inference_pb2.InferenceTask(model_spec=spec(name, **choice),
                                       method_name=f"tensorflow/serving/{method}")


GRPC_CASES = [  # (method, request, code, TF Serving's message)
    ("Classify", classification(None), INVALID, "Missing ModelSpec"),
    ("Classify", classification(spec("", signature_name="x")), INVALID,
     "ModelSpec has no name specified."),
    ("Classify", classification(spec("nope")), NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ("Classify", classification(spec("detector", version=wrappers_pb2.Int64Value(value=9))),
     NOT_FOUND, "Servable not found for request: Specific(detector, 9)"),
    ("Classify", classification(spec("pixels", version_label="beta")), NOT_FOUND,
     "Unrecognized servable version label: beta"),
    ("Classify", classification(spec("detector", signature_name="other")), INVALID,
     "No signature was found with the name: other"),
    ("Classify", classification(spec("pixels", version_label="stable")), INVALID, FOUR_OUTPUTS),
    ("Classify", classification_pb2.ClassificationRequest(model_spec=spec("detector")), INVALID,
     FOUR_OUTPUTS),
    ("Regress", regression_pb2.RegressionRequest(), INVALID, "Missing ModelSpec"),
    ("Regress", regression_pb2.RegressionRequest(model_spec=spec("nope")), NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ("Regress", regression_pb2.RegressionRequest(model_spec=spec("detector")), INVALID,
     "Expected one output Tensor."),
    ("MultiInference", inference_pb2.MultiInferenceRequest(), INVALID,
     "ModelSpec has no name specified."),
    ("MultiInference", inference_pb2.MultiInferenceRequest(tasks=[task("nope")]), NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ("MultiInference", inference_pb2.MultiInferenceRequest(
        tasks=[task("detector", signature_name="x")]), INVALID,
     "Requested signature not found in model graph: x"),
    ("MultiInference", inference_pb2.MultiInferenceRequest(
        tasks=[task("detector", "predict")]), grpc.StatusCode.UNIMPLEMENTED,
     "Unsupported signature method_name: tensorflow/serving/predict"),
    ("MultiInference", inference_pb2.MultiInferenceRequest(
        tasks=[task("detector", "regress"), task("pixels")]), INVALID,
     "Expected one output Tensor."),
]


@pytest.mark.parametrize(("method", "request_", "code", "message"), GRPC_CASES,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(GRPC_CASES)])
def test_grpc_answers_tf_servings_errors(stub, method, request_, code, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        getattr(stub, method)(request_, timeout=30)
    assert (raised.value.code(), raised.value.details()) == (code, message)


REST_CASES = [  # (path, body, HTTP status, TF Serving's message)
    ("/v1/models/detector:classify", b'{"examples": [{"x": [1, 2]}]}', 400, FOUR_OUTPUTS),
    ("/v1/models/pixels/labels/canary:classify", b'{"examples": [{}]}', 400, FOUR_OUTPUTS),
    ("/v1/models/detector:regress", b'{"context": {"c": "a"}, "examples": [{"y": 0.5}]}', 400,
     "Expected one output Tensor."),
    ("/v1/models/detector:regress", b'{"signature_name": "x", "examples": [{}]}', 400,
     "No signature was found with the name: x"),
    ("/v1/models/nope:classify", b'{"examples": [{}]}', 404,
     "Servable not found for request: Latest(nope)"),
    ("/v1/models/detector/versions/9:regress", b'{"examples": [{}]}', 404,
     "Servable not found for request: Specific(detector, 9)"),
    ("/v1/models/pixels/labels/beta:classify", b'{"examples": [{}]}', 404,
     "Unrecognized servable version label: beta"),
    # the body is parsed before the model is looked up
    ("/v1/models/nope:classify", b'{"examples": []}', 400,
     'JSON Value: {\n    "examples": []\n} \'examples\' value is an empty array'),
    ("/v1/models/detector:regress", b'{"instances": [1]}', 400,
     ('JSON Value: {\n    "instances": [\n        1\n    ]\n} When method is classify, key '
     "'examples' is expected and was not found")),
    ("/v1/models/detector:classify", b'{"examples": [{"a": [1, "b"]}]}', 400,
     "Unexpected element type in feature: a expecting type: int64"),
    ("/v1/models/detector:classify", b'{"examples": [3]}', 400,
     "Example must be JSON object but got JSON Number"),
    ("/v1/models/detector:classify", b'{"examples": [{"a": {"b64": "%%"}}]}', 400,
     "Unable to base64 decode"),
    ("/v1/models/detector:classify", b"", 400, "JSON Parse error: The document is empty"),
    ("/v1/models/detector:classify", b'{"examples": [', 400,
     "JSON Parse error: Invalid value. at offset: 14"),
    ("/v1/models/detector:classify", b'{"examples": [{}] "x"}', 400,
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 18"),
    ("/v1/models/detector:fly", b'{"examples": [{}]}', 404,
     "Malformed request: POST /v1/models/detector:fly"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), REST_CASES,
                         ids=[f"{i}-{case[2]}" for i, case in enumerate(REST_CASES)])
def test_rest_answers_tf_servings_errors(server, path, body, status, message) -> None:  # type: ignore[no-untyped-def]
    assert server.request("POST", path, body) == (status, {"error": message})


def test_requests_are_counted_by_outcome(server) -> None:  # type: ignore[no-untyped-def]
    server.request("POST", "/v1/models/pixels:regress", b'{"examples": [{}]}')
    status, text = server.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert 'request_latency_count{API="regress",entrypoint="REST",model_name="pixels"}' in text
    assert ':tensorflow:serving:request_count{model_name="pixels",status="INVALID_ARGUMENT"}' in text


def classifier_signature(outputs: tuple[str, ...] = ("classes", "scores"),
                         method: str = "tensorflow/serving/predict") -> meta_graph_pb2.SignatureDef:
    """A TF2 Keras classifier's signature (predict method name, classify shape)."""
    signature = meta_graph_pb2.SignatureDef(method_name=method)
    signature.inputs["inputs"].name = "serving_default_inputs:0"
    for name in outputs:
        signature.outputs[name].name = f"StatefulPartitionedCall:{name}"
    return signature


def test_signature_checks_accept_a_classifiers_and_name_the_wrong_part() -> None:
    check_classification_signature(classifier_signature())
    check_classification_signature(classifier_signature(("scores",)))
    check_regression_signature(classifier_signature(("outputs",)))
    with pytest.raises(ServingError, match="^Expected classification signature method_name to be "
                       "tensorflow/serving/classify. Was: tensorflow/serving/predict$"):
        check_classification_signature(classifier_signature(), method_name_check=True)
    check_classification_signature(classifier_signature(method="tensorflow/serving/classify"),
                                   method_name_check=True)
    with pytest.raises(ServingError, match='^Expected classification signature outputs to '
                       'contain at least one of "classes" or "scores". Signature was: inputs {'):
        check_classification_signature(classifier_signature(("probabilities",)))
    with pytest.raises(ServingError, match="^No regression outputs found in SignatureDef: "):
        check_regression_signature(classifier_signature(("classes",)))


def test_json_body_becomes_tf_servings_request() -> None:
    body = (b'{"signature_name": "s", "context": {"country": "ca", "flag": true}, "examples": '
            b'[{"age": [1, -2], "height": 1.5, "photo": {"b64": "aGk="}}, {"empty": []}]}')
    request = fill_request(body, classification_pb2.ClassificationRequest())
    assert request.model_spec.signature_name == "s"
    inputs = request.input.example_list_with_context
    context = inputs.context.features.feature
    assert list(context["country"].bytes_list.value) == [b"ca"]
    assert list(context["flag"].int64_list.value) == [1]
    first, second = (example.features.feature for example in inputs.examples)
    assert list(first["age"].int64_list.value) == [1, -2]
    assert list(first["height"].float_list.value) == [1.5]
    assert list(first["photo"].bytes_list.value) == [b"hi"]
    assert second["empty"].WhichOneof("kind") is None
    with pytest.raises(ServingError, match="has uint64 element. Only int64 is supported."):
        fill_request(b'{"examples": [{"a": 18446744073709551615}]}',
                     regression_pb2.RegressionRequest())
    with pytest.raises(ServingError, match="^Cannot convert JSON value: 1e\\+39 to float without"):
        fill_request(b'{"examples": [{"a": 1e39}]}', regression_pb2.RegressionRequest())


def test_quoted_json_is_printed_as_rapidjson_prints_it() -> None:
    assert pretty_json({"a": [1, 2.5, 1e21, 1e-7, 100.0, None, True], "b": {}, "c": "x\u001f"}) == (
        '{\n    "a": [\n        1,\n        2.5,\n        1e21,\n        1e-7,\n        100.0,\n'
        '        null,\n        true\n    ],\n    "b": {},\n    "c": "x\\u001F"\n}')
