from __future__ import annotations

from pathlib import Path

import pytest
import torch

from objdet.engine.checkpoint import CheckpointManager
from objdet.errors import ObjdetError


def test_keeps_last_and_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, ap in [(10, 0.3), (20, 0.7), (30, 0.5), (40, 0.6)]:
        manager.save(step, {"w": torch.tensor([float(step)])}, metric=("AP", ap))
    index = manager.read_index()
    assert index.best == "ckpt-20.pt" and index.best_value == 0.7
    assert index.checkpoints == ["ckpt-20.pt", "ckpt-30.pt", "ckpt-40.pt"]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["ckpt-20.pt", "ckpt-30.pt", "ckpt-40.pt"]
    assert manager.latest_path() == tmp_path / "ckpt-40.pt"
    state = manager.load(manager.latest_path())
    assert state["step"] == 40 and state["w"].item() == 40.0


def test_nan_metric_never_becomes_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(1, {}, metric=("AP", float("nan")))
    manager.save(2, {}, metric=("AP", 0.1))
    assert manager.read_index().best == "ckpt-2.pt"


def test_index_rebuilt_from_files_and_bad_files(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(5, {})
    manager.save(12, {})
    (tmp_path / "checkpoint.json").unlink()
    assert manager.read_index().checkpoints == ["ckpt-5.pt", "ckpt-12.pt"]
    (tmp_path / "ckpt-99.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ObjdetError, match="ckpt-99.pt: cannot load checkpoint"):
        manager.load(tmp_path / "ckpt-99.pt")
    with pytest.raises(ObjdetError, match="not found"):
        manager.load(tmp_path / "ckpt-1000.pt")
