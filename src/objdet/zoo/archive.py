"""Safe extraction of a TF2 zoo tarball: ``NAME/checkpoint/*``, ``NAME/pipeline.config``.

Every member must lie under ``NAME/`` (no absolute path, no ``..``) and be a plain file or a
folder: a link or a device is an error, so nothing can be written outside the destination.
``NAME/saved_model/`` (a TensorFlow SavedModel, as big as the checkpoint) is not extracted:
objdet reads the checkpoint. The gzip stream is read to its end first, so that its CRC proves
the download whole even where no sha256 was known.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from objdet.errors import DataError

SKIPPED_FOLDERS = ("saved_model",)
REQUIRED_FILES = ("pipeline.config", "checkpoint/ckpt-0.index")


def check_gzip(archive: Path, label: str) -> None:
    """``DataError`` unless ``archive`` is a complete gzip stream (its CRC and size match)."""
    try:
        with gzip.open(archive, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{label}: not a complete .tar.gz ({error})") from None


def extract_model_archive(archive: Path, name: str, destination: Path, label: str) -> dict[str, str]:
    """Extract ``archive``'s ``name/`` tree into ``destination`` (without the ``name/``
    prefix); returns the sha256 of every extracted file by its relative path.

    ``label`` names the archive in errors (its URL).
    """
    check_gzip(archive, label)
    files: dict[str, str] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                relative = _relative_path(member, name, label)
                if relative is None or relative.parts[0] in SKIPPED_FOLDERS:
                    continue
                target = destination.joinpath(*relative.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise DataError(f"{label}: member {member.name!r} cannot be read")
                files[relative.as_posix()] = _copy_hashed(source, target)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise DataError(f"{label}: not a readable tar archive ({error})") from None
    missing = [path for path in REQUIRED_FILES if path not in files]
    if missing:
        raise DataError(f"{label}: not a TF2 zoo tarball: no {name}/{missing[0]} in it")
    return files


def _relative_path(member: tarfile.TarInfo, name: str, label: str) -> PurePosixPath | None:
    """The member's path below ``name/`` (None for ``name/`` itself); ``DataError`` for a
    member outside it, a link, or anything but a file or a folder."""
    path = PurePosixPath(member.name.removeprefix("./"))
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != name:
        raise DataError(f"{label}: member {member.name!r} is not inside {name}/")
    if not (member.isfile() or member.isdir()):
        raise DataError(
            f"{label}: member {member.name!r} is a link or special file; a zoo tarball holds "
            "only files and folders"
        )
    return PurePosixPath(*path.parts[1:]) if len(path.parts) > 1 else None


def _copy_hashed(source: IO[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as handle:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()
