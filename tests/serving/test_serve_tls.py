"""--ssl_config_file (TLS on the gRPC listeners, as TF Serving) and
--enable_grpc_healthcheck_service (grpc.health.v1): a real ``objdet serve`` with client_verify
answers a client holding a certificate signed by custom_ca and refuses plain-text clients
and clients without a certificate; its REST port stays plain HTTP. An in-process server
without client_verify shows the health status following the models' readiness."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from objdet_process import free_port
from server_process import ServerProcess
from serving_inputs import jpeg_bytes
from tls_certs import Certificates, make_certificates

from objdet.errors import ObjdetError
from objdet.serving.protos import (
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates, exported, tmp_path_factory):  # type: ignore[no-untyped-def]
    """client_verify, the health service and a gRPC UNIX socket (TLS too, as in TF
    Serving); the session's export is version 1 of model ``m``."""
    root = tmp_path_factory.mktemp("tls_server")
    (root / "m").mkdir()
    (root / "m" / "1").symlink_to(exported("encoded_image_string_tensor"))
    (root / "ssl.config").write_text(certificates.ssl_config(client_verify=True))
    server = ServerProcess(["--model_name", "m", "--model_base_path", str(root / "m"),
                            "--ssl_config_file", str(root / "ssl.config"),
                            "--enable_grpc_healthcheck_service",
                            f"--grpc_socket_path={root / 'grpc.sock'}",
                            "--file_system_poll_wait_seconds=0", "--enable_model_warmup=false"],
                           root / "server.log")
    yield server, root
    server.stop(signal.SIGKILL)  # a graceful stop has its own tests (test_batching.py)


def credentials(certificates: Certificates, client_certificate: bool) -> grpc.ChannelCredentials:
    if not client_certificate:
        return grpc.ssl_channel_credentials(root_certificates=certificates.ca_cert)
    return grpc.ssl_channel_credentials(root_certificates=certificates.ca_cert,
                                        private_key=certificates.client_key,
                                        certificate_chain=certificates.client_cert)


def status_request(model: str = "m") -> get_model_status_pb2.GetModelStatusRequest:
    return get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=model))


def health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status)


