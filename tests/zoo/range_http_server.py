"""A real HTTP server on 127.0.0.1 (a free port, in a thread) serving files from memory,
with ``Range: bytes=START-[END]`` support, a log of the requests it saw, and two faults:
a response that stops after N bytes (the connection closed early) and ignoring Range."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class SeenRequest:
    path: str
    range: str | None  # the Range header, if any
    status: int = 0


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    requests: list[SeenRequest] = field(default_factory=list)
    truncate_after: list[int] = field(default_factory=list)  # next responses stop after N bytes
    ignore_range: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        seen = SeenRequest(self.path, self.headers.get("Range"))
        with state.lock:
            state.requests.append(seen)
            truncate = state.truncate_after.pop(0) if state.truncate_after else None
        body = state.files.get(self.path)
        if body is None:
            seen.status = 404
            self.send_error(404)
            return
        start, end = 0, len(body) - 1
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", seen.range or "")
        if match and not state.ignore_range:
            start = int(match[1])
            end = min(int(match[2]), end) if match[2] else end
            if start >= len(body):
                seen.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen.status = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            seen.status = 200
            self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
        part = body[start:end + 1]
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if truncate is not None:  # the connection drops mid-body
            self.wfile.write(part[:truncate])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(part)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection the test cut on purpose


@contextmanager
def serve(state: ServerState) -> Iterator[str]:
    """Serve ``state`` on 127.0.0.1 at a free port; yields the base URL (ending in ``/``)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
