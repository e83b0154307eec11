"""TFRecord output that survives SIGKILL at any point and resumes where it was committed.

Each output file ``OUT`` is written as ``.OUT.partial`` beside it (records appended in
order). Every ``commit`` first flushes and fsyncs the partial files, then atomically
replaces the run's progress sidecar (``objdet.atomic``) with, per file, the committed byte
length, record count and the CRC of the last record, plus the run's ``key`` (inputs, model,
flags) and the caller's counters. ``finish`` renames each partial file onto its target and
removes the sidecar.

On ``open`` the sidecar is trusted only when its key equals this run's and every partial
file is at least as long as committed: the files are then truncated to the committed length
(dropping records appended after the last commit, torn writes included), re-verified (record
count from the record headers, CRC of the last record) and appending continues; the caller
skips the committed number of input records. Anything else (no sidecar, another run's,
a partial file shorter than committed, a verification failure, or a kill between the
final renames) starts over from record 0, which is always correct because the output is a
function of the inputs. Since the sidecar only ever describes bytes already on disk, a kill
before, during or after a commit leaves a state that resumes to the same bytes.

Each partial file is locked (``flock``) while open, so two runs writing the same output
fail fast instead of interleaving; the kernel drops the lock when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from objdet.atomic import atomic_write, require_writable_directory
from objdet.data.tfrecord import HEADER_SIZE, RECORD_FOOTER, masked_crc32c
from objdet.data.tfrecord_index import TFRecordIndex
from objdet.errors import DataError, ObjdetError

_FORMAT = "objdet-resumable-output-1"


@dataclass
class Resumed:
    """Where ``open`` left the output: committed records and the caller's counters then."""

    records: int = 0
    counters: dict[str, int] | None = None
    restart_reason: str | None = None  # why a sidecar found was not used


@dataclass
class _Output:
    path: Path
    partial: Path
    handle: IO[bytes]
    size: int = 0  # bytes written (committed or not)
    records: int = 0
    last_crc: int = 0  # masked crc32c of the last record's data


