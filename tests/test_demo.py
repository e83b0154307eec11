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
