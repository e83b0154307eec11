"""ModelService.HandleReloadConfigRequest against the real ``objdet serve`` of conftest.py (its
config is restored at the end): models added are loaded and removed ones unloaded while the
others keep serving (no failed request), and a config TF Serving refuses gets its code and
message and changes nothing."""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import grpc
import pytest
from google.protobuf import text_format
from server_process import ServerProcess
from serving_inputs import jpeg_bytes, pixels_of, png_of

from objdet.serving.protos import (
    model_management_pb2,
    model_server_config_pb2,
    prediction_service_pb2_grpc,
)

BODY = {"instances": [{"b64": base64.b64encode(jpeg_bytes("raccoon-1.jpg")).decode()}]}
PIXELS = {"instances": [pixels_of(png_of(jpeg_bytes("raccoon-1.jpg"), (32, 24))).tolist()]}
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def with_models(base: model_management_pb2.ReloadConfigRequest, *models: Mapping[str, object],
                drop: str = "") -> model_management_pb2.ReloadConfigRequest:
    """``base``'s config without model ``drop``, plus ``models`` (field name -> value)."""
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.extend(
        model for model in base.config.model_config_list.config if model.name != drop)
    for model in models:
        entry = request.config.model_config_list.config.add()
        for key, value in model.items():
            if key == "version_labels":
                entry.version_labels.update(value)  # type: ignore[call-overload]
            else:
                setattr(entry, key, value)
    return request


@pytest.fixture(scope="module")
def reloading(server: ServerProcess, model_root: Path):  # type: ignore[no-untyped-def]
    """The shared server, its ModelService stub and model root; the served config is put back
    afterwards (the models it lists were never unloaded: they stay listed in every reload)."""
    original = model_management_pb2.ReloadConfigRequest()
    text_format.Parse((model_root / "models.config").read_text(), original.config)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.ModelServiceStub(channel)
        yield server, stub, model_root, original
        assert stub.HandleReloadConfigRequest(original, timeout=120).status.error_code == 0


def states(server: ServerProcess, model: str) -> dict[int, str]:
    status, body = server.request("GET", f"/v1/models/{model}")
    assert status == 200, body
    return {int(entry["version"]): entry["state"] for entry in body["model_version_status"]}


class Traffic:
    """Predict requests to one model in a loop until the block ends; every answer must be 200."""

    def __init__(self, server: ServerProcess, model: str, body: object = BODY) -> None:
        self.server, self.model, self.sent, self.failures = server, model, 0, []  # type: ignore[var-annotated]
        self.body = body
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.server.post_json(f"/v1/models/{self.model}:predict", self.body)
            self.sent += 1
            if status != 200:
                self.failures.append((status, body))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self.sent > 0 and self.failures == [], self.failures[:3]


def test_refused_configs_get_tf_servings_errors_and_change_nothing(reloading) -> None:  # type: ignore[no-untyped-def]
    server, stub, root, served = reloading
    detector = {"name": "detector", "base_path": str(root / "detector"),
                "model_platform": "tensorflow"}
    pixels = {"name": "pixels", "base_path": str(root / "pixels"), "model_platform": "tensorflow"}
    custom = model_management_pb2.ReloadConfigRequest(
        config=model_server_config_pb2.ModelServerConfig())
    custom.config.custom_model_config.type_url = "x"
    not_supported = ("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                     "ModelConfigList is currently supported")
    cases = [
        (model_management_pb2.ReloadConfigRequest(), INVALID, not_supported),
        (custom, INVALID, not_supported),
        (with_models(served, detector), INVALID,
         "Illegal to list model detector multiple times in config list"),
        (with_models(served, {**detector, "base_path": "models/d"}, drop="detector"), INVALID,
         "Expected model detector to have an absolute path or URI; got base_path()=models/d"),
        (with_models(served, {**detector, "model_platform": "objdet"}, drop="detector"), INVALID,
         ("Illegal to change a model's platform. For model detector platform was tensorflow and "
         "new platform requested is objdet")),
        # the server runs with --allow_version_labels_for_unavailable_models: a label it has
        # may still not move to a version that is not available
        (with_models(served, {**pixels, "version_labels": {"stable": 7, "canary": 2}},
                     drop="pixels"),
         grpc.StatusCode.FAILED_PRECONDITION, ("Request to assign label to version 7 of model "
         "pixels, which is not currently available for inference")),
        (with_models(served, {**detector, "name": "q", "model_platform": "pytorch"}), INVALID,
         "Model q requests unsupported platform pytorch"),
        (with_models(served, {"name": "q", "base_path": str(root / "detector")}), INVALID,
         ("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
         "ModelServerConfig::model_platform.")),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub.HandleReloadConfigRequest(request, timeout=60)
        assert (raised.value.code(), raised.value.details()) == (code, message)
    assert states(server, "detector") == {1: "AVAILABLE"}
    assert states(server, "pixels") == {2: "AVAILABLE", 1: "AVAILABLE"}
    assert server.request("GET", "/v1/models/q")[0] == 404


def test_reload_adds_and_removes_models_while_serving(reloading, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, stub, root, served = reloading
    p = {"name": "p", "base_path": str(root / "detector"), "model_platform": "tensorflow"}
    with Traffic(server, "detector"):
        answer = stub.HandleReloadConfigRequest(with_models(served, p), timeout=120)
    assert (answer.status.error_code, answer.status.error_message) == (0, "")
    assert states(server, "p") == {1: "AVAILABLE"}
    assert server.post_json("/v1/models/p:predict", BODY)[0] == 200

    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "export.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    broken = {**p, "name": "broken", "base_path": str(tmp_path / "broken")}
    empty = {**p, "name": "empty", "base_path": str(tmp_path / "empty")}
    with pytest.raises(grpc.RpcError) as raised:
        stub.HandleReloadConfigRequest(with_models(served, p, empty, broken), timeout=120)
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    details = raised.value.details()
    assert details.startswith("2 model(s) did not become available: {{{name: broken version: 1} "
                              "due to error: UNKNOWN: "), details
    assert details.endswith(f"}}, {{{{name: empty}} due to error: NOT_FOUND: no version directory "
                            f"under {tmp_path / 'empty'}}}, }}"), details
    assert states(server, "broken") == {1: "END"}  # configured, with its error in the status

    with Traffic(server, "pixels", PIXELS):
        answer = stub.HandleReloadConfigRequest(with_models(served, p, drop="detector"),
                                                timeout=120)
    assert answer.status.error_code == 0
    assert server.post_json("/v1/models/detector:predict", BODY) == (
        404, {"error": "Servable not found for request: Latest(detector)"})
    assert states(server, "detector") == {1: "END"}  # unloaded; its status stays, as in TF Serving
    assert server.request("GET", "/v1/models/broken")[0] == 200
    assert states(server, "p") == {1: "AVAILABLE"}