class ResumableRecordWriter:
    """Append records round-robin to ``paths`` (record ``k`` -> ``paths[k % len(paths)]``),
    resumable through the sidecar ``progress_path`` (see the module docstring).

    ``key`` identifies the run (JSON-serializable); None disables resuming (every open starts
    over). Use as a context manager: leaving it with an exception keeps the committed state
    for the next run, ``abandon()`` removes it, ``finish()`` publishes the files.
    """

    def __init__(self, paths: list[str], progress_path: Path, key: object | None) -> None:
        self.progress_path = progress_path
        self.key = key
        self.records = 0  # records written, committed or not
        self._outputs: list[_Output] = []
        self._paths = [Path(path) for path in paths]

    def open(self) -> Resumed:
        """Lock and open the partial files; resume from the sidecar when it is valid."""
        for path in self._paths:
            require_writable_directory(path.parent, os.fspath(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            handle = open(partial, "ab+")  # noqa: SIM115 - closed by close()/finish()
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise ObjdetError(
                    f"{path}: another process is writing it (lock on {partial})") from None
            self._outputs.append(_Output(path, partial, handle))
        resumed = self._resume()
        if resumed.records == 0:
            for output in self._outputs:
                output.handle.truncate(0)
                output.size = output.records = 0
        return resumed

    def write(self, record: bytes) -> None:
        """Append one record to its file (one write call for the whole framed record)."""
        output = self._outputs[self.records % len(self._outputs)]
        length = struct.pack("<Q", len(record))
        crc = masked_crc32c(record)
        framed = b"".join(
            (length, RECORD_FOOTER.pack(masked_crc32c(length)), record, RECORD_FOOTER.pack(crc)))
        output.handle.write(framed)
        output.size += len(framed)
        output.records += 1
        output.last_crc = crc
        self.records += 1

    def commit(self, counters: dict[str, int]) -> None:
        """Make every record written so far durable and the resume point (with ``counters``)."""
        if self.key is None:
            return
        for output in self._outputs:
            output.handle.flush()
            os.fsync(output.handle.fileno())
        state = {
            "format": _FORMAT, "key": self.key, "records": self.records, "counters": counters,
            "outputs": [{"path": os.fspath(o.path), "bytes": o.size, "records": o.records,
                         "last_crc": o.last_crc} for o in self._outputs],
        }
        with atomic_write(self.progress_path, "w") as handle:
            json.dump(state, handle)

    def flush(self) -> None:
        for output in self._outputs:
            output.handle.flush()

    def finish(self) -> list[str]:
        """Fsync, rename every partial file onto its target, remove the sidecar."""
        for output in self._outputs:
            output.handle.flush()
            os.fsync(output.handle.fileno())
            os.replace(output.partial, output.path)
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.progress_path.unlink()
        return [os.fspath(output.path) for output in self._outputs]

    def abandon(self) -> None:
        """Remove the partial files and the sidecar (after an error no restart can get past)."""
        for output in self._outputs:
            with contextlib.suppress(FileNotFoundError):
                output.partial.unlink()
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.progress_path.unlink()

    def close(self) -> None:
        """Close (and unlock) the files, keeping whatever was committed."""
        for output in self._outputs:
            output.handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- resuming ------------------------------------------------------------------------
    def _resume(self) -> Resumed:
        if self.key is None or not self.progress_path.is_file():
            return Resumed()
        try:
            state = json.loads(self.progress_path.read_text())
        except (OSError, ValueError) as error:
            return Resumed(restart_reason=f"{self.progress_path}: unreadable ({error})")
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            return Resumed(restart_reason=f"{self.progress_path}: not an objdet progress file")
        if state.get("key") != self.key:
            return Resumed(restart_reason=f"{self.progress_path}: written by a run with other "
                                          "inputs, model or flags")
        problem = self._verify(state)
        if problem is not None:
            return Resumed(restart_reason=f"{self.progress_path}: {problem}")
        self.records = int(state["records"])
        return Resumed(records=self.records, counters=dict(state.get("counters") or {}))

    def _verify(self, state: dict[str, Any]) -> str | None:
        """Truncate each partial file to its committed length and check it; the problem or None."""
        committed = state.get("outputs")
        if not isinstance(committed, list) or len(committed) != len(self._outputs):
            return "its output files are not this run's"
        total = 0
        for output, entry in zip(self._outputs, committed):
            size, records = int(entry["bytes"]), int(entry["records"])
            if entry.get("path") != os.fspath(output.path):
                return "its output files are not this run's"
            if os.fstat(output.handle.fileno()).st_size < size:
                return f"{output.partial} is shorter than committed ({size} bytes)"
            output.handle.truncate(size)
            output.handle.flush()
            problem = _check_records(output.partial, records, int(entry["last_crc"]))
            if problem is not None:
                return problem
            output.size, output.records, output.last_crc = size, records, int(entry["last_crc"])
            total += records
        if total != int(state["records"]):
            return f"records per file add up to {total}, not {state['records']}"
        return None


def _check_records(path: Path, expected: int, last_crc: int) -> str | None:
    """The record count (from the headers) and the last record's data CRC of ``path``."""
    try:
        index = TFRecordIndex.build(os.fspath(path))
    except DataError as error:
        return str(error)
    if len(index) != expected:
        return f"{path} holds {len(index)} records where {expected} were committed"
    if expected == 0:
        return None
    offset, length = index.offsets[-1], index.lengths[-1]
    with open(path, "rb") as handle:
        handle.seek(offset + HEADER_SIZE)
        data = handle.read(length)
        (stored_crc,) = RECORD_FOOTER.unpack(handle.read(4))
    if not masked_crc32c(data) == stored_crc == last_crc:
        return f"{path}: its last committed record does not match the committed CRC"
    return None
