"""The vendored TF Serving protos: generated code matches the .proto files, and the names and
field numbers on the wire are TF Serving's (so its clients work unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from objdet.serving.protos import (
    generate,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2,
    tensor_pb2,
)


def test_generated_modules_match_the_proto_files(tmp_path: Path) -> None:
    generated = generate.generate(tmp_path)
    assert len(generated) >= 19
    for path in generated:
        committed = generate.PROTOS_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: regenerate"


def test_service_paths_and_wire_numbers_are_tf_servings() -> None:
    services = prediction_service_pb2.DESCRIPTOR.services_by_name
    assert services["PredictionService"].full_name == "tensorflow.serving.PredictionService"
    assert [m.name for m in services["PredictionService"].methods] == [
        "Classify", "Regress", "Predict", "MultiInference", "GetModelMetadata"]
    assert services["ModelService"].full_name == "tensorflow.serving.ModelService"
    request = predict_pb2.PredictRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "model_spec": 1, "inputs": 2, "output_filter": 3}
    tensor = tensor_pb2.TensorProto.DESCRIPTOR
    assert tensor.full_name == "tensorflow.TensorProto"
    numbers = {f.name: f.number for f in tensor.fields}
    assert numbers["dtype"] == 1 and numbers["tensor_shape"] == 2 and numbers["tensor_content"] == 4
    assert numbers["int_val"] == 7 and numbers["string_val"] == 8 and numbers["float_val"] == 5
    assert tensor_pb2.DT_UINT8 == 4 and tensor_pb2.DT_STRING == 7
    status = get_model_status_pb2.ModelVersionStatus
    assert status.AVAILABLE == 30 and status.END == 50


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "serving"


def test_messages_serialized_by_tensorflow_serving_api_parse_the_same() -> None:
    """Bytes written by the real tensorflow-serving-api (make_tf_serving_messages.py)."""
    from objdet.serving.protos import get_model_metadata_pb2

    request = predict_pb2.PredictRequest.FromString(
        (FIXTURES / "predict_request_string.bin").read_bytes())
    assert request.model_spec.name == "detector" and request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "serving_default"
    tensor = request.inputs["input_tensor"]
    assert tensor.dtype == tensor_pb2.DT_STRING
    assert list(tensor.string_val) == [b"\xff\xd8jpeg", b"second"]
    assert [d.size for d in tensor.tensor_shape.dim] == [2]
    assert list(request.output_filter) == ["detection_boxes"]

    request = predict_pb2.PredictRequest.FromString(
        (FIXTURES / "predict_request_uint8.bin").read_bytes())
    assert request.model_spec.version_label == "stable"
    tensor = request.inputs["input_tensor"]
    assert tensor.dtype == tensor_pb2.DT_UINT8
    assert [d.size for d in tensor.tensor_shape.dim] == [1, 2, 2, 3]
    assert tensor.tensor_content == bytes(range(12))

    response = predict_pb2.PredictResponse.FromString((FIXTURES / "predict_response.bin").read_bytes())
    numbers = response.outputs["num_detections"]
    assert response.model_spec.version.value == 3
    assert numbers.dtype == tensor_pb2.DT_FLOAT and [d.size for d in numbers.tensor_shape.dim] == [2]
    assert list(numbers.float_val) == [2.0, 5.0] or len(numbers.tensor_content) == 8

    status = get_model_status_pb2.GetModelStatusResponse.FromString(
        (FIXTURES / "get_model_status_response.bin").read_bytes())
    [entry] = status.model_version_status
    assert (entry.version, entry.state) == (3, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    assert (entry.status.error_code, entry.status.error_message) == (5, "message")

    metadata = get_model_metadata_pb2.GetModelMetadataRequest.FromString(
        (FIXTURES / "get_model_metadata_request.bin").read_bytes())
    assert metadata.model_spec.name == "detector" and list(metadata.metadata_field) == ["signature_def"]
    for path in FIXTURES.glob("*.bin"):  # nothing TF Serving wrote is unknown to the copies
        message_type: Any = {"predict_request": predict_pb2.PredictRequest,
                        "predict_response": predict_pb2.PredictResponse,
                        "get_model_status_response": get_model_status_pb2.GetModelStatusResponse,
                        "get_model_metadata_request": get_model_metadata_pb2.GetModelMetadataRequest,
                        }[path.stem.removesuffix("_string").removesuffix("_uint8")]
        assert message_type.FromString(path.read_bytes()).SerializeToString() == path.read_bytes()
