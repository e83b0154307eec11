"""An ``objdet`` sub-command as a real subprocess on 127.0.0.1, for the server tests
(serving/server_process.py, annotate/annotate_server.py): free ports, start and wait until
it answers, stop with a signal (helper, not a test)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ObjdetProcess:
    """``python -m objdet ARGS`` with its output in ``log_path``; returns once ``ready()``
    is true (connection errors count as not yet), or raises with the log's tail."""

    def __init__(self, args: list[str], log_path: Path, ready: Callable[[], bool],
                 start_timeout: float, log_mode: str = "wb") -> None:
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
        self._log: IO[bytes] = log_path.open(log_mode)  # type: ignore[assignment]
        self.process = subprocess.Popen([sys.executable, "-m", "objdet", *args], stdout=self._log,
                                        stderr=subprocess.STDOUT, env=env)
        name = f"objdet {args[0]}"
        deadline = time.monotonic() + start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited {self.process.returncode}:\n{self.log()}")
            try:
                if ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"{name} did not start in {start_timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

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
