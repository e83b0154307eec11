"""``ServerProcess``: a real ``objdet serve`` subprocess on 127.0.0.1 (helper, not a test)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """Starts ``objdet serve ARGS`` with free gRPC and REST ports; waits until it answers."""

    def __init__(self, args: list[str], log_path: Path, start_timeout: float = 60.0) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "objdet", "serve", "--host", "127.0.0.1",
                   "--port", str(self.grpc_port), "--rest_api_port", str(self.rest_port), *args]
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"objdet serve exited {self.process.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"objdet serve did not start in {start_timeout} s:\n{self.log()}")
            time.sleep(0.1)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code
