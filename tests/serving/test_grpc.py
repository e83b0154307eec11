"""TF Serving's gRPC API (tensorflow.serving.PredictionService / ModelService) against a real
``objdet serve``, with TF Serving's messages built as a tensorflow-serving-api client does."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import torch
from google.protobuf import wrappers_pb2
from serving_inputs import jpeg_bytes, pixels_of, png_of

from objdet.inference.inputs import decode_image_bytes
from objdet.serving.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
)

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


@pytest.fixture(scope="module")
def channel(server):  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server.grpc_target) as opened:
        yield opened


def string_request(model: str, images: list[bytes], **spec: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model, **spec))
    tensor = request.inputs["input_tensor"]
    tensor.dtype = tensor_pb2.DT_STRING
    tensor.tensor_shape.dim.add(size=len(images))
    tensor.string_val.extend(images)
    return request


def uint8_request(model: str, batch: np.ndarray, content: bool = True) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model))
    tensor = request.inputs["input_tensor"]
    tensor.dtype = tensor_pb2.DT_UINT8
    for size in batch.shape:
        tensor.tensor_shape.dim.add(size=size)
    if content:
        tensor.tensor_content = batch.tobytes()
    else:
        tensor.int_val.extend(batch.ravel().tolist())
    return request


def as_array(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    assert tensor.dtype == tensor_pb2.DT_FLOAT
    return np.asarray(tensor.float_val, np.float32).reshape([d.size for d in tensor.tensor_shape.dim])


def expected(predictor, pixels) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return predictor.predict_pixels(pixels).to_outputs(predictor.max_detections)


def test_predict_encoded_images_in_one_request(channel, predictor_for) -> None:  # type: ignore[no-untyped-def]
    predictor = predictor_for("encoded_image_string_tensor")
    images = [jpeg_bytes("raccoon-1.jpg"), png_of(jpeg_bytes("raccoon-10.jpg"), (64, 48))]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(string_request("detector", images, signature_name="serving_default"),
                            timeout=120)
    assert response.model_spec.name == "detector" and response.model_spec.version.value == 1
    assert sorted(response.outputs) == sorted(OUTPUTS)
    assert as_array(response.outputs["detection_boxes"]).shape == (2, 20, 4)
    for index, data in enumerate(images):
        reference = expected(predictor, decode_image_bytes(data))
        for name in OUTPUTS:
            np.testing.assert_allclose(as_array(response.outputs[name])[index], reference[name][0],
                                       atol=1e-4)


@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "int_val"])
def test_predict_uint8_batch_by_version(channel, pixels_predictor, content: bool) -> None:  # type: ignore[no-untyped-def]
    predictor = pixels_predictor
    batch = np.stack([pixels_of(png_of(jpeg_bytes(name), (50, 40)))
                      for name in ("raccoon-1.jpg", "raccoon-2.jpg", "raccoon-3.jpg")])
    request = uint8_request("pixels", batch, content)
    request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=2))
    request.output_filter.extend(["detection_scores", "num_detections"])
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=120)
    assert response.model_spec.version.value == 2
    assert sorted(response.outputs) == ["detection_scores", "num_detections"]
    for index, image in enumerate(batch):
        reference = expected(predictor, torch.from_numpy(image).permute(2, 0, 1))
        np.testing.assert_allclose(as_array(response.outputs["detection_scores"])[index],
                                   reference["detection_scores"][0], atol=1e-4)


def test_metadata_and_status(channel) -> None:  # type: ignore[no-untyped-def]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_pb2.ModelSpec(name="pixels", version_label="stable"),
        metadata_field=["signature_def"])
    response = stub.GetModelMetadata(request, timeout=120)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.inputs["input_tensor"].dtype == tensor_pb2.DT_UINT8
    assert [d.size for d in signature.inputs["input_tensor"].tensor_shape.dim] == [-1, -1, -1, 3]
    model_stub = prediction_service_pb2_grpc.ModelServiceStub(channel)
    status = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name="pixels")), timeout=120)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [
        (2, available, 0), (1, available, 0)]


def bad_uint8() -> predict_pb2.PredictRequest:
    request = uint8_request("pixels", np.zeros((1, 4, 4, 3), np.uint8))
    request.inputs["input_tensor"].tensor_shape.dim[1].size = 5  # shape no longer matches content
    return request


def float_request() -> predict_pb2.PredictRequest:
    request = uint8_request("pixels", np.zeros((1, 4, 4, 3), np.uint8))
    request.inputs["input_tensor"].dtype = tensor_pb2.DT_FLOAT
    return request


BAD = [
    (string_request("nope", [b"x"]), grpc.StatusCode.NOT_FOUND),
    (string_request("detector", [b"x"], version=wrappers_pb2.Int64Value(value=9)),
     grpc.StatusCode.NOT_FOUND),
    (string_request("pixels", [b"x"], version_label="beta"), grpc.StatusCode.NOT_FOUND),
    (string_request("detector", [b"not an image"]), grpc.StatusCode.INVALID_ARGUMENT),
    (string_request("detector", []), grpc.StatusCode.INVALID_ARGUMENT),
    (string_request("pixels", [b"x"]), grpc.StatusCode.INVALID_ARGUMENT),
    (string_request("detector", [b"x"], signature_name="other"), grpc.StatusCode.INVALID_ARGUMENT),
    (bad_uint8(), grpc.StatusCode.INVALID_ARGUMENT),
    (float_request(), grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize(("request_", "code"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_errors_have_tf_serving_status_codes(channel, request_, code) -> None:  # type: ignore[no-untyped-def]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request_, timeout=120)
    assert raised.value.code() == code, raised.value.details()
    assert raised.value.details()
    ok = stub.Predict(string_request("detector", [jpeg_bytes("raccoon-1.jpg")]), timeout=120)
    assert ok.outputs["num_detections"].float_val[0] > 0


def test_oversized_message_is_resource_exhausted(channel) -> None:  # type: ignore[no-untyped-def]
    from serving_inputs import MAX_REQUEST_BYTES

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(string_request("detector", [b"\0" * MAX_REQUEST_BYTES]), timeout=120)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = prediction_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="detector")))
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_grpc_on_the_unix_socket(server, model_root) -> None:  # type: ignore[no-untyped-def]
    """--grpc_socket_path: the same services on a UNIX socket."""
    with grpc.insecure_channel(f"unix:{model_root / 'grpc.sock'}") as channel:
        stub = prediction_service_pb2_grpc.ModelServiceStub(channel)
        response = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name="detector")), timeout=60)
    assert [status.version for status in response.model_version_status] == [1]
