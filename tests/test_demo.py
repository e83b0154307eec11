"""The main job's plumbing (convert, train, evaluate, export, draw) with 2 training steps."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from objdet.demo import AP50, run_demo


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", num_train_steps=2, num_workers=0, num_drawings=2)
    assert 0.0 <= result.ap50 <= 1.0 and result.metrics[AP50] == result.ap50
    assert "DetectionBoxes_Precision/mAP" in result.metrics  # both configured metrics sets
    assert (result.export_dir / "model.pt2").is_file() and (result.export_dir / "signature.json").is_file()
    assert [p.name for p in result.drawings] == ["raccoon-146.png", "raccoon-105.png"]
    assert Image.open(result.drawings[0]).size == (275, 183)  # drawn on the original test image
    assert (tmp_path / "demo" / "data" / "train.record").stat().st_size > 1_000_000
    assert set(result.seconds) == {"convert", "train+eval", "export+detect", "total"}


def test_demo_runs_from_an_installed_package(tmp_path: Path) -> None:
    """A built wheel carries the demo's config and dataset: run from a folder outside the tree."""
    import os
    import subprocess
    import sys
    import zipfile

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
    assert "AP@0.5 on the raccoon test split:" in demo.stdout
    assert (elsewhere / "out" / "export" / "model.pt2").is_file()
