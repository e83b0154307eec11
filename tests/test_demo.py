"""The main job's plumbing (convert, train, evaluate, export, draw) with 1 training step, run
as a user runs it: ``objdet demo`` from a built wheel, in a folder outside the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image

from objdet.demo import AP50


def test_demo_runs_end_to_end_from_an_installed_package(tmp_path: Path) -> None:
    """A built wheel carries the demo's config and dataset; the run converts, trains,
    evaluates with both configured metrics sets, exports and draws."""
    repo = Path(__file__).resolve().parents[1]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(repo), "-w", str(wheels)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = wheels.glob("objdet-*.whl")
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)  # what pip install puts in site-packages
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}

    where = subprocess.run([sys.executable, "-c", "import objdet.samples as s; print(s.__file__)"],
                           env=env, cwd=elsewhere, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(installed)  # not the source tree

    demo = subprocess.run(
        [sys.executable, "-m", "objdet", "demo", "--num_train_steps", "1", "--num_workers", "0",
         "--seed", "3", "--output_dir", "out"],
        env=env, cwd=elsewhere, capture_output=True, text=True, check=False,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    out = elsewhere / "out"
    printed = float(demo.stdout.split("AP@0.5 on the raccoon test split:")[1].split()[0])
    metrics = json.loads((out / "model" / "eval" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= printed <= 1.0 and abs(metrics[AP50] - printed) < 1e-4
    assert "DetectionBoxes_Precision/mAP" in metrics  # both configured metrics sets
    assert (out / "export" / "model.pt2").is_file() and (out / "export" / "signature.json").is_file()
    drawings = sorted((out / "detections").glob("*.png"))
    assert [p.name for p in drawings] == sorted(
        ["raccoon-146.png", "raccoon-105.png", "raccoon-143.png", "raccoon-57.png"]), drawings
    assert Image.open(out / "detections" / "raccoon-146.png").size == (275, 183)  # the original image
    assert (out / "data" / "train.record").stat().st_size > 1_000_000
    assert "wall time: convert" in demo.stdout
