"""The page in Debian's chromium (headless, through Playwright): suggestions shown, accept
with the keyboard, draw a box with the mouse, change its label, reject a box, move and resize
a box by a corner, undo and redo (within an image and across images); the SQLite rows must
match after each answer. Screenshots go to the test output."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotate_page import latest_rows, screenshot, show_top_suggestions
from annotate_server import AnnotateServer, ProjectFiles

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install chromium)")


@pytest.fixture(scope="module")
def page(served: tuple[AnnotateServer, ProjectFiles]) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        messages: list[str] = []
        page.on("pageerror", lambda error: messages.append(str(error)))
        yield page
        browser.close()
        assert not messages, messages


def test_label_two_images_with_keyboard_and_mouse(page: object, served: tuple[AnnotateServer, ProjectFiles],
                                                  tmp_path: Path) -> None:
    server, project = served
    page.goto(f"{server.url}/?session=browser")  # type: ignore[attr-defined]
    page.wait_for_selector("rect.box")  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('progress').textContent.includes('model v1')")  # type: ignore[attr-defined]
    first_key = project.image_names[0]
    assert page.evaluate("window.objdetAnnotate.task.key") == first_key  # type: ignore[attr-defined]
    shown = show_top_suggestions(page, 3)
    assert shown >= 1
    assert re.fullmatch(r"(raccoon|fox) [01]\.\d\d", page.locator("text.tag").first.text_content())  # type: ignore[attr-defined]
    screenshot(page, tmp_path, "1-suggestions")

    page.keyboard.press("a")  # type: ignore[attr-defined]  # accept as is
    page.wait_for_function(f"window.objdetAnnotate.task.key !== '{first_key}'")  # type: ignore[attr-defined]
    row = latest_rows(project)[first_key]
    assert (row["answer"], row["session"], row["model_version"]) == ("accept", "browser", 1)
    assert len(row["boxes"]) == shown and row["sources"] == ["suggested"] * shown

    second_key = page.evaluate("window.objdetAnnotate.task.key")  # type: ignore[attr-defined]
    suggested = show_top_suggestions(page, 2)
    overlay = page.locator("#overlay").bounding_box()  # type: ignore[attr-defined]
    width, height = page.evaluate("[window.objdetAnnotate.task.width, window.objdetAnnotate.task.height]")  # type: ignore[attr-defined]
    start = (overlay["x"] + 0.1 * overlay["width"], overlay["y"] + 0.15 * overlay["height"])
    end = (overlay["x"] + 0.45 * overlay["width"], overlay["y"] + 0.6 * overlay["height"])
    page.mouse.move(*start)  # type: ignore[attr-defined]
    page.mouse.down()  # type: ignore[attr-defined]
    page.mouse.move(start[0] + 20, start[1] + 20, steps=3)  # type: ignore[attr-defined]
    page.mouse.move(*end, steps=5)  # type: ignore[attr-defined]
    page.mouse.up()  # type: ignore[attr-defined]
    assert page.locator("rect.box").count() == suggested + 1  # type: ignore[attr-defined]
    page.keyboard.press("2")  # type: ignore[attr-defined]  # the drawn box (selected) becomes a fox
    assert page.locator("rect.box[data-source='drawn']").get_attribute("data-label") == "fox"  # type: ignore[attr-defined]
    page.keyboard.press("Escape")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]  # select the first suggestion
    page.keyboard.press("x")  # type: ignore[attr-defined]  # reject it
    assert page.locator("rect.box").count() == suggested  # type: ignore[attr-defined]
    page.keyboard.press("Control+z")  # type: ignore[attr-defined]  # undo the rejection
    assert page.locator("rect.box").count() == suggested + 1  # type: ignore[attr-defined]
    screenshot(page, tmp_path, "2-drawn-fox")
    page.keyboard.press("a")  # type: ignore[attr-defined]
    page.wait_for_function(f"window.objdetAnnotate.task.key !== '{second_key}'")  # type: ignore[attr-defined]
    row = latest_rows(project)[second_key]
    assert row["label_ids"][-1] == 2 and row["sources"] == ["suggested"] * suggested + ["drawn"]
    drawn = row["boxes"][-1]
    expected = [0.1 * width, 0.15 * height, 0.45 * width, 0.6 * height]
    assert all(abs(a - b) <= 0.02 * max(width, height) for a, b in zip(drawn, expected)), (drawn, expected)
    assert row["rejected"] == []

    page.keyboard.press("Control+z")  # type: ignore[attr-defined]  # undo across images: back to the second one
    assert page.evaluate("window.objdetAnnotate.task.key") == second_key  # type: ignore[attr-defined]
    assert page.locator("rect.box").count() == suggested + 1  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    page.keyboard.press("Delete")  # type: ignore[attr-defined]
    screenshot(page, tmp_path, "3-undo-across-images")
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    page.wait_for_function(f"window.objdetAnnotate.task.key !== '{second_key}'")  # type: ignore[attr-defined]
    row = latest_rows(project)[second_key]
    assert row["rows"] == 2 and len(row["boxes"]) == suggested and len(row["rejected"]) == 1
    assert row["label_ids"][-1] == 2
    progress = page.locator("#progress").text_content()  # type: ignore[attr-defined]
    assert "model v1" in progress
    page.wait_for_function("document.getElementById('progress').textContent.startsWith('2 / 6')")  # type: ignore[attr-defined]
    screenshot(page, tmp_path, "4-progress")

    third_key = page.evaluate("window.objdetAnnotate.task.key")  # type: ignore[attr-defined]
    moved = show_top_suggestions(page, 1)
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    before = page.evaluate("[...window.objdetAnnotate.boxes[window.objdetAnnotate.selected].box]")  # type: ignore[attr-defined]
    rect = page.locator("rect.box.selected").bounding_box()  # type: ignore[attr-defined]
    center = (rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2)
    page.mouse.move(*center)  # type: ignore[attr-defined]
    page.mouse.down()  # type: ignore[attr-defined]
    page.mouse.move(center[0] - 15, center[1] - 10, steps=4)  # type: ignore[attr-defined]
    page.mouse.up()  # type: ignore[attr-defined]
    page.keyboard.press("a")  # type: ignore[attr-defined]
    page.wait_for_function(f"window.objdetAnnotate.task.key !== '{third_key}'")  # type: ignore[attr-defined]
    row = latest_rows(project)[third_key]
    assert len(row["boxes"]) == moved and row["sources"] == ["edited"]
    shift = [after - first for after, first in zip(row["boxes"][0], before)]
    assert shift[0] < 0 and shift[1] < 0 and abs(shift[0] - shift[2]) < 0.5 and abs(shift[1] - shift[3]) < 0.5, shift


def drag(page: object, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag in screen pixels, in small steps as a hand makes it."""
    page.mouse.move(*start)  # type: ignore[attr-defined]
    page.mouse.down()  # type: ignore[attr-defined]
    page.mouse.move(*end, steps=5)  # type: ignore[attr-defined]
    page.mouse.up()  # type: ignore[attr-defined]


