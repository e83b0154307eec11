from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from objdet.engine.checkpoint import CheckpointManager
from objdet.engine.checkpoint_file import verify_checkpoint_file
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


def _flip_byte_inside(path: Path, pattern: bytes) -> None:
    """Flip one bit in the middle of ``pattern``'s bytes inside the file (tensor data)."""
    data = bytearray(path.read_bytes())
    start = data.find(pattern)
    assert start > 0 and data.find(pattern, start + 1) == -1
    data[start + len(pattern) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_tensor_data_is_a_checksum_mismatch(tmp_path: Path) -> None:
    weights = torch.arange(4096, dtype=torch.float32)
    path = CheckpointManager(tmp_path).save(3, {"model": {"w": weights}})
    assert verify_checkpoint_file(path)
    _flip_byte_inside(path, weights.numpy().tobytes())
    # What objdet must guard against: torch.load reads the damaged weight without a word.
    silently = torch.load(path, weights_only=False)
    assert not torch.equal(silently["model"]["w"], weights)
    with pytest.raises(ObjdetError, match=rf"^{path}: checksum mismatch: ") as caught:
        CheckpointManager.load(path)
    assert "\n" not in str(caught.value)


def test_the_checksum_travels_with_a_copied_file_and_zip_readers_still_read_it(tmp_path: Path) -> None:
    weights = torch.linspace(0, 1, 2048)
    path = CheckpointManager(tmp_path / "run").save(8, {"model": {"w": weights}})
    copied = tmp_path / "elsewhere" / "copy.pt"
    copied.parent.mkdir()
    shutil.copyfile(path, copied)  # the file alone, without checkpoint.json
    assert zipfile.ZipFile(copied).comment.startswith(b"objdet-sha256:")
    assert zipfile.ZipFile(copied).testzip() is None
    assert torch.equal(CheckpointManager.load(copied)["model"]["w"], weights)
    _flip_byte_inside(copied, weights.numpy().tobytes())
    with pytest.raises(ObjdetError, match="copy.pt: checksum mismatch"):
        CheckpointManager.load(copied)


def test_checkpoints_without_a_checksum_still_load(tmp_path: Path) -> None:
    """Written before objdet recorded digests (plain torch.save), or cut short."""
    older = tmp_path / "ckpt-4.pt"
    torch.save({"step": 4, "model": {"w": torch.ones(3)}}, older)
    assert not verify_checkpoint_file(older)
    assert CheckpointManager.load(older)["step"] == 4
    path = CheckpointManager(tmp_path / "new").save(5, {"model": {"w": torch.ones(300)}})
    path.write_bytes(path.read_bytes()[:-100])  # truncated: its digest went with the tail
    with pytest.raises(ObjdetError, match="ckpt-5.pt: cannot load checkpoint"):
        CheckpointManager.load(path)
