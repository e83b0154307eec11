"""One checkpoint file: ``torch.save``'s zip archive carrying the sha256 of its own bytes.

``torch.load`` does not check the CRCs of the zip it reads, so a flipped byte in the tensor
data loads silently as a wrong weight. objdet therefore records a digest when it writes a
checkpoint and checks it on every load. The digest lives in the zip's archive comment
(the last bytes of the file, after the end-of-central-directory record), so it travels with
the file when the file alone is copied, and every zip reader, ``torch.load`` included, still
reads the archive::

    <zip as torch.save wrote it, comment length 0> -> sha256 -> hex digest
    file = that zip with its comment length set to 78, then b"objdet-sha256:" + hex digest

A file without the comment (written before objdet recorded digests, or by ``torch.save``
directly) loads without the check.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import IO, Any, cast

import torch

from objdet.errors import ObjdetError

_PREFIX = b"objdet-sha256:"
_COMMENT_LENGTH = len(_PREFIX) + 64  # hex sha256
_END_RECORD = b"PK\x05\x06"  # zip end-of-central-directory signature
_END_RECORD_SIZE = 22  # without its comment; the comment length is its last 2 bytes
_CHUNK = 1 << 20


class _HashingWriter:
    """A write-only file that hashes what passes through it (``torch.save`` target)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def write_checkpoint_file(state: dict[str, Any], handle: IO[bytes]) -> None:
    """``torch.save(state)`` into ``handle`` (a seekable binary file at position 0), with the
    sha256 of the archive as its zip comment."""
    writer = _HashingWriter(handle)
    torch.save(state, cast(IO[bytes], writer))  # torch.save only calls write and flush
    handle.seek(writer.size - 2)
    handle.write(_COMMENT_LENGTH.to_bytes(2, "little"))
    handle.seek(writer.size)
    handle.write(_PREFIX + writer.digest.hexdigest().encode("ascii"))


def stored_digest(path: str | os.PathLike[str]) -> str | None:
    """The hex sha256 recorded in ``path``'s zip comment; None if it has none."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        tail_size = _END_RECORD_SIZE + _COMMENT_LENGTH
        if size < tail_size:
            return None
        handle.seek(size - tail_size)
        tail = handle.read(tail_size)
    if (
        tail[:4] != _END_RECORD
        or tail[20:22] != _COMMENT_LENGTH.to_bytes(2, "little")
        or not tail[_END_RECORD_SIZE:].startswith(_PREFIX)
    ):
        return None
    return tail[_END_RECORD_SIZE + len(_PREFIX):].decode("ascii", errors="replace")


def computed_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 of ``path``'s archive as it was written (empty comment), for comparison
    with ``stored_digest``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        remaining = handle.seek(0, os.SEEK_END) - _COMMENT_LENGTH - 2
        handle.seek(0)
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    digest.update(b"\x00\x00")  # the comment length as torch.save wrote it
    return digest.hexdigest()


def verify_checkpoint_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` carries a digest and matches it; False if it carries none (an older
    checkpoint); ``ObjdetError`` naming the file on a mismatch."""
    stored = stored_digest(path)
    if stored is None:
        return False
    actual = computed_digest(path)
    if actual != stored:
        raise ObjdetError(
            f"{path}: checksum mismatch: its bytes changed after it was written (sha256 "
            f"{actual[:16]}..., recorded {stored[:16]}...); the file is corrupt"
        )
    return True


def load_checkpoint_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Verify ``path``'s digest (when it has one), then ``torch.load`` it."""
    path = Path(path)
    try:
        verify_checkpoint_file(path)
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise ObjdetError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise ObjdetError(f"{path}: is a directory, expected a checkpoint file") from None
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as error:
        detail = " ".join(str(error).split())  # one line, whatever torch says
        raise ObjdetError(f"{path}: cannot load checkpoint: {detail}") from None
