"""``--ssl_config_file``: TLS on the gRPC port, as TF Serving sets it up.

The file is TF Serving's ``SSLConfig`` in protobuf text format, the PEM text inline (one
string with ``\\n`` escapes, or adjacent strings, one per line)::

    server_key: "-----BEGIN PRIVATE KEY-----\\nMIG...\\n-----END PRIVATE KEY-----\\n"
    server_cert: "-----BEGIN CERTIFICATE-----\\n" "MIIB..." "-----END CERTIFICATE-----\\n"
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."   # the CA of the client certificates
    client_verify: true                              # clients must present one it signed

As TF Serving's ``BuildServerCredentialsFromSSLConfigFile`` (model_servers/server.cc), the
credentials secure the gRPC port and the ``--grpc_socket_path`` socket; with client_verify a
client must present a certificate signed by custom_ca. The REST port stays plain HTTP: TF
Serving's HTTP server has no TLS either.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc

from objdet.errors import ConfigError
from objdet.serving.model_config import parse_text_file
from objdet.serving.protos import ssl_config_pb2


@dataclass(frozen=True)
class TLSConfig:
    """A checked ``SSLConfig``: PEM bytes of the server's key and certificate, the CA of the
    client certificates (None: none given) and whether a client certificate is required."""

    server_key: bytes
    server_cert: bytes
    custom_ca: bytes | None
    client_verify: bool

    def server_credentials(self) -> grpc.ServerCredentials:
        """TF Serving's: GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY with
        client_verify, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE otherwise."""
        return grpc.ssl_server_credentials([(self.server_key, self.server_cert)],
                                           root_certificates=self.custom_ca,
                                           require_client_auth=self.client_verify)


def read_ssl_config(path: str | os.PathLike[str]) -> TLSConfig:
    """The ``SSLConfig`` of ``path``, checked with OpenSSL (Python's ``ssl``) so that a bad
    key or certificate is a one-line ``ConfigError`` naming the file and field at startup,
    not a failed handshake on every connection."""
    message = ssl_config_pb2.SSLConfig()
    parse_text_file(path, message)
    for name, what in (("server_key", "the server's PEM private key"),
                       ("server_cert", "the server's PEM certificate")):
        if not getattr(message, name).strip():
            raise ConfigError(f"{path}: {name}: missing ({what}, as PEM text)")
    try:
        ssl.PEM_cert_to_DER_cert(_first_certificate(message.server_cert))
    except ValueError:
        raise ConfigError(f"{path}: server_cert: not a PEM certificate (expected -----BEGIN "
                          "CERTIFICATE----- ... -----END CERTIFICATE-----)") from None
    _check_key_matches_certificate(path, message.server_key, message.server_cert)
    custom_ca = message.custom_ca.encode() if message.custom_ca.strip() else None
    if custom_ca is not None:
        try:
            ssl.create_default_context(cadata=message.custom_ca)
        except (ssl.SSLError, ValueError) as error:
            raise ConfigError(f"{path}: custom_ca: not PEM certificates ({_reason(error)})") from None
    if message.client_verify and custom_ca is None:
        raise ConfigError(f"{path}: client_verify: true needs custom_ca (the certificate "
                          "authority that signs the client certificates)")
    return TLSConfig(message.server_key.encode(), message.server_cert.encode(), custom_ca,
                     message.client_verify)


def _first_certificate(pem: str) -> str:
    """The first ``BEGIN CERTIFICATE`` block of a chain (``ssl`` converts one at a time)."""
    end = "-----END CERTIFICATE-----"
    return pem[:pem.index(end) + len(end)] if end in pem else pem


def _check_key_matches_certificate(path: str | os.PathLike[str], key: str, cert: str) -> None:
    """OpenSSL reads the key and certificate from files only: written to a private
    temporary directory (mode 0700) that is removed at once."""
    with tempfile.TemporaryDirectory(prefix="objdet-tls-") as directory:
        key_path, cert_path = Path(directory) / "key.pem", Path(directory) / "cert.pem"
        key_path.touch(mode=0o600)
        key_path.write_text(key)
        cert_path.write_text(cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as error:
            reason = _reason(error)
            what = ("does not match server_cert" if "MISMATCH" in reason.upper()
                    else "not a PEM private key")
            raise ConfigError(f"{path}: server_key: {what} ({reason})") from None


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error).splitlines()[0]
