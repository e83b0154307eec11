"""A small WebDriver BiDi client for a stock Firefox (helper module, not a test file).

Playwright drives Firefox through its own patched build (which cannot be downloaded here); its
BiDi channel (``channel="moz-firefox"``) sends commands Firefox ESR does not know
(``emulation.setMediaFeaturesOverride``). Firefox speaks WebDriver BiDi itself
(``--remote-debugging-port``), so the tests speak it too: ``session.new`` over the WebSocket
at ``ws://127.0.0.1:PORT/session``, then ``browsingContext``, ``script`` and ``input``
commands. The WebSocket is RFC 6455's client side over a plain socket (no dependency).

``FirefoxPage`` offers the few calls of Playwright's ``Page`` that the annotate page tests use
(``goto``, ``evaluate``, ``wait_for_function``, ``press``, ``drag``, ``screenshot``), with the
same meaning, so helpers written against ``evaluate`` serve both browsers.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

JsonValue = Any  # what JSON.parse returns: None, bool, number, str, list, dict

# WebDriver's code points for the keys the tests press (WebDriver spec, "Keyboard actions").
SPECIAL_KEYS = {
    "Control": "\ue009", "Shift": "\ue008", "Alt": "\ue00a", "Meta": "\ue03d", "Tab": "\ue004",
    "Enter": "\ue007", "Escape": "\ue00c", "Delete": "\ue017", "Backspace": "\ue003",
    "ArrowLeft": "\ue012", "ArrowRight": "\ue014",
}
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class BidiError(RuntimeError):
    """A BiDi command that Firefox answered with an error, or a page that did not load."""


class WebSocket:
    """A text-frame WebSocket client (RFC 6455): masked frames out, fragments joined in."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        match = re.fullmatch(r"ws://([^:/]+):(\d+)(/.*)?", url)
        if match is None:
            raise ValueError(f"not a ws:// URL: {url}")
        host, port, path = match.group(1), int(match.group(2)), match.group(3) or "/"
        self.socket = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.socket.recv(4096)
            if not chunk:
                raise BidiError(f"{url}: connection closed during the WebSocket handshake")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise BidiError(f"{url}: WebSocket handshake refused: {head.decode(errors='replace')}")

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        if len(payload) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(payload))
        elif len(payload) < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, len(payload))
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.socket.sendall(header + mask + masked)

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.socket.recv(1 << 16)
            if not chunk:
                raise BidiError("the browser closed the WebSocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> str:
        """The next text message (pings answered, fragments joined)."""
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(length)
            if mask:
                payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                raise BidiError("the browser closed the WebSocket")
            if opcode == 0x9:  # ping -> pong (masked, as every client frame)
                pong_mask = os.urandom(4)
                self.socket.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + pong_mask
                                    + bytes(b ^ pong_mask[i % 4] for i, b in enumerate(payload)))
                continue
            message += payload
            if first & 0x80:  # FIN
                return message.decode()

    def close(self) -> None:
        self.socket.close()


