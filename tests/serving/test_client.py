"""``objdet.serving.Client`` (REST and gRPC) and ``objdet detect --server``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from serving_inputs import jpeg_bytes, pixels_of, png_of

from objdet.cli.main import main
from objdet.errors import ObjdetError
from objdet.inference.inputs import decode_image_bytes
from objdet.serving import Client
from objdet.serving.errors import Code, ServingError


@pytest.fixture(params=["rest", "grpc"])
def client(request, server) -> Client:  # type: ignore[no-untyped-def]
    url = server.rest_url if request.param == "rest" else f"grpc://{server.grpc_target}"
    return Client(url, timeout=120)


def test_detect_equals_the_in_process_predictor(client: Client, predictor_for) -> None:  # type: ignore[no-untyped-def]
    predictor = predictor_for("encoded_image_string_tensor")
    data = jpeg_bytes("raccoon-1.jpg")
    found = client.detect("detector", data)
    expected = predictor.predict_pixels(decode_image_bytes(data))
    assert len(found) == len(expected) > 0 and found.image_size == expected.image_size
    np.testing.assert_allclose(found.boxes, expected.boxes, atol=1e-4 * max(expected.image_size))
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-4)
    np.testing.assert_array_equal(found.labels, expected.labels)


def test_pixels_status_metadata_and_errors(client: Client, pixels_predictor) -> None:  # type: ignore[no-untyped-def]
    predictor = pixels_predictor
    data = png_of(jpeg_bytes("raccoon-2.jpg"), (60, 44))
    [outputs, again] = client.predict("pixels", [pixels_of(data), data], version=1)  # array, bytes
    expected = predictor.predict_pixels(decode_image_bytes(data)).to_outputs(20)
    for found in (outputs, again):
        np.testing.assert_allclose(found["detection_scores"], expected["detection_scores"][0], atol=1e-4)
    assert client.status("pixels", 2)["model_version_status"][0]["state"] == "AVAILABLE"
    signature = client.metadata("detector")["metadata"]["signature_def"]["signature_def"]
    assert signature["serving_default"]["inputs"]["input_tensor"]["dtype"] == "DT_STRING"
    with pytest.raises(ServingError) as raised:
        client.predict("nope", [data])
    assert raised.value.code == Code.NOT_FOUND


def test_detect_cli_with_server(server, tmp_path, capsys, predictor_for) -> None:  # type: ignore[no-untyped-def]
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg_bytes("raccoon-1.jpg"))
    assert main(["detect", "--server", server.rest_url, "--model_name", "detector",
                 "--image", str(image), "--min_score", "0", "--output", str(tmp_path / "a.png")]) == 0
    [result] = json.loads(capsys.readouterr().out)
    expected = predictor_for("encoded_image_string_tensor").predict_pixels(
        decode_image_bytes(image.read_bytes()))
    assert result["num_detections"] == len(expected)
    assert result["detections"][0]["score"] == pytest.approx(float(expected.scores[0]), abs=1e-4)
    assert (tmp_path / "a.png").is_file()
    assert main(["detect", "--server", server.rest_url, "--model_name", "nope",
                 "--image", str(image)]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    with pytest.raises(ObjdetError, match="http://"):
        Client("localhost:8501")