def test_client_with_certificate_predicts_and_sees_health(tls_server, certificates) -> None:  # type: ignore[no-untyped-def]
    server, root = tls_server
    with grpc.secure_channel(server.grpc_target, credentials(certificates, True)) as channel:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
        tensor = request.inputs["input_tensor"]
        tensor.dtype = tensor_pb2.DT_STRING
        tensor.tensor_shape.dim.add(size=1)
        tensor.string_val.append(jpeg_bytes("raccoon-1.jpg"))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)
        boxes = response.outputs["detection_boxes"]
        assert [d.size for d in boxes.tensor_shape.dim] == [1, 20, 4]
        assert np.isfinite(np.asarray(boxes.float_val)).all()
        status = prediction_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            status_request(), timeout=30)
        assert [(s.version, s.state) for s in status.model_version_status] == [(1, AVAILABLE)]
        assert [health(channel, name) for name in ("", "tensorflow.serving.PredictionService",
                                                   "tensorflow.serving.ModelService")] == [SERVING] * 3
        with pytest.raises(grpc.RpcError) as unknown:
            health(channel, "no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    # the UNIX socket is secured as well (a client names the host its certificate is for)
    with grpc.secure_channel(f"unix:{root / 'grpc.sock'}", credentials(certificates, True),
                             options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        assert health(channel) == SERVING
    # REST stays plain HTTP, as in TF Serving
    assert server.request("GET", "/v1/models/m")[0] == 200


def test_plain_text_and_certificate_less_clients_are_refused(tls_server, certificates) -> None:  # type: ignore[no-untyped-def]
    server, _ = tls_server
    for channel in (grpc.insecure_channel(server.grpc_target),
                    grpc.secure_channel(server.grpc_target, credentials(certificates, False))):
        with channel, pytest.raises(grpc.RpcError) as refused:
            prediction_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                status_request(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()


def test_objdet_client_and_detect_speak_grpcs(tls_server, certificates, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             capsys) -> None:
    """``Client("grpcs://...")`` and ``objdet detect --server grpcs://...`` with the CA and a
    client certificate; without the client certificate the server refuses (UNAVAILABLE)."""
    from objdet.cli.main import main
    from objdet.serving import Client
    from objdet.serving.errors import ServingError

    server, _ = tls_server
    url = f"grpcs://{server.grpc_target}"
    client = Client(url, root_certificates=certificates.ca_cert, private_key=certificates.client_key,
                    certificate_chain=certificates.client_cert)
    assert client.status("m")["model_version_status"][0]["state"] == "AVAILABLE"
    with pytest.raises(ServingError) as refused:
        Client(url, root_certificates=certificates.ca_cert, timeout=30).status("m")
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE.value[0]
    pem = {}
    for name in ("ca_cert", "client_cert", "client_key"):
        pem[name] = tmp_path / f"{name}.pem"
        pem[name].write_bytes(getattr(certificates, name))
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg_bytes("raccoon-1.jpg"))
    tls_flags = ["--server_ca_file", str(pem["ca_cert"]), "--client_cert_file", str(pem["client_cert"]),
                 "--client_key_file", str(pem["client_key"])]
    assert main(["detect", "--server", url, "--model_name", "m", "--image", str(image), *tls_flags]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["image"] == str(image) and len(result["detections"]) > 0
    tls_flags[1] = str(image)  # not PEM
    assert main(["detect", "--server", url, "--model_name", "m", "--image", str(image), *tls_flags]) == 2
    assert re.fullmatch(r"objdet detect: error: --server_ca_file \S+a\.jpg: not PEM \(expected -----BEGIN \.\.\.-----\)\n",
                        capsys.readouterr().err)
    with pytest.raises(ObjdetError, match="certificates are for grpcs://"):
        Client(f"grpc://{server.grpc_target}", root_certificates=certificates.ca_cert)


def test_without_client_verify_and_health_follows_readiness(certificates, exported,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    """In process: TLS without client certificates; NOT_SERVING until the model has a
    version (a poll loads it), NOT_SERVING again from shutdown on."""
    from objdet.serving.model_config import single_model_config
    from objdet.serving.server import Server, ServerOptions
    from objdet.serving.tls import read_ssl_config

    (tmp_path / "ssl.config").write_text(certificates.ssl_config(client_verify=False))
    (tmp_path / "m").mkdir()
    options = ServerOptions(port=free_port(), rest_api_port=0, host="127.0.0.1",
                            file_system_poll_wait_seconds=0, warmup_iterations=0,
                            tls=read_ssl_config(tmp_path / "ssl.config"), grpc_healthcheck=True)
    server = Server([single_model_config("m", tmp_path / "m")], options)
    server.start()
    target = f"127.0.0.1:{options.port}"
    try:
        with grpc.secure_channel(target, credentials(certificates, False)) as channel:
            assert health(channel) == NOT_SERVING
            with pytest.raises(grpc.RpcError) as no_version:
                prediction_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                    status_request(), timeout=30)
            assert no_version.value.code() == grpc.StatusCode.NOT_FOUND  # answered, over TLS
            (tmp_path / "m" / "1").symlink_to(exported("encoded_image_string_tensor"))
            server.manager.poll_once()
            assert health(channel) == SERVING
            assert health(channel, "tensorflow.serving.ModelService") == SERVING
        with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as refused:
            health(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.health is not None
        server.health.shut_down()
        with grpc.secure_channel(target, credentials(certificates, False)) as channel:
            assert health(channel) == NOT_SERVING
    finally:
        server.stop()


def test_bad_ssl_config_is_a_one_line_error(certificates, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from google.protobuf import text_format

    from objdet.cli.main import main
    from objdet.serving.protos.ssl_config_pb2 import SSLConfig

    good = SSLConfig()
    text_format.Parse(certificates.ssl_config(client_verify=True), good)
    cases: list[tuple[dict[str, object], str]] = [
        ({"server_key": ""}, "server_key: missing"),
        ({"server_cert": "junk"}, "server_cert: not a PEM certificate"),
        ({"server_key": "junk"}, "server_key: not a PEM private key"),
        ({"server_key": certificates.client_key.decode()}, "server_key: does not match server_cert"),
        ({"custom_ca": "junk"}, "custom_ca: not PEM certificates"),
        ({"custom_ca": ""}, "client_verify: true needs custom_ca"),
    ]
    path = tmp_path / "ssl.config"
    for change, words in [*cases, ({}, "cannot read")]:
        config = SSLConfig()
        config.CopyFrom(good)
        for name, value in change.items():
            setattr(config, name, value)
        path.write_text(text_format.MessageToString(config))
        flag = str(path) if change else str(tmp_path / "missing.config")
        assert main(["serve", "--model_base_path", str(tmp_path), "--ssl_config_file", flag]) == 2
        error = capsys.readouterr().err
        assert re.match(rf"objdet serve: error: {re.escape(flag)}: .*{words}", error), error
        assert len(error.strip().splitlines()) == 1
