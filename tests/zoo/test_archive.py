"""Safe extraction: members outside ``NAME/``, links and special files are refused before
anything lands outside the destination; a tarball without a checkpoint is not a zoo model."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from zoo_mirror import NAME, make_tarball

from objdet.errors import DataError
from objdet.zoo.archive import extract_model_archive


def _tarball(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_the_zoo_layout_is_extracted_without_saved_model(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(make_tarball(NAME))
    files = extract_model_archive(archive, NAME, tmp_path / "out", "the tarball")
    assert sorted(files) == ["checkpoint/checkpoint", "checkpoint/ckpt-0.data-00000-of-00001",
                             "checkpoint/ckpt-0.index", "pipeline.config"]
    assert (tmp_path / "out" / "checkpoint" / "ckpt-0.index").is_file()
    assert not (tmp_path / "out" / "saved_model").exists()


@pytest.mark.parametrize("member", [
    _file(f"{NAME}/../escaped"),
    _file("/tmp/absolute"),
    _file("other_model/pipeline.config"),
    _link(f"{NAME}/checkpoint/ckpt-0.index", "/etc/passwd", tarfile.SYMTYPE),
    _link(f"{NAME}/pipeline.config", "../../outside", tarfile.LNKTYPE),
    _link(f"{NAME}/fifo", "", tarfile.FIFOTYPE),
], ids=["dot-dot", "absolute", "other-folder", "symlink", "hardlink", "fifo"])
def test_members_outside_the_model_or_links_are_refused(
    member: tarfile.TarInfo, tmp_path: Path
) -> None:
    archive = _tarball(tmp_path / "bad.tar.gz", _file(f"{NAME}/pipeline.config"), member)
    destination = tmp_path / "sandbox" / "out"
    with pytest.raises(DataError, match=f"the tarball: member '{member.name}'"):
        extract_model_archive(archive, NAME, destination, "the tarball")
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(destination)]
    assert sorted(p.name for p in outside) == ["bad.tar.gz", "sandbox"]


def test_a_tarball_without_a_checkpoint_is_not_a_zoo_model(tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "empty.tar.gz", _file(f"{NAME}/pipeline.config"))
    with pytest.raises(DataError, match=f"not a TF2 zoo tarball: no {NAME}/checkpoint/ckpt-0.index"):
        extract_model_archive(archive, NAME, tmp_path / "out", "the tarball")