class FirefoxPage:
    """One headless Firefox (a fresh profile) and its first tab, driven over WebDriver BiDi.

    The constructor starts the browser and returns at once (it starts while the caller does
    other work); ``connect`` waits for it and opens the session."""

    def __init__(self, executable: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="objdet-firefox-"))
        self.log_path = self.profile.parent / f"{self.profile.name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115  (closed in close())
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-remote", "--remote-debugging-port", "0",
             "--profile", str(self.profile)], stdout=self.log, stderr=subprocess.STDOUT)
        self.socket: WebSocket | None = None
        self.context = ""
        self.next_id = 0
        self.events: list[dict[str, JsonValue]] = []
        self.errors: list[str] = []  # uncaught page errors (log.entryAdded, type javascript)

    def connect(self, width: int = 1200, height: int = 800, timeout: float = 60.0) -> FirefoxPage:
        """Wait for the browser, open a BiDi session and size the tab's viewport."""
        self.socket = WebSocket(self._wait_for_endpoint(timeout) + "/session")
        self.command("session.new", {"capabilities": {}})
        self.command("session.subscribe", {"events": ["log.entryAdded"]})
        tree = self.command("browsingContext.getTree", {"maxDepth": 0})
        self.context = tree["contexts"][0]["context"]
        self.command("browsingContext.setViewport",
                     {"context": self.context, "viewport": {"width": width, "height": height}})
        return self

    def _wait_for_endpoint(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise BidiError(f"firefox exited ({self.process.returncode}): {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise BidiError(f"firefox did not open WebDriver BiDi in {timeout:.0f} s: {self.log_path.read_text()[-2000:]}")

    # -- the protocol ------------------------------------------------------------------------
    def command(self, method: str, params: dict[str, JsonValue]) -> dict[str, JsonValue]:
        """Send one command, return its result (events that arrive meanwhile are kept)."""
        if self.socket is None:
            raise BidiError(f"{method}: not connected (call connect() first)")
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.receive())
            if message.get("type") == "event":
                self._on_event(message)
                continue
            if message.get("id") != self.next_id:
                continue
            if message.get("type") == "error":
                raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
            return message["result"]  # type: ignore[no-any-return]

    def _on_event(self, message: dict[str, JsonValue]) -> None:
        self.events.append(message)
        params = message.get("params", {})
        if message.get("method") == "log.entryAdded" and params.get("type") == "javascript":
            self.errors.append(str(params.get("text")))

    # -- what the tests call -----------------------------------------------------------------
    def goto(self, url: str) -> None:
        self.command("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def evaluate(self, expression: str) -> JsonValue:
        """The JSON value of a JavaScript expression in the page (a promise awaited)."""
        result = self.command("script.evaluate", {
            "expression": f"(async () => JSON.stringify(await ({expression})))()",
            "target": {"context": self.context}, "awaitPromise": True, "resultOwnership": "none"})
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise BidiError(f"evaluate {expression!r}: {details.get('text')}")
        value = result["result"]
        return None if value["type"] == "undefined" else json.loads(value["value"])

    def wait_for_function(self, expression: str, timeout: float = 30.0) -> JsonValue:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s")
            time.sleep(0.05)

    def press(self, keys: str) -> None:
        """A key or a chord as Playwright names them: ``a``, ``Tab``, ``Control+Shift+z``."""
        names = keys.split("+")
        values = [SPECIAL_KEYS.get(name, name) for name in names]
        actions = ([{"type": "keyDown", "value": value} for value in values]
                   + [{"type": "keyUp", "value": value} for value in reversed(values)])
        self.command("input.performActions", {"context": self.context, "actions": [
            {"type": "key", "id": "keyboard", "actions": actions}]})

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 5) -> None:
        """A left-button mouse drag in viewport pixels, moving in ``steps`` as a hand does."""
        moves = [{"type": "pointerMove", "x": round(start[0] + (end[0] - start[0]) * step / steps),
                  "y": round(start[1] + (end[1] - start[1]) * step / steps)} for step in range(1, steps + 1)]
        self.command("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "x": round(start[0]), "y": round(start[1])},
                        {"type": "pointerDown", "button": 0}, *moves, {"type": "pointerUp", "button": 0}]}]})

    def bounding_box(self, selector: str) -> dict[str, float]:
        """``{x, y, width, height}`` of the first element matching ``selector``, viewport pixels."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
        return box  # type: ignore[no-any-return]

    def screenshot(self, *, path: str) -> None:
        result = self.command("browsingContext.captureScreenshot", {"context": self.context})
        Path(path).write_bytes(base64.b64decode(result["data"]))

    def quit(self) -> None:
        """Ask the browser to exit (it shuts down while the caller goes on; ``close`` waits)."""
        if self.socket is not None:
            try:
                self.command("browser.close", {})
            except (BidiError, OSError):
                pass
            self.socket.close()
            self.socket = None

    def close(self) -> None:
        """Quit, wait for the browser to exit (kill it after 10 s) and remove its profile."""
        self.quit()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
