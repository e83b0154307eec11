"""A throw-away certificate authority for the TLS tests, made with the ``openssl`` CLI (the
``cryptography`` package is not a dependency): a CA, a server certificate for 127.0.0.1 /
localhost and a client certificate, each signed by the CA (helper, not a test)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    """PEM bytes of the CA's certificate and of the server's and client's key and cert."""

    ca_cert: bytes
    server_key: bytes
    server_cert: bytes
    client_key: bytes
    client_cert: bytes

    def ssl_config(self, client_verify: bool) -> str:
        """An ``--ssl_config_file`` text with the PEM inline, as TF Serving reads it."""
        from google.protobuf import text_format

        from objdet.serving.protos.ssl_config_pb2 import SSLConfig

        return text_format.MessageToString(SSLConfig(
            server_key=self.server_key.decode(), server_cert=self.server_cert.decode(),
            custom_ca=self.ca_cert.decode(), client_verify=client_verify))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed(directory: Path, name: str, subject: str, extensions: str) -> None:
    """``name.key`` (P-256) and ``name.pem`` signed by ``ca`` in ``directory``."""
    key, request, cert = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(request), "-subj", subject)
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", str(request), "-CA", str(directory / "ca.pem"),
             "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "2",
             "-out", str(cert), "-extfile", str(directory / f"{name}.ext"))


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
             "-days", "2", "-subj", "/CN=objdet test CA")
    _signed(directory, "server", "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _signed(directory, "client", "/CN=objdet test client", "extendedKeyUsage=clientAuth\n")
    read = lambda name: (directory / name).read_bytes()
    return Certificates(read("ca.pem"), read("server.key"), read("server.pem"),
                        read("client.key"), read("client.pem"))
