"""TF Serving's REST API against a real ``objdet serve`` (the shared session server)."""

from __future__ import annotations

import base64
import http.client

import numpy as np
import pytest
from serving_inputs import MAX_REQUEST_BYTES, jpeg_bytes, pixels_of, png_of

from objdet.inference.inputs import decode_image_bytes

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
IMAGES = ("raccoon-1.jpg", "raccoon-10.jpg", "raccoon-100.jpg")


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def expected_outputs(predictor, data: bytes) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """The in-process Predictor's outputs for one encoded image (batch dimension dropped)."""
    outputs = predictor.predict_pixels(decode_image_bytes(data)).to_outputs(predictor.max_detections)
    return {name: value[0] for name, value in outputs.items()}


def assert_outputs_equal(found: dict, expected: dict[str, np.ndarray]) -> None:  # type: ignore[type-arg]
    assert sorted(found) == sorted(OUTPUTS)
    assert float(found["num_detections"]) == float(expected["num_detections"]) > 0
    for name in OUTPUTS:
        np.testing.assert_allclose(np.asarray(found[name], np.float32), expected[name], atol=1e-4)


def test_model_status_lists_versions_and_ignores_non_numeric_folders(server) -> None:  # type: ignore[no-untyped-def]
    status, body = server.request("GET", "/v1/models/detector")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    status, body = server.request("GET", "/v1/models/pixels")
    assert [entry["version"] for entry in body["model_version_status"]] == ["2", "1"]
    status, body = server.request("GET", "/v1/models/pixels/labels/stable")
    assert status == 200 and [e["version"] for e in body["model_version_status"]] == ["1"]
    status, body = server.request("GET", "/v1/models/pixels/versions/2")
    assert status == 200 and [e["version"] for e in body["model_version_status"]] == ["2"]


