"""``AnswerStore``: the annotation project's SQLite database (WAL).

Tables::

    images   id, key (unique, see objdet.annotate.sources), position (file order),
             width, height, error (why the image could not be read; NULL when fine)
    answers  id, image_id, session, answer ('accept' | 'reject' | 'ignore'),
             boxes (JSON [[x1, y1, x2, y2], ...] absolute pixels), label_ids (JSON [id, ...]),
             box_sources (JSON ['suggested' | 'edited' | 'drawn', ...]),
             rejected_boxes (JSON, suggestions the person rejected, pixels), model_version,
             answered_at (unix seconds)
    leases   session (unique), image_id (unique), expires_at (unix seconds): which session
             holds which image (see ``lease_image``)
    meta     key, value (JSON): project settings and the trainer's status

One row per answer: answering an image again adds a row, and the newest row of an image is
its answer. ``commit_answer`` returns only after the row is on disk (``synchronous=FULL``), so
a killed server loses no answer it acknowledged. The web app and the trainer process open the
same file; WAL lets the trainer read while answers are written.

Leases live here, not in one process's memory, so several app processes on one database
(e.g. one per annotator, or behind a load balancer) never hand out the same image twice:
``lease_image`` chooses and records a lease in one write transaction, and a lease expires
``lease_seconds`` after it was last renewed (a session that shows no sign of life gives its
image back).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objdet.errors import ObjdetError

ANSWERS = ("accept", "reject", "ignore")
BOX_SOURCES = ("suggested", "edited", "drawn")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    session TEXT NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('accept', 'reject', 'ignore')),
    boxes TEXT NOT NULL,
    label_ids TEXT NOT NULL,
    box_sources TEXT NOT NULL,
    rejected_boxes TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    answered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_image ON answers (image_id, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    session TEXT PRIMARY KEY,
    image_id INTEGER NOT NULL UNIQUE REFERENCES images(id),
    expires_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Answer:
    """One committed answer. ``boxes``: ``[[x1, y1, x2, y2], ...]`` absolute pixels."""

    id: int
    image_id: int
    image_key: str
    session: str
    answer: str
    boxes: list[list[float]]
    label_ids: list[int]
    box_sources: list[str]
    rejected_boxes: list[list[float]]
    model_version: int
    answered_at: float


@dataclass(frozen=True)
class ImageRow:
    id: int
    key: str
    position: int
    width: int | None
    height: int | None
    error: str | None


@dataclass(frozen=True)
class Lease:
    session: str
    image_id: int
    expires_at: float  # unix seconds


class AnswerStore:
    """Thread-safe access to one project database (one connection, one lock)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                               isolation_level=None)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise ObjdetError(f"{self.path}: not a usable annotation database: {error}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    # -- images ---------------------------------------------------------------------------
    def sync_images(self, keys: Sequence[str]) -> int:
        """Add the keys not in the store yet (in order, after the known ones); returns how
        many were added. Keys that disappeared from the source stay (their answers too)."""
        with self._transaction() as connection:
            known = {key for (key,) in connection.execute("SELECT key FROM images")}
            (start,) = connection.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM images").fetchone()
            new = [key for key in keys if key not in known]
            connection.executemany("INSERT INTO images (key, position) VALUES (?, ?)",
                                   [(key, start + i) for i, key in enumerate(new)])
        return len(new)

    def images(self, keys: Sequence[str] | None = None) -> list[ImageRow]:
        """All images in file order (only those among ``keys`` when given)."""
        rows = [ImageRow(*row) for row in self._query(
            "SELECT id, key, position, width, height, error FROM images ORDER BY position")]
        if keys is None:
            return rows
        wanted = set(keys)
        return [row for row in rows if row.key in wanted]

    def image(self, image_id: int) -> ImageRow | None:
        rows = self._query("SELECT id, key, position, width, height, error FROM images WHERE id = ?",
                           (image_id,))
        return ImageRow(*rows[0]) if rows else None

    def set_image_size(self, image_id: int, width: int, height: int) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE images SET width = ?, height = ?, error = NULL WHERE id = ?",
                               (width, height, image_id))

    def set_image_error(self, image_id: int, error: str) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE images SET error = ? WHERE id = ?", (error, image_id))

    # -- answers --------------------------------------------------------------------------
    def commit_answer(
        self, *, image_id: int, session: str, answer: str, boxes: Sequence[Sequence[float]],
        label_ids: Sequence[int], box_sources: Sequence[str] | None = None,
        rejected_boxes: Sequence[Sequence[float]] = (), model_version: int = 0,
    ) -> int:
        """Write one answer row (on disk when this returns); returns its id."""
        if answer not in ANSWERS:
            raise ObjdetError(f"answer: {answer!r}; expected one of {', '.join(ANSWERS)}")
        sources = list(box_sources) if box_sources is not None else ["drawn"] * len(boxes)
        if not len(boxes) == len(label_ids) == len(sources):
            raise ObjdetError(f"answer: {len(boxes)} boxes but {len(label_ids)} labels and "
                              f"{len(sources)} box sources")
        row = (image_id, session, answer, json.dumps([[float(v) for v in box] for box in boxes]),
               json.dumps([int(i) for i in label_ids]), json.dumps(sources),
               json.dumps([[float(v) for v in box] for box in rejected_boxes]),
               int(model_version), time.time())
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO answers (image_id, session, answer, boxes, label_ids, box_sources, "
                "rejected_boxes, model_version, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            connection.execute("DELETE FROM leases WHERE image_id = ?", (image_id,))  # answered: free
            return int(cursor.lastrowid or 0)

    def answers(self, *, latest_only: bool = True, answer: str | None = None) -> list[Answer]:
        """Answers in the order they were given; ``latest_only``: each image's newest one."""
        sql = ("SELECT a.id, a.image_id, i.key, a.session, a.answer, a.boxes, a.label_ids, "
               "a.box_sources, a.rejected_boxes, a.model_version, a.answered_at "
               "FROM answers a JOIN images i ON i.id = a.image_id")
        if latest_only:
            sql += " WHERE a.id = (SELECT MAX(id) FROM answers b WHERE b.image_id = a.image_id)"
        sql += " ORDER BY a.id"
        rows = [_answer(row) for row in self._query(sql)]
        return [row for row in rows if answer is None or row.answer == answer]

    def latest_answer(self, image_id: int) -> Answer | None:
        rows = self._query(
            "SELECT a.id, a.image_id, i.key, a.session, a.answer, a.boxes, a.label_ids, "
            "a.box_sources, a.rejected_boxes, a.model_version, a.answered_at FROM answers a "
            "JOIN images i ON i.id = a.image_id WHERE a.image_id = ? ORDER BY a.id DESC LIMIT 1",
            (image_id,))
        return _answer(rows[0]) if rows else None

    def answered_image_ids(self) -> set[int]:
        return {image_id for (image_id,) in self._query("SELECT DISTINCT image_id FROM answers")}

    def bad_image_errors(self) -> dict[int, str]:
        """image id -> why it cannot be read, for every image marked bad (by any process)."""
        return dict(self._query("SELECT id, error FROM images WHERE error IS NOT NULL"))

    # -- leases ---------------------------------------------------------------------------
    def lease_image(
        self, session: str, choose: Callable[[set[int], set[int]], int | None], *,
        lease_seconds: float, now: float | None = None,
    ) -> int | None:
        """The image ``session`` holds, or a new one, leased until ``now + lease_seconds``.

        In one write transaction (so two processes never lease one image): expired leases
        are dropped; if ``session`` holds an image that is unanswered and readable, its lease
        is renewed and that image returned; else ``choose(taken, answered)`` picks among the
        images not ``taken`` by another session's live lease (``answered``: the images with
        an answer, read inside the transaction) and the pick is leased. None (and no lease)
        when ``choose`` returns None.
        """
        now = time.time() if now is None else now
        expires = now + lease_seconds
        with self._transaction() as connection:
            connection.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
            answered = {i for (i,) in connection.execute("SELECT DISTINCT image_id FROM answers")}
            held = connection.execute(
                "SELECT l.image_id FROM leases l JOIN images i ON i.id = l.image_id "
                "WHERE l.session = ? AND i.error IS NULL", (session,)).fetchone()
            if held is not None and held[0] not in answered:
                connection.execute("UPDATE leases SET expires_at = ? WHERE session = ?", (expires, session))
                return int(held[0])
            connection.execute("DELETE FROM leases WHERE session = ?", (session,))
            taken = {i for (i,) in connection.execute("SELECT image_id FROM leases")}
            chosen = choose(taken, answered)
            if chosen is not None:
                connection.execute("INSERT INTO leases (session, image_id, expires_at) VALUES (?, ?, ?)",
                                   (session, chosen, expires))
            return chosen

    def renew_lease(self, session: str, *, lease_seconds: float, now: float | None = None) -> bool:
        """Extend the live lease of ``session`` (a page that is still open); True if it has one."""
        now = time.time() if now is None else now
        with self._transaction() as connection:
            cursor = connection.execute("UPDATE leases SET expires_at = ? WHERE session = ? AND expires_at > ?",
                                        (now + lease_seconds, session, now))
            return cursor.rowcount > 0

    def release_lease(self, session: str) -> None:
        with self._transaction() as connection:
            connection.execute("DELETE FROM leases WHERE session = ?", (session,))

    def leases(self, now: float | None = None) -> list[Lease]:
        """The live leases, oldest expiry first."""
        now = time.time() if now is None else now
        return [Lease(*row) for row in self._query(
            "SELECT session, image_id, expires_at FROM leases WHERE expires_at > ? ORDER BY expires_at", (now,))]

    def counts(self) -> dict[str, int]:
        """images, bad_images, answered, accept/reject/ignore (each image's newest answer),
        answer_rows (every row)."""
        (images, bad) = self._query("SELECT COUNT(*), COUNT(error) FROM images")[0]
        per_answer = dict(self._query(
            "SELECT answer, COUNT(*) FROM answers a WHERE a.id = "
            "(SELECT MAX(id) FROM answers b WHERE b.image_id = a.image_id) GROUP BY answer"))
        (rows,) = self._query("SELECT COUNT(*) FROM answers")[0]
        counts = {"images": images, "bad_images": bad, "answer_rows": rows}
        counts.update({name: int(per_answer.get(name, 0)) for name in ANSWERS})
        counts["answered"] = sum(counts[name] for name in ANSWERS)
        return counts

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                               "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               (key, json.dumps(value)))


def _answer(row: tuple[Any, ...]) -> Answer:
    return Answer(id=row[0], image_id=row[1], image_key=row[2], session=row[3], answer=row[4],
                  boxes=json.loads(row[5]), label_ids=json.loads(row[6]),
                  box_sources=json.loads(row[7]), rejected_boxes=json.loads(row[8]),
                  model_version=row[9], answered_at=row[10])
