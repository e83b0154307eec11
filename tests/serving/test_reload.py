"""Version hot reload under traffic: a new version serves within two poll intervals with no
failed request; a corrupt or half-written version never serves and shows its error."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from pathlib import Path

import pytest
from server_process import ServerProcess
from serving_inputs import jpeg_bytes

POLL_SECONDS = 0.5
BODY = {"instances": [{"b64": base64.b64encode(jpeg_bytes("raccoon-1.jpg")).decode()}]}


def versions(server: ServerProcess) -> dict[int, tuple[str, str]]:
    status, body = server.request("GET", "/v1/models/m")
    assert status == 200, body
    return {int(entry["version"]): (entry["state"], entry["status"]["error_message"])
            for entry in body["model_version_status"]}


def publish(source: Path, base: Path, version: int, corrupt: bool = False) -> None:
    """As ``objdet export`` writes: complete under a temporary name, then renamed."""
    staging = base / f".{version}.tmp"
    shutil.copytree(source, staging)
    if corrupt:
        (staging / "model.onnx").write_bytes(b"\x08\x07 this is not an onnx model")
    staging.rename(base / str(version))


def wait_for(condition, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def reloading(exported, tmp_path_factory):  # type: ignore[no-untyped-def]
    source = exported("encoded_image_string_tensor")
    base = tmp_path_factory.mktemp("reload") / "m"
    shutil.copytree(source, base / "1")
    server = ServerProcess(["--model_name", "m", "--model_base_path", str(base),
                            "--file_system_poll_wait_seconds", str(POLL_SECONDS)],
                           base.parent / "server.log")
    yield server, source, base
    assert server.stop() == 0, server.log()


def test_new_version_under_traffic_then_corrupt_and_half_written_ones(reloading) -> None:  # type: ignore[no-untyped-def]
    server, source, base = reloading
    failures: list[object] = []
    sent = [0]
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            status, body = server.post_json("/v1/models/m:predict", BODY)
            sent[0] += 1
            if status != 200:
                failures.append((status, body))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.3)
        publish(source, base, 2)
        elapsed = wait_for(lambda: versions(server).get(2, ("",))[0] == "AVAILABLE", 10)
        assert elapsed <= 2 * POLL_SECONDS + 0.2, f"version 2 took {elapsed:.2f} s"
        wait_for(lambda: versions(server)[1][0] == "END", 5)  # unloaded after 2 served

        publish(source, base, 3, corrupt=True)
        wait_for(lambda: versions(server).get(3, ("",))[0] == "END", 10)
        _, message = versions(server)[3]
        assert "onnx" in message.lower(), message
        assert versions(server)[2] == ("AVAILABLE", "")

        (base / "4").mkdir()  # a copy in progress: one file so far
        shutil.copy(source / "export.json", base / "4" / "export.json")
        wait_for(lambda: "incomplete export" in versions(server).get(4, ("", ""))[1], 10)
        assert versions(server)[2] == ("AVAILABLE", "")
        time.sleep(0.5)
        for path in source.iterdir():  # the copy completes: its files changed, so it is retried
            shutil.copy(path, base / "4" / path.name)
        wait_for(lambda: versions(server).get(4, ("",))[0] == "AVAILABLE", 10)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert sent[0] > 10
    assert failures == [], failures[:3]
    final = versions(server)
    assert final[4] == ("AVAILABLE", "") and final[2][0] == "END"
    assert final[3][0] == "END" and final[3][1]