def test_metadata_prints_the_signature_def_as_tf_serving(server) -> None:  # type: ignore[no-untyped-def]
    status, body = server.request("GET", "/v1/models/detector/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "detector", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["input_tensor"]["dtype"] == "DT_STRING"
    assert signature["inputs"]["input_tensor"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    outputs = signature["outputs"]
    assert sorted(outputs) == sorted(OUTPUTS)
    assert [d["size"] for d in outputs["detection_boxes"]["tensor_shape"]["dim"]] == ["-1", "20", "4"]
    assert outputs["detection_scores"]["dtype"] == "DT_FLOAT"
    _, pixels = server.request("GET", "/v1/models/pixels/labels/canary/metadata")
    assert pixels["model_spec"]["version"] == "2"
    pixel_input = pixels["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert pixel_input["input_tensor"]["dtype"] == "DT_UINT8"


def test_row_format_b64_jpeg_and_png_several_images(server, predictor_for) -> None:  # type: ignore[no-untyped-def]
    predictor = predictor_for("encoded_image_string_tensor")
    images = [jpeg_bytes(name) for name in IMAGES] + [png_of(jpeg_bytes(IMAGES[0]), (90, 70))]
    instances = [b64(images[0]), {"input_tensor": b64(images[1])}, b64(images[2]), b64(images[3])]
    status, body = server.post_json("/v1/models/detector:predict",
                                    {"signature_name": "serving_default", "instances": instances})
    assert status == 200, body
    assert len(body["predictions"]) == 4
    for prediction, data in zip(body["predictions"], images):
        assert_outputs_equal(prediction, expected_outputs(predictor, data))


def test_columnar_format_gives_outputs_per_name(server, predictor_for) -> None:  # type: ignore[no-untyped-def]
    predictor = predictor_for("encoded_image_string_tensor")
    images = [jpeg_bytes(name) for name in IMAGES[:2]]
    status, body = server.post_json("/v1/models/detector/versions/1:predict",
                                     {"inputs": {"input_tensor": [b64(data) for data in images]}})
    assert status == 200, body
    outputs = body["outputs"]
    assert np.asarray(outputs["detection_boxes"]).shape == (2, 20, 4)
    for index, data in enumerate(images):
        assert_outputs_equal({name: outputs[name][index] for name in OUTPUTS},
                             expected_outputs(predictor, data))
    status, single = server.post_json("/v1/models/detector:predict", {"inputs": [b64(images[0])]})
    assert status == 200 and single["outputs"]["num_detections"] == outputs["num_detections"][:1]


def test_image_tensor_instances_of_different_sizes(server, pixels_predictor) -> None:  # type: ignore[no-untyped-def]
    predictor = pixels_predictor
    small = png_of(jpeg_bytes(IMAGES[0]), (40, 30))
    other = png_of(jpeg_bytes(IMAGES[1]), (36, 52))
    instances = [pixels_of(small).tolist(), {"input_tensor": pixels_of(other).tolist()}]
    status, body = server.post_json("/v1/models/pixels/labels/stable:predict", {"instances": instances})
    assert status == 200, body
    for prediction, data in zip(body["predictions"], (small, other)):
        assert_outputs_equal(prediction, expected_outputs(predictor, data))
    status, body = server.post_json("/v1/models/pixels:predict",
                                    {"inputs": [pixels_of(small).tolist()] * 2})
    assert status == 200 and len(body["outputs"]["num_detections"]) == 2


BAD_REQUESTS = [
    # (path, raw body, status, words in the error)
    ("/v1/models/nope:predict", b'{"instances": []}', 404, "nope"),
    ("/v1/models/nope", None, 404, "nope"),
    ("/v1/models/detector/versions/7:predict", b'{"instances": [{"b64": "AA=="}]}', 404, "7"),
    ("/v1/models/detector/versions/7", None, 404, "7"),
    ("/v1/models/pixels/labels/beta:predict", b'{"instances": [[[[1, 2, 3]]]]}', 404, "beta"),
    ("/v1/models/pixels/labels/beta", None, 404, "beta"),
    ("/v1/models/detector:predict", b'{"instances": [', 400, "JSON Parse error"),
    ("/v1/models/detector:predict", b'[1, 2]', 400, "not a JSON object"),
    ("/v1/models/detector:predict", b'{"instance": []}', 400, "Missing 'inputs' or 'instances'"),
    ("/v1/models/detector:predict", b'{"instances": [], "inputs": []}', 400, "only one of"),
    ("/v1/models/detector:predict", b'{"instances": [{"b64": "@@not base64@@"}]}', 400, "base64"),
    ("/v1/models/detector:predict", b'{"instances": [{"b64": "aGVsbG8="}]}', 400, "image"),
    ("/v1/models/detector:predict", b'{"instances": [[[[1, 2, 3]]]]}', 400, "DT_STRING"),
    ("/v1/models/detector:predict", b'{"signature_name": "x", "instances": []}', 400, '"x"'),
    ("/v1/models/detector:predict", b'{"instances": [{"images": {"b64": "AA=="}}]}', 400, "images"),
    ("/v1/models/pixels:predict", b'{"instances": [[[[1.5, 2, 3]]]]}', 400, "uint8"),
    ("/v1/models/pixels:predict", b'{"instances": [[[1, 2, 3, 4]]]}', 400, "[H, W, 3]"),
    ("/v1/models/pixels:predict", b'{"instances": [[[[1, 2, 300]]]]}', 400, "0..255"),
    ("/v1/models/pixels:predict", b'{"instances": [[[[1, 2, 3]], [[1, 2]]]]}', 400, "rectangular"),
    ("/v1/models/pixels:predict", b'{"inputs": [[1, 2, 3]]}', 400, "[B, H, W, 3]"),
    ("/v1/models/pixels:predict", b'{"instances": [{"b64": "AA=="}]}', 400, "DT_UINT8"),
    ("/v1/models/detector:classify", b'{"examples": []}', 400, "empty array"),
    ("/v2/models/detector", None, 404, "Malformed request"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS,
                         ids=[f"{i}-{row[2]}" for i, row in enumerate(BAD_REQUESTS)])
def test_bad_requests_get_tf_serving_errors_and_the_server_keeps_serving(  # type: ignore[no-untyped-def]
        server, path, body, status, words) -> None:
    found, answer = server.request("POST" if body is not None else "GET", path, body)
    assert found == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    assert words in answer["error"], answer
    ok, _ = server.post_json("/v1/models/detector:predict", {"instances": [b64(jpeg_bytes(IMAGES[0]))]})
    assert ok == 200


def test_oversized_body_is_413(server) -> None:  # type: ignore[no-untyped-def]
    body = b'{"instances": [{"b64": "' + b"A" * MAX_REQUEST_BYTES + b'"}]}'
    status, answer = server.request("POST", "/v1/models/detector:predict", body)
    assert status == 413 and "max_request_bytes" in answer["error"]
    chunks = iter([body[:1000], body[1000:]])  # chunked: no Content-Length to check first
    status, answer = server.request("POST", "/v1/models/detector:predict", chunks)  # type: ignore[arg-type]
    assert status == 413
    assert server.request("GET", "/v1/models/detector")[0] == 200


def test_readiness_and_prometheus_metrics(server) -> None:  # type: ignore[no-untyped-def]
    assert server.request("GET", "/v1/ready") == (200, {"ready": True})
    server.post_json("/v1/models/detector:predict", {"instances": [b64(jpeg_bytes(IMAGES[0]))]})
    server.request("GET", "/v1/models/nope")
    status, text = server.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert ':tensorflow:serving:request_count{model_name="detector",status="OK"}' in text
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"}' in text
    assert ('request_latency_bucket{API="predict",entrypoint="REST",model_name="detector",'
            'le="+Inf"}') in text


def test_cors_support_and_ignored_flags_logged(server) -> None:  # type: ignore[no-untyped-def]
    """--rest_api_enable_cors_support: preflights answered, headers on every response."""
    status, _ = server.request("OPTIONS", "/v1/models/detector:predict",
                               headers={"Origin": "http://app.example",
                                        "Access-Control-Request-Method": "POST"})
    assert status == 204
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request("GET", "/v1/models/nope")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 404  # errors carry them too
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert response.getheader("Access-Control-Allow-Methods") == "POST, GET"
    assert response.getheader("Access-Control-Allow-Headers") == "Content-Type"
    assert "--per_process_gpu_memory_fraction=0.5 ignored" in server.log()
