"""``AnnotateServer``: a real ``objdet annotate`` subprocess on 127.0.0.1, and a tiny project
to run it on (helper module, not a test file)."""

from __future__ import annotations

import http.client
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objdet_process import REPO_ROOT, ObjdetProcess, free_port

RACCOON = REPO_ROOT / "datasets" / "raccoon"
LABEL_MAP = RACCOON / "object-detection.pbtxt"
TEST_RECORD = RACCOON / "tfrecord" / "test.record"


@dataclass
class ProjectFiles:
    images: Path
    config: Path
    label_map: Path
    model_dir: Path
    image_names: list[str]


def make_project(root: Path, num_images: int = 6, bad_images: int = 0) -> ProjectFiles:
    """``num_images`` raccoon JPEGs (+ ``bad_images`` files that are not images), the tiny
    SSD config of tests/fixtures and the raccoon label map."""
    images = root / "images"
    images.mkdir(parents=True)
    names = sorted(path.name for path in (RACCOON / "images").glob("*.jpg"))[:num_images]
    for name in names:
        shutil.copyfile(RACCOON / "images" / name, images / name)
    for index in range(bad_images):
        (images / f"zz-broken-{index}.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" * 4)
    text = (REPO_ROOT / "tests" / "fixtures" / "tiny_ssd.config").read_text()
    config = root / "tiny_ssd.config"
    config.write_text(text.replace("RECORD_PATH", str(TEST_RECORD)).replace("LABEL_MAP_PATH", str(LABEL_MAP)))
    return ProjectFiles(images, config, LABEL_MAP, root / "model", names)


class AnnotateServer(ObjdetProcess):
    """Starts ``objdet annotate`` on a free port and waits until /api/status answers."""

    def __init__(self, project: ProjectFiles, *extra: str, log_path: Path | None = None,
                 host: str = "127.0.0.1", token: str | None = None, start_timeout: float = 180.0) -> None:
        self.port = free_port()
        self.token = token
        command = ["annotate", "--images", str(project.images),
                   "--label_map_path", str(project.label_map),
                   "--pipeline_config_path", str(project.config),
                   "--model_dir", str(project.model_dir), "--port", str(self.port),
                   "--host", host, *extra]
        super().__init__(command, log_path or project.model_dir.parent / f"annotate-{self.port}.log",
                         lambda: self.request("GET", "/api/status")[0] == 200, start_timeout,
                         log_mode="ab")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 60.0, raw_body: bytes | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or bytes) of one request on a new connection."""
        headers = dict(headers or {})
        if self.token is not None:
            headers.setdefault("X-Objdet-Token", self.token)
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            content = response.read()
        finally:
            connection.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(content)
        return response.status, content

    def next_task(self, session: str = "tester") -> dict[str, Any] | None:
        status, task = self.request("GET", f"/api/next?session={session}")
        assert status in (200, 204), (status, task)
        return task if status == 200 else None

    def answer(self, task: dict[str, Any], answer: str = "accept", session: str = "tester",
               boxes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if boxes is None:
            boxes = [{"box_xyxy": [5.0, 6.0, 50.0, 60.0], "label": "raccoon"}]
        status, reply = self.request("POST", "/api/answer", {
            "task_id": task["task_id"], "session": session, "answer": answer, "boxes": boxes})
        assert status == 200, reply
        return reply  # type: ignore[no-any-return]
