"""``ServerProcess``: a real ``objdet serve`` subprocess on 127.0.0.1 (helper, not a test)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from objdet_process import ObjdetProcess, free_port


class ServerProcess(ObjdetProcess):
    """Starts ``objdet serve ARGS`` with free gRPC and REST ports; waits until it answers."""

    def __init__(self, args: list[str], log_path: Path, start_timeout: float = 60.0) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        # no REST deadline (TF Serving's is 30 s): a loaded CI machine must not turn a slow
        # prediction into a 504; the deadline has its own test (test_serve_flags.py)
        command = ["serve", "--host", "127.0.0.1", "--port", str(self.grpc_port),
                   "--rest_api_port", str(self.rest_port), "--rest_api_timeout_in_ms=0", *args]
        super().__init__(command, log_path, lambda: self.request("GET", "/v1/health")[0] == 200,
                         start_timeout)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or the text) of one request on a new connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=timeout)
        try:
            try:
                connection.request(method, path, body=body, headers=headers or {})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (413) before reading the whole body
            response = connection.getresponse()
            text = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text.decode("utf-8", "replace")

    def post_json(self, path: str, content: Any) -> tuple[int, Any]:
        return self.request("POST", path, json.dumps(content).encode(),
                            {"Content-Type": "application/json"})
