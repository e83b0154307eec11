"""The page in Debian's Firefox ESR (headless, over WebDriver BiDi: ``firefox_bidi``), the core
flow of test_page.py: suggestions shown, accept with the keyboard, draw a box with the mouse,
change its label, reject a box and undo; the SQLite rows must match. Screenshots go to the
test output."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotate_page import latest_rows, screenshot, show_top_suggestions
from annotate_server import AnnotateServer, ProjectFiles
from firefox_bidi import FirefoxPage

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
pytestmark = pytest.mark.skipif(FIREFOX is None, reason="needs Debian's Firefox on the PATH "
                                "(apt-get install firefox-esr)")
BOXES = "document.querySelectorAll('rect.box').length"
TASK_KEY = "window.objdetAnnotate.task.key"


@pytest.fixture(scope="module")
def firefox() -> Iterator[FirefoxPage]:
    """Firefox starting (while the server starts: ``page`` asks for this fixture first)."""
    assert FIREFOX is not None
    browser = FirefoxPage(FIREFOX)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def page(firefox: FirefoxPage, served: tuple[AnnotateServer, ProjectFiles]) -> Iterator[FirefoxPage]:
    yield firefox.connect(width=1200, height=800)
    firefox.quit()  # Firefox exits while the server stops
    assert not firefox.errors, firefox.errors


def test_label_two_images_in_firefox(page: FirefoxPage, served: tuple[AnnotateServer, ProjectFiles],
                                     tmp_path: Path) -> None:
    server, project = served
    page.goto(f"{server.url}/?session=firefox")
    page.wait_for_function(f"{BOXES} > 0")
    page.wait_for_function("document.getElementById('progress').textContent.includes('model v1')")
    first_key = project.image_names[0]
    assert page.evaluate(TASK_KEY) == first_key
    shown = show_top_suggestions(page, 3)
    assert shown >= 1
    assert re.fullmatch(r"(raccoon|fox) [01]\.\d\d", page.evaluate("document.querySelector('text.tag').textContent"))
    screenshot(page, tmp_path, "firefox-1-suggestions")

    page.press("a")  # accept as is
    page.wait_for_function(f"{TASK_KEY} !== '{first_key}'")
    row = latest_rows(project)[first_key]
    assert (row["answer"], row["session"], row["model_version"]) == ("accept", "firefox", 1)
    assert len(row["boxes"]) == shown and row["sources"] == ["suggested"] * shown

    second_key = page.evaluate(TASK_KEY)
    suggested = show_top_suggestions(page, 2)
    overlay = page.bounding_box("#overlay")
    width, height = page.evaluate("[window.objdetAnnotate.task.width, window.objdetAnnotate.task.height]")
    page.drag((overlay["x"] + 0.1 * overlay["width"], overlay["y"] + 0.15 * overlay["height"]),
              (overlay["x"] + 0.45 * overlay["width"], overlay["y"] + 0.6 * overlay["height"]))
    assert page.evaluate(BOXES) == suggested + 1
    page.press("2")  # the drawn box (selected) becomes a fox
    assert page.evaluate("document.querySelector(\"rect.box[data-source='drawn']\").dataset.label") == "fox"
    page.press("Escape")
    page.press("Tab")  # select the first suggestion
    page.press("x")  # reject it
    assert page.evaluate(BOXES) == suggested
    page.press("Control+z")  # undo the rejection
    assert page.evaluate(BOXES) == suggested + 1
    screenshot(page, tmp_path, "firefox-2-drawn-fox")
    page.press("a")
    page.wait_for_function(f"{TASK_KEY} !== '{second_key}'")
    row = latest_rows(project)[second_key]
    assert (row["answer"], row["session"]) == ("accept", "firefox")
    assert row["label_ids"][-1] == 2 and row["sources"] == ["suggested"] * suggested + ["drawn"]
    expected = [0.1 * width, 0.15 * height, 0.45 * width, 0.6 * height]
    assert all(abs(a - b) <= 0.02 * max(width, height) for a, b in zip(row["boxes"][-1], expected)), (
        row["boxes"][-1], expected)
    assert row["rejected"] == []
    page.wait_for_function("document.getElementById('progress').textContent.startsWith('2 / 6')")