def selected_box(page: object) -> list[float]:
    return page.evaluate("[...window.objdetAnnotate.boxes[window.objdetAnnotate.selected].box]")  # type: ignore[attr-defined, no-any-return]


def test_resize_by_corner_undo_and_redo(page: object, served: tuple[AnnotateServer, ProjectFiles],
                                        tmp_path: Path) -> None:
    server, project = served
    page.goto(f"{server.url}/?session=resizer")  # type: ignore[attr-defined]
    page.wait_for_selector("rect.box")  # type: ignore[attr-defined]
    key = page.evaluate("window.objdetAnnotate.task.key")  # type: ignore[attr-defined]
    shown = show_top_suggestions(page, 1)
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    original = selected_box(page)
    width, height = page.evaluate("[window.objdetAnnotate.task.width, window.objdetAnnotate.task.height]")  # type: ignore[attr-defined]
    x1, y1, x2, y2 = original
    # a corner inside the image (a box may touch its border), dragged inwards: the box shrinks
    corner, moves = next((name, moves) for name, moves, inside in [
        ("se", (-30, -20), x2 < width - 2 and y2 < height - 2), ("nw", (30, 20), x1 > 2 and y1 > 2),
        ("ne", (-30, 20), x2 < width - 2 and y1 > 2), ("sw", (30, -20), True)] if inside)
    handle = page.locator(f"rect.handle[data-corner='{corner}']").bounding_box()  # type: ignore[attr-defined]
    center = (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    drag(page, center, (center[0] + moves[0], center[1] + moves[1]))
    resized = selected_box(page)
    kept = {"se": (0, 1), "nw": (2, 3), "ne": (0, 3), "sw": (2, 1)}[corner]  # the opposite corner
    assert [resized[i] for i in kept] == [original[i] for i in kept], (corner, original, resized)
    assert (resized[2] - resized[0]) < (x2 - x1) and (resized[3] - resized[1]) < (y2 - y1), (original, resized)
    page.keyboard.press("Control+z")  # type: ignore[attr-defined]
    assert page.evaluate("window.objdetAnnotate.boxes[0].box") == original  # type: ignore[attr-defined]
    page.keyboard.press("Control+Shift+z")  # type: ignore[attr-defined]
    assert page.evaluate("window.objdetAnnotate.boxes[0].box") == resized  # type: ignore[attr-defined]
    page.keyboard.press("Control+z")  # type: ignore[attr-defined]
    page.keyboard.press("Control+y")  # type: ignore[attr-defined]  # the other redo key
    assert page.evaluate("window.objdetAnnotate.boxes[0].box") == resized  # type: ignore[attr-defined]
    screenshot(page, tmp_path, "5-resized")
    page.keyboard.press("a")  # type: ignore[attr-defined]
    page.wait_for_function(f"window.objdetAnnotate.task.key !== '{key}'")  # type: ignore[attr-defined]
    row = latest_rows(project)[key]
    assert (row["rows"], row["session"], row["sources"]) == (1, "resizer", ["edited"]) and shown == 1
    assert all(abs(a - b) <= 0.01 for a, b in zip(row["boxes"][0], resized)), (row["boxes"], resized)

    # undo across images, then redo: back on the new image, the first one's row untouched
    following = page.evaluate("window.objdetAnnotate.task.key")  # type: ignore[attr-defined]
    page.keyboard.press("Control+z")  # type: ignore[attr-defined]
    assert page.evaluate("window.objdetAnnotate.task.key") == key  # type: ignore[attr-defined]
    page.keyboard.press("Control+Shift+z")  # type: ignore[attr-defined]
    assert page.evaluate("[window.objdetAnnotate.task.key, window.objdetAnnotate.historyIndex]") == [following, -1]  # type: ignore[attr-defined]
    assert latest_rows(project)[key]["rows"] == 1
    page.keyboard.press("i")  # type: ignore[attr-defined]  # answering works as before the undo
    page.wait_for_function(f"window.objdetAnnotate.task === null || window.objdetAnnotate.task.key !== '{following}'")  # type: ignore[attr-defined]
    rows = latest_rows(project)
    assert (rows[following]["answer"], rows[following]["session"], rows[following]["rows"]) == ("ignore", "resizer", 1)
    assert rows[key]["rows"] == 1
