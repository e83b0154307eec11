"""What the page tests share in every browser (helper module, not a test file): the SQLite
rows of the answers, screenshots, and the threshold slider. ``page`` is Playwright's ``Page``
or ``firefox_bidi.FirefoxPage``: the helpers call only ``evaluate`` and ``screenshot``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from annotate_server import ProjectFiles


class Page(Protocol):
    def evaluate(self, expression: str) -> Any: ...

    def screenshot(self, *, path: str) -> Any: ...


def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Saves a screenshot, prints where (and copies it to $OBJDET_SCREENSHOT_DIR when set)."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("OBJDET_SCREENSHOT_DIR"):
        Path(os.environ["OBJDET_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(os.environ["OBJDET_SCREENSHOT_DIR"]) / path.name)
    print(f"screenshot: {path}")
    return path


def latest_rows(project: ProjectFiles) -> dict[str, dict[str, Any]]:
    """image key -> its newest answer row (boxes, label ids, sources, ...; ``rows``: how many)."""
    with sqlite3.connect(project.model_dir / "annotate" / "answers.sqlite") as connection:
        rows = connection.execute(
            "SELECT i.key, a.answer, a.boxes, a.label_ids, a.box_sources, a.rejected_boxes, a.model_version, a.session "
            "FROM answers a JOIN images i ON i.id = a.image_id ORDER BY a.id").fetchall()
    latest: dict[str, dict[str, Any]] = {}
    for key, answer, boxes, label_ids, sources, rejected, version, session in rows:
        latest[key] = {"answer": answer, "boxes": json.loads(boxes), "label_ids": json.loads(label_ids),
                       "sources": json.loads(sources), "rejected": json.loads(rejected),
                       "model_version": version, "session": session, "rows": 1 + latest.get(key, {}).get("rows", 0)}
    return latest


def show_top_suggestions(page: Page, count: int) -> int:
    """Move the threshold slider so that the ``count`` best suggestions show; returns how many do."""
    scores = page.evaluate("window.objdetAnnotate.task.boxes.map(b => b.score)")
    threshold = sorted(scores, reverse=True)[min(count, len(scores)) - 1]
    return page.evaluate(  # type: ignore[no-any-return]
        f"(() => {{ const slider = document.getElementById('threshold'); slider.value = '{threshold}'; "
        "slider.dispatchEvent(new Event('input')); return document.querySelectorAll('rect.box').length; })()")
