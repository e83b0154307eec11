"""The API against a real ``objdet annotate`` server on 127.0.0.1 (no trainer: --no_train)."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotate_server import AnnotateServer, ProjectFiles, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ProjectFiles:
    return make_project(tmp_path_factory.mktemp("annotate_api"), num_images=8, bad_images=1)


@pytest.fixture(scope="module")
def server(project: ProjectFiles) -> Iterator[AnnotateServer]:
    process = AnnotateServer(project, "--no_train", "--order", "file")
    yield process
    assert process.stop() == 0, process.log()


def rows(project: ProjectFiles) -> list[tuple[object, ...]]:
    """The answers table read straight from the database file (a second connection)."""
    with sqlite3.connect(project.model_dir / "annotate" / "answers.sqlite") as connection:
        return connection.execute(
            "SELECT i.key, a.session, a.answer, a.boxes, a.label_ids, a.box_sources, a.model_version "
            "FROM answers a JOIN images i ON i.id = a.image_id ORDER BY a.id").fetchall()


def test_next_answer_commits_a_row_and_moves_on(server: AnnotateServer, project: ProjectFiles) -> None:
    task = server.next_task("alice")
    assert task is not None
    assert set(task) >= {"task_id", "image", "width", "height", "model_version", "boxes"}
    assert task["key"] == project.image_names[0]  # --order file
    assert task["model_version"] == 0 and task["boxes"] == []  # no model exported yet
    assert server.next_task("alice")["task_id"] == task["task_id"]  # leased until answered
    status, image = server.request("GET", task["image"])
    assert status == 200 and image == (project.images / task["key"]).read_bytes()

    server.answer(task, "accept", "alice", [
        {"box_xyxy": [1, 2, 30.5, 40], "label": "raccoon", "source": "edited"},
        {"box_xyxy": [50, 60, 90, 99], "label": "raccoon"}])
    assert rows(project)[-1] == (task["key"], "alice", "accept", "[[1.0, 2.0, 30.5, 40.0], [50.0, 60.0, 90.0, 99.0]]",
                                 "[1, 1]", '["edited", "drawn"]', 0)
    following = server.next_task("alice")
    assert following["task_id"] != task["task_id"]
    status, detail = server.request("GET", f"/api/task/{task['task_id']}")
    assert status == 200 and detail["previous_answer"]["boxes"][0]["box_xyxy"] == [1.0, 2.0, 30.5, 40.0]


@pytest.mark.parametrize("body, status, message", [
    ({"answer": "accept", "boxes": [{"box_xyxy": [1, 1, 9, 9], "label": "cat"}]}, 400, "'cat' is not in the label map"),
    ({"answer": "accept", "boxes": [{"box_xyxy": [1, 1, 9], "label": "raccoon"}]}, 400, "expected [x1, y1, x2, y2]"),
    ({"answer": "accept", "boxes": [{"box_xyxy": [9, 1, 1, 9], "label": "raccoon"}]}, 400, "is empty"),
    ({"answer": "accept", "boxes": [{"box_xyxy": [1, 1, 5000, 9], "label": "raccoon"}]}, 400, "outside the"),
    ({"answer": "maybe", "boxes": []}, 400, "expected one of accept, reject, ignore"),
    ({"answer": "accept", "boxes": [], "task_id": 99999}, 404, "not a task of this project"),
    ({"answer": "accept", "boxes": [], "session": ""}, 400, "session"),
])
def test_bad_answers_are_refused_and_not_stored(server: AnnotateServer, project: ProjectFiles,
                                                body: dict[str, object], status: int, message: str) -> None:
    task = server.next_task("bad-input")
    before = len(rows(project))
    code, reply = server.request("POST", "/api/answer", {"task_id": task["task_id"], "session": "bad-input", **body})
    assert code == status and message in reply["error"]
    assert len(rows(project)) == before
    code, reply = server.request("POST", "/api/answer", None, {"Content-Type": "application/json"})
    assert code == 400


def test_cross_site_requests_are_refused(server: AnnotateServer, project: ProjectFiles) -> None:
    task = server.next_task("cross-site")
    before = len(rows(project))
    body = json.dumps({"task_id": task["task_id"], "session": "evil", "answer": "accept", "boxes": []})
    status, _ = server.request("POST", "/api/answer", headers={"Content-Type": "text/plain"},
                               raw_body=body.encode())  # a "simple" cross-site form post
    assert status == 415
    status, _ = server.request("GET", "/api/status", headers={"Host": "evil.example:80"})  # DNS rebinding
    assert status == 421
    assert len(rows(project)) == before


def test_concurrent_sessions_get_different_images(server: AnnotateServer) -> None:
    tasks: dict[str, int] = {}

    def take(session: str) -> None:
        tasks[session] = server.next_task(session)["task_id"]

    threads = [threading.Thread(target=take, args=(f"worker-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tasks.values())) == 3, tasks


@pytest.mark.parametrize("path", [
    "/api/image/..%2F..%2Fetc%2Fpasswd", "/api/image/../../../etc/passwd", "/api/image/-1",
    "/api/image/999999", "/static/..%2Fapp.py", "/static/../app.py", "/static/%2e%2e%2fapp.py",
    "/static/.hidden", "/api/task/0",
])
def test_path_traversal_is_refused(server: AnnotateServer, path: str) -> None:
    status, content = server.request("GET", path)
    assert status in (404, 422), (status, content)
    text = content if isinstance(content, bytes) else json.dumps(content).encode()
    assert b"root:" not in text and b"import" not in text


def test_resume_after_sigkill_loses_no_committed_answer(tmp_path: Path) -> None:
    project = make_project(tmp_path, num_images=4)
    server = AnnotateServer(project, "--no_train", "--order", "random")
    answered = []
    for _ in range(3):
        task = server.next_task("kim")
        server.answer(task, "accept", "kim")
        answered.append(task["key"])
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL

    restarted = AnnotateServer(project, "--no_train", "--order", "random")
    try:
        assert [row[0] for row in rows(project)] == answered
        status, content = restarted.request("GET", "/api/status")
        assert content["answered"] == 3
        remaining = restarted.next_task("kim")
        assert remaining["key"] not in answered
        restarted.answer(remaining, "accept", "kim")
        assert restarted.next_task("kim") is None  # 204: nothing left
        status, _ = restarted.request("GET", "/api/next?session=kim&include_answered=1")
        assert status == 200  # answered images come back only when asked
    finally:
        assert restarted.stop() == 0, restarted.log()


def test_listening_beyond_loopback_requires_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from objdet.cli.main import main

    project = make_project(tmp_path, num_images=1)
    # refused before anything listens: the CLI's entry point in this process
    assert main(["annotate", "--images", str(project.images), "--label_map_path", str(project.label_map),
                 "--pipeline_config_path", str(project.config), "--model_dir", str(project.model_dir),
                 "--host", "0.0.0.0", "--no_train"]) == 2
    stderr = capsys.readouterr().err
    assert "needs --token" in stderr and "Traceback" not in stderr

    server = AnnotateServer(project, "--no_train", "--token", "s3cret", token="s3cret")
    try:
        server.token = None
        assert server.request("GET", "/api/status")[0] == 401
        assert server.request("GET", "/api/status", headers={"X-Objdet-Token": "wrong"})[0] == 401
        assert server.request("GET", "/api/status", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert server.request("GET", "/api/status?token=s3cret")[0] == 200
    finally:
        assert server.stop() == 0, server.log()


def test_bad_images_are_skipped_and_counted(server: AnnotateServer, project: ProjectFiles) -> None:
    shown = []
    while (task := server.next_task("solo")) is not None:
        shown.append(task["key"])
        server.answer(task, "accept", "solo")
    assert shown and set(shown) <= set(project.image_names)  # never the broken file
    _, content = server.request("GET", "/api/status")
    assert content["bad_images"] == 1 and "zz-broken-0.jpg" in content["bad_examples"][0]
    assert content["total"] == len(project.image_names)


def test_export_endpoint_writes_prodigy_jsonl(server: AnnotateServer) -> None:
    status, content = server.request("GET", "/api/export?format=jsonl")
    assert status == 200
    tasks = [json.loads(line) for line in content.decode().splitlines()]
    assert tasks and all({"image", "spans", "answer", "width", "height"} <= set(t) for t in tasks)
    accepted = next(t for t in tasks if t["answer"] == "accept" and t["spans"])
    assert accepted["spans"][0]["label"] == "raccoon"
    assert accepted["spans"][0]["points"][0] == [accepted["spans"][0]["x"], accepted["spans"][0]["y"]]
    assert server.request("GET", "/api/export?format=pdf")[0] == 400
