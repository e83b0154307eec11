"""TFRecord files: TensorFlow's framing of a sequence of byte strings, without TensorFlow.

Each record is framed as::

    uint64 length (little-endian) | uint32 masked crc32c(length bytes) | data | uint32 masked crc32c(data)

with ``masked(crc) = ((crc >> 15 | crc << 17) + 0xa282ead8) & 0xffffffff``. Both CRCs are
checked on every read. Reads are buffered and streamed (memory stays flat however large the
file); writes are atomic (temporary name beside the target, renamed on close).

An empty file is a valid TFRecord file with 0 records, as in TensorFlow; ``verify`` warns
about it. A corrupt record raises ``DataError`` naming the file, record index and byte
offset, unless ``skip_corrupt=True``: then it is skipped and counted in a ``ReadReport``.
After a corrupt length header the rest of the file cannot be re-synchronised, so the
remaining bytes are reported as skipped and reading moves on to the next file.

Random access and record counting by offset index live in ``objdet.data.tfrecord_index``,
which builds on the framing pieces exported here (``RECORD_HEADER``, ``parse_header``, ...).
This module does not import torch.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import google_crc32c

from objdet.atomic import atomic_write
from objdet.data.input_paths import expand_input_paths, sharded_name
from objdet.errors import DataError

PathSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

RECORD_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
RECORD_FOOTER = struct.Struct("<I")  # masked crc of the data
HEADER_SIZE = 12
FRAMING_SIZE = 16  # header + footer bytes around each payload
_READ_BUFFER = 1 << 20  # large enough that small records never cost a system call each
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data`` (masking keeps CRCs of CRCs well distributed)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def record_source(path: str, index: int, offset: int) -> str:
    """How errors name a record: ``file.record#17 (offset 12345)``."""
    return f"{path}#{index} (offset {offset})"


@dataclass
class RecordProblem:
    """A corrupt record or framing error found while reading."""

    path: str
    record_index: int
    offset: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.path}: record {self.record_index} at byte offset {self.offset}: {self.message}"
        )


@dataclass
class ReadReport:
    """What a read with ``skip_corrupt=True`` read and skipped; pass one in to collect it."""

    records_read: int = 0
    records_skipped: int = 0
    bytes_skipped: int = 0
    problems: list[RecordProblem] = field(default_factory=list)
    records_per_file: dict[str, int] = field(default_factory=dict)


# -- writing ------------------------------------------------------------------------------
class TFRecordWriter:
    """Write records to ``path`` atomically: the file appears complete on ``close()`` or not at all.

    Use as a context manager; on an exception inside the ``with`` block nothing is written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.records_written = 0
        self._stack = contextlib.ExitStack()
        self._handle: IO[Any] = self._stack.enter_context(atomic_write(self.path, "wb"))

    def write(self, record: bytes) -> None:
        """Append one record (any bytes-like object)."""
        data = record if isinstance(record, bytes) else bytes(record)
        length = struct.pack("<Q", len(data))
        self._handle.write(length + RECORD_FOOTER.pack(masked_crc32c(length)))
        self._handle.write(data)
        self._handle.write(RECORD_FOOTER.pack(masked_crc32c(data)))
        self.records_written += 1

    def close(self) -> None:
        """Flush, fsync and rename the file into place."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # hands the exception to atomic_write, which deletes the temporary file
            self._stack.__exit__(exc_type, exc, traceback)


def write_sharded(
    records: Iterable[bytes], output_path: str | os.PathLike[str], num_shards: int
) -> list[str]:
    """Write records round-robin over ``num_shards`` files (record i -> shard i % N).

    As the OD API's ``open_sharded_output_tfrecords``: ``num_shards > 1`` writes
    ``OUT-00000-of-0000N`` ...; ``num_shards == 1`` writes ``OUT`` itself. All shards are
    renamed into place only after every record was written. Returns the written paths.
    """
    if num_shards < 1:
        raise DataError(f"{output_path}: num_shards must be >= 1, got {num_shards}")
    base = os.fspath(output_path)
    paths = (
        [base]
        if num_shards == 1
        else [sharded_name(base, i, num_shards) for i in range(num_shards)]
    )
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(TFRecordWriter(path)) for path in paths]
        for index, record in enumerate(records):
            writers[index % num_shards].write(record)
    return paths


# -- streaming reads ----------------------------------------------------------------------
def read_records(
    paths_or_spec: PathSpec, skip_corrupt: bool = False, report: ReadReport | None = None
) -> Iterator[bytes]:
    """Yield every record's bytes from the files named by ``paths_or_spec``, CRC-checked.

    ``paths_or_spec`` is anything ``expand_input_paths`` accepts (globs, ``@N``, commas).
    With ``skip_corrupt`` corrupt records are skipped and recorded in ``report``.
    """
    for path in expand_paths(paths_or_spec):
        for _, _, data in _scan_file(path, skip_corrupt, report):
            yield data


