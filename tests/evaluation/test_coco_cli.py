"""``objdet eval-coco`` as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_coco_data import make_dataset, pycocotools_eval, write_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "objdet", "eval-coco", *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def _assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2 and a single ``objdet eval-coco: error: ...`` line holding every fragment."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("objdet eval-coco: error: ")
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_cli_prints_pycocotools_numbers(tmp_path: Path) -> None:
    ground_truth, results = make_dataset(11, num_images=30)
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    done = _run("--gt", str(gt_path), "--dt", str(dt_path), "--iou_type", "segm")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    reference = pycocotools_eval(gt_path, dt_path, "segm")
    assert output["stats"] == [float(value) for value in reference.stats]
    assert output["DetectionMasks_Precision/mAP"] == reference.stats[0]


def test_cli_names_the_unknown_image(tmp_path: Path) -> None:
    """pycocotools asserts on a detection of an image the ground truth lacks."""
    ground_truth, results = make_dataset(12, num_images=5)
    results.append({"image_id": 999, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.3})
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    done = _run("--gt", str(gt_path), "--dt", str(dt_path), cwd=tmp_path)
    _assert_one_line_error(
        done, str(dt_path), f"detections[{len(results) - 1}]", "image_id 999 is not in the ground truth")


@pytest.mark.parametrize(
    ("section", "first", "second"),
    [("images", 1, 3), ("annotations", 0, 2), ("categories", 0, 1)],
)
def test_cli_rejects_a_repeated_ground_truth_id(
    section: str, first: int, second: int, tmp_path: Path
) -> None:
    """A repeated id (pycocotools keeps one silently) names the file, the id, both positions."""
    ground_truth, results = make_dataset(13, num_images=5)
    entries = ground_truth[section]
    assert len(entries) > second
    entries[second]["id"] = entries[first]["id"]
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    done = _run("--gt", str(gt_path), "--dt", str(dt_path), cwd=tmp_path)
    repeated = entries[first]["id"]
    _assert_one_line_error(
        done, str(gt_path), f"{section}[{second}]: id {repeated!r} repeats {section}[{first}]")
