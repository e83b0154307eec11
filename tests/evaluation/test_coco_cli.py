"""``objdet eval-coco`` as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_coco_data import make_dataset, pycocotools_eval, write_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "objdet", "eval-coco", *args],
                          capture_output=True, text=True, timeout=120, check=False)


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
    ground_truth, results = make_dataset(12, num_images=5)
    results.append({"image_id": 999, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.3})
    gt_path, dt_path = write_dataset(tmp_path, ground_truth, results)
    done = _run("--gt", str(gt_path), "--dt", str(dt_path))
    assert done.returncode == 2
    assert "image_id 999 is not in the ground truth" in done.stderr
    assert "Traceback" not in done.stderr