def read_records_with_source(
    paths_or_spec: PathSpec, skip_corrupt: bool = False, report: ReadReport | None = None
) -> Iterator[tuple[str, bytes]]:
    """As ``read_records``, yielding ``(source, data)``; source is ``file#index (offset N)``."""
    for path in expand_paths(paths_or_spec):
        for index, offset, data in _scan_file(path, skip_corrupt, report):
            yield record_source(path, index, offset), data


def expand_paths(paths_or_spec: PathSpec) -> list[str]:
    """The files named by ``paths_or_spec`` (a path, a spec string or a list of either)."""
    if isinstance(paths_or_spec, os.PathLike):
        paths_or_spec = os.fspath(paths_or_spec)
    if isinstance(paths_or_spec, str):
        return expand_input_paths(paths_or_spec)
    return expand_input_paths([os.fspath(item) for item in paths_or_spec])


def open_record_fd(path: str) -> int:
    """A read-only file descriptor for ``path``; a missing or unreadable file is a DataError."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise DataError(f"{path}: TFRecord file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot open TFRecord file: {error.strerror}") from None


def parse_header(header: bytes, offset: int, file_size: int) -> tuple[int, str | None]:
    """``(payload length, None)`` for a good record header, else ``(length, the problem)``."""
    if len(header) != HEADER_SIZE:
        return 0, f"truncated file: {len(header)} bytes where a 12-byte record header starts"
    length, length_crc = RECORD_HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        return length, f"corrupt length header: CRC mismatch (length field reads {length})"
    if offset + FRAMING_SIZE + length > file_size:
        remaining = file_size - offset - HEADER_SIZE
        return length, (
            f"truncated file or garbage length: the record needs {length + 4} bytes "
            f"after its header, {remaining} remain"
        )
    return length, None


def _scan_file(
    path: str, skip_corrupt: bool, report: ReadReport | None
) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record index, byte offset, data)`` for each good record of one file."""
    report = report if report is not None else ReadReport()
    index = offset = good = 0
    with open(open_record_fd(path), "rb", buffering=_READ_BUFFER) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        read, crc, unpack_footer = handle.read, masked_crc32c, RECORD_FOOTER.unpack
        try:
            while header := read(HEADER_SIZE):
                length, problem = parse_header(header, offset, file_size)
                if problem is None:
                    data = read(length)
                    footer = read(4)
                    if len(footer) != 4:  # the file shrank while we read it
                        problem = "truncated file: it ended inside the record"
                if problem is not None:  # framing lost: the rest of the file is unreadable
                    rest = file_size - offset
                    problem += (
                        f"; skipped the last {rest} bytes of the file" if skip_corrupt else ""
                    )
                    _skip(report, skip_corrupt, RecordProblem(path, index, offset, problem), rest)
                    return
                if crc(data) == unpack_footer(footer)[0]:
                    good += 1
                    yield index, offset, data
                else:
                    problem = f"data CRC mismatch ({length} data bytes)"
                    where = RecordProblem(path, index, offset, problem)
                    _skip(report, skip_corrupt, where, FRAMING_SIZE + length, records=1)
                index += 1
                offset += FRAMING_SIZE + length
        finally:
            report.records_read += good
            report.records_per_file[path] = report.records_per_file.get(path, 0) + good


def _skip(
    report: ReadReport, skip_corrupt: bool, problem: RecordProblem, size: int, records: int = 0
) -> None:
    """Raise for ``problem``, or (skip_corrupt) count the skipped bytes and records."""
    if not skip_corrupt:
        raise DataError(str(problem))
    report.problems.append(problem)
    report.bytes_skipped += size
    report.records_skipped += records


# -- verification -------------------------------------------------------------------------
@dataclass
class FileReport:
    """One file's verification: good records, size, problems (errors) and warnings."""

    path: str
    records: int
    size_bytes: int
    problems: list[RecordProblem]
    warnings: list[str]


def verify(paths_or_spec: PathSpec) -> list[FileReport]:
    """Read every record of every file, checking all CRCs; never raises for corrupt data.

    A missing file or a pattern matching nothing still raises ``DataError``. An empty file
    (0 records) is valid TFRecord but gets a warning.
    """
    reports = []
    for path in expand_paths(paths_or_spec):
        found = ReadReport()
        for _ in _scan_file(path, True, found):
            pass
        empty = not found.records_read and not found.problems
        warnings = [f"{path}: 0 records (empty file)"] if empty else []
        size = os.path.getsize(path)
        reports.append(FileReport(path, found.records_read, size, found.problems, warnings))
    return reports
