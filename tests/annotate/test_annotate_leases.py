"""Leases in the store: two real ``objdet annotate`` processes on one database never hand out
the same image, and an image whose session stops renewing its lease is handed out again."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from annotate_server import AnnotateServer, make_project

LEASE_SECONDS = 6.0  # long enough for the first checks (the warm-up request is outside it)


def leased(database: Path, live: bool = True) -> dict[str, int]:
    """session -> image id of every lease (only the live ones: ``live``), read straight from
    the database file."""
    with sqlite3.connect(database) as connection:
        return dict(connection.execute("SELECT session, image_id FROM leases WHERE expires_at > ?",
                                       (time.time() if live else 0.0,)).fetchall())


def test_two_processes_on_one_database_share_leases(tmp_path: Path) -> None:
    project = make_project(tmp_path, num_images=5)
    flags = ("--no_train", "--order", "file", "--lease_seconds", str(LEASE_SECONDS))
    first = AnnotateServer(project, *flags)
    second = AnnotateServer(project, *flags)  # same --model_dir: the same answers.sqlite
    database = project.model_dir / "annotate" / "answers.sqlite"
    try:
        for server in (first, second):  # the first decode of a process is slow: not in a lease's time
            assert server.request("GET", "/api/task/1")[0] == 200
        shown: dict[str, int] = {}

        def take(server: AnnotateServer, session: str) -> None:
            shown[session] = server.next_task(session)["task_id"]

        threads = [threading.Thread(target=take, args=(server, f"{name}-{i}"))
                   for i in range(2) for server, name in ((first, "one"), (second, "two"))]
        threads.append(threading.Thread(target=take, args=(first, "keeper")))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert second.next_task("late") is None  # every image is leased
        assert sorted(shown.values()) == [1, 2, 3, 4, 5], shown  # five sessions, five images
        assert leased(database, live=False) == shown
        assert first.next_task("keeper")["task_id"] == shown["keeper"]  # a reload resumes

        task = second.next_task("two-0")
        second.answer(task, "accept", "two-0")  # answered in one process ...
        assert "two-0" not in leased(database)
        assert first.next_task("two-0") is None  # ... is not shown by the other

        # the page of "keeper" stays open (it polls /api/status); the others go quiet
        deadline = time.time() + LEASE_SECONDS + 0.5
        while time.time() < deadline:
            assert first.request("GET", "/api/status?session=keeper")[0] == 200
            time.sleep(0.5)
        assert leased(database) == {"keeper": shown["keeper"]}
        handed_out = {second.next_task("late")["task_id"], first.next_task("later")["task_id"],
                      second.next_task("latest")["task_id"]}
        expired = {shown[s] for s in ("one-0", "one-1", "two-1")}
        assert handed_out == expired  # the expired leases, never keeper's nor the answered one
        assert first.next_task("last") is None
    finally:
        assert first.stop() == 0, first.log()
        assert second.stop() == 0, second.log()
