"""The vendored Classify / Regress / MultiInference / ReloadConfig messages are TF Serving's on
the wire: bytes written by the real tensorflow-serving-api (tests/fixtures/serving_rpcs/
make_messages.py) parse to the values it set, with no field left unknown."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.message import Message

from objdet.serving.protos import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    prediction_service_pb2,
    regression_pb2,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "serving_rpcs"
TYPES: dict[str, type[Message]] = {
    "ClassificationRequest": classification_pb2.ClassificationRequest,
    "ClassificationResponse": classification_pb2.ClassificationResponse,
    "RegressionRequest": regression_pb2.RegressionRequest,
    "MultiInferenceRequest": inference_pb2.MultiInferenceRequest,
    "MultiInferenceResponse": inference_pb2.MultiInferenceResponse,
    "ReloadConfigRequest": model_management_pb2.ReloadConfigRequest,
    "ReloadConfigResponse": model_management_pb2.ReloadConfigResponse,
}


def parsed(name: str) -> Message:
    data = (FIXTURES / f"{name}.bin").read_bytes()
    message = TYPES[name].FromString(data)
    # map entries may come back in another order: equal messages, not equal bytes
    assert TYPES[name].FromString(message.SerializeToString()) == message, name
    message.DiscardUnknownFields()  # (recursively): what objdet's copy does not declare
    assert len(message.SerializeToString()) == len(data), f"{name}: fields objdet lacks"
    return message


def test_every_fixture_round_trips() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.bin")) == sorted(TYPES)
    for name in TYPES:
        parsed(name)


def test_values_set_by_tensorflow_serving_api() -> None:
    classify = parsed("ClassificationRequest")
    assert isinstance(classify, classification_pb2.ClassificationRequest)
    assert (classify.model_spec.name, classify.model_spec.version_label,
            classify.model_spec.signature_name) == ("detector", "stable", "classify_x")
    inputs = classify.input.example_list_with_context
    assert list(inputs.context.features.feature["country"].bytes_list.value) == [b"ca"]
    [example] = inputs.examples
    assert list(example.features.feature["age"].int64_list.value) == [1, -2**40]
    assert list(example.features.feature["height"].float_list.value) == [1.5]
    response = parsed("ClassificationResponse")
    assert isinstance(response, classification_pb2.ClassificationResponse)
    [[label]] = [list(c.classes) for c in response.result.classifications]
    assert (label.label, label.score, response.model_spec.version.value) == ("cat", 0.75, 4)
    multi = parsed("MultiInferenceRequest")
    assert isinstance(multi, inference_pb2.MultiInferenceRequest)
    assert multi.tasks[0].method_name == "tensorflow/serving/regress"
    results = parsed("MultiInferenceResponse")
    assert isinstance(results, inference_pb2.MultiInferenceResponse)
    assert results.results[0].regression_result.regressions[0].value == 0.5
    reload = parsed("ReloadConfigRequest")
    assert isinstance(reload, model_management_pb2.ReloadConfigRequest)
    [config] = reload.config.model_config_list.config
    assert (config.name, config.base_path, config.model_platform) == (
        "detector", "/models/detector", "tensorflow")
    assert list(config.model_version_policy.specific.versions) == [1, 3]
    assert dict(config.version_labels) == {"stable": 1}
    answer = parsed("ReloadConfigResponse")
    assert isinstance(answer, model_management_pb2.ReloadConfigResponse)
    assert (answer.status.error_code, answer.status.error_message) == (9, "message")
    assert (answer.metric[0].name, answer.metric[0].int64_value_increase) == ("m", 3)


def test_services_have_tf_servings_methods() -> None:
    services = prediction_service_pb2.DESCRIPTOR.services_by_name
    methods = {name: {m.name: (m.input_type.full_name, m.output_type.full_name)
                      for m in service.methods} for name, service in services.items()}
    assert methods == {
        "PredictionService": {
            "Classify": ("tensorflow.serving.ClassificationRequest",
                         "tensorflow.serving.ClassificationResponse"),
            "Regress": ("tensorflow.serving.RegressionRequest",
                        "tensorflow.serving.RegressionResponse"),
            "Predict": ("tensorflow.serving.PredictRequest", "tensorflow.serving.PredictResponse"),
            "MultiInference": ("tensorflow.serving.MultiInferenceRequest",
                               "tensorflow.serving.MultiInferenceResponse"),
            "GetModelMetadata": ("tensorflow.serving.GetModelMetadataRequest",
                                 "tensorflow.serving.GetModelMetadataResponse")},
        "ModelService": {
            "GetModelStatus": ("tensorflow.serving.GetModelStatusRequest",
                               "tensorflow.serving.GetModelStatusResponse"),
            "HandleReloadConfigRequest": ("tensorflow.serving.ReloadConfigRequest",
                                          "tensorflow.serving.ReloadConfigResponse")}}
    assert services["PredictionService"].full_name == "tensorflow.serving.PredictionService"
