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

Random access (``IndexedTFRecords``) uses an offset index built by reading only the 12-byte
headers (the payloads are seeked over), cached in memory and optionally in ``<file>.idx``.
This module does not import torch.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import google_crc32c

from objdet.atomic import atomic_write
from objdet.data.input_paths import INDEX_SUFFIX, expand_input_paths, sharded_name
from objdet.errors import DataError

PathSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
_FOOTER = struct.Struct("<I")  # masked crc of the data
_HEADER_SIZE = 12
_FRAMING_SIZE = 16  # header + footer bytes around each payload
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
        self._handle.write(length + _FOOTER.pack(masked_crc32c(length)))
        self._handle.write(data)
        self._handle.write(_FOOTER.pack(masked_crc32c(data)))
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
    for path in _expand(paths_or_spec):
        for _, _, data in _scan_file(path, skip_corrupt, report):
            yield data


def read_records_with_source(
    paths_or_spec: PathSpec, skip_corrupt: bool = False, report: ReadReport | None = None
) -> Iterator[tuple[str, bytes]]:
    """As ``read_records``, yielding ``(source, data)``; source is ``file#index (offset N)``."""
    for path in _expand(paths_or_spec):
        for index, offset, data in _scan_file(path, skip_corrupt, report):
            yield record_source(path, index, offset), data


def count_records(paths_or_spec: PathSpec) -> int:
    """Number of records, from the offset index (length headers are CRC-checked, payloads skipped)."""
    return sum(len(TFRecordIndex.for_file(path)) for path in _expand(paths_or_spec))


def _expand(paths_or_spec: PathSpec) -> list[str]:
    if isinstance(paths_or_spec, os.PathLike):
        paths_or_spec = os.fspath(paths_or_spec)
    if isinstance(paths_or_spec, str):
        return expand_input_paths(paths_or_spec)
    return expand_input_paths([os.fspath(item) for item in paths_or_spec])


def _open_fd(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise DataError(f"{path}: TFRecord file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot open TFRecord file: {error.strerror}") from None


def _parse_header(header: bytes, offset: int, file_size: int) -> tuple[int, str | None]:
    """``(payload length, None)`` for a good record header, else ``(length, the problem)``."""
    if len(header) != _HEADER_SIZE:
        return 0, f"truncated file: {len(header)} bytes where a 12-byte record header starts"
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        return length, f"corrupt length header: CRC mismatch (length field reads {length})"
    if offset + _FRAMING_SIZE + length > file_size:
        remaining = file_size - offset - _HEADER_SIZE
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
    with open(_open_fd(path), "rb", buffering=_READ_BUFFER) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        read, crc, unpack_footer = handle.read, masked_crc32c, _FOOTER.unpack
        try:
            while header := read(_HEADER_SIZE):
                length, problem = _parse_header(header, offset, file_size)
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
                    _skip(report, skip_corrupt, where, _FRAMING_SIZE + length, records=1)
                index += 1
                offset += _FRAMING_SIZE + length
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
    for path in _expand(paths_or_spec):
        found = ReadReport()
        for _ in _scan_file(path, True, found):
            pass
        empty = not found.records_read and not found.problems
        warnings = [f"{path}: 0 records (empty file)"] if empty else []
        size = os.path.getsize(path)
        reports.append(FileReport(path, found.records_read, size, found.problems, warnings))
    return reports


# -- random access ------------------------------------------------------------------------
_INDEX_MAGIC = b"OBJDIDX1"
_INDEX_HEADER = struct.Struct("<8sQqQ")  # magic, file size, mtime_ns, record count
_INDEX_CACHE: dict[str, TFRecordIndex] = {}


@dataclass(frozen=True)
class TFRecordIndex:
    """Byte offset and payload length of each record of one TFRecord file (16 bytes/record)."""

    path: str
    file_size: int
    mtime_ns: int
    offsets: array  # uint64 offset of each record's header
    lengths: array  # uint64 payload length of each record

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], *, cache_file: bool = False) -> TFRecordIndex:
        """The index of ``path``: from memory, else from ``<path>.idx``, else built (and saved
        there when ``cache_file``). A cached index counts only while size and mtime match."""
        path = os.fspath(path)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise DataError(f"{path}: TFRecord file not found") from None
        signature = (stat.st_size, stat.st_mtime_ns)
        current = _INDEX_CACHE.get(path)
        if current is None or current.signature != signature:
            current = cls.load(path + INDEX_SUFFIX) if cache_file else None
            if current is None or current.signature != signature:
                current = cls.build(path)
                if cache_file:
                    current.save(path + INDEX_SUFFIX)
            _INDEX_CACHE[path] = current
        return current

    @property
    def signature(self) -> tuple[int, int]:
        """(size, mtime_ns) of the file when indexed: a changed file gets a new index."""
        return self.file_size, self.mtime_ns

    @classmethod
    def build(cls, path: str) -> TFRecordIndex:
        """One pass over the headers; length CRCs are checked, payloads seeked over."""
        offsets, lengths = array("Q"), array("Q")
        fd = _open_fd(path)
        try:
            stat = os.fstat(fd)
            offset, window, window_start, length = 0, b"", 0, 0
            while offset < stat.st_size:
                if offset + _HEADER_SIZE > window_start + len(window):
                    # Small records: one read covers many headers. Large: read just the header.
                    window = os.pread(fd, _HEADER_SIZE if length > 4096 else 1 << 16, offset)
                    window_start = offset
                start = offset - window_start
                length, problem = _parse_header(window[start : start + 12], offset, stat.st_size)
                if problem is not None:
                    raise DataError(str(RecordProblem(path, len(offsets), offset, problem)))
                offsets.append(offset)
                lengths.append(length)
                offset += _FRAMING_SIZE + length
        finally:
            os.close(fd)
        return cls(path, stat.st_size, stat.st_mtime_ns, offsets, lengths)

    def save(self, index_path: str) -> None:
        """Write the index atomically (little-endian uint64 offsets, then lengths)."""
        offsets, lengths = array("Q", self.offsets), array("Q", self.lengths)
        if sys.byteorder != "little":
            offsets.byteswap()
            lengths.byteswap()
        with atomic_write(index_path, "wb") as handle:
            handle.write(_INDEX_HEADER.pack(_INDEX_MAGIC, self.file_size, self.mtime_ns, len(self)))
            handle.write(offsets.tobytes())
            handle.write(lengths.tobytes())

    @classmethod
    def load(cls, index_path: str) -> TFRecordIndex | None:
        """The index saved at ``index_path``; None when absent or unreadable (then rebuilt)."""
        try:
            data = Path(index_path).read_bytes()
            magic, file_size, mtime_ns, count = _INDEX_HEADER.unpack_from(data)
        except (OSError, struct.error):
            return None
        if magic != _INDEX_MAGIC or len(data) != _INDEX_HEADER.size + 16 * count:
            return None
        values = array("Q", data[_INDEX_HEADER.size :])
        if sys.byteorder != "little":
            values.byteswap()
        path = index_path[: -len(INDEX_SUFFIX)]
        return cls(path, file_size, mtime_ns, values[:count], values[count:])


class IndexedTFRecords:
    """Random access to the records of one or more files: ``records[i]`` is one seek + read.

    Holds only the offset indexes in memory. File descriptors are opened lazily and dropped
    when pickled, so instances can be handed to DataLoader worker processes.
    """

    def __init__(self, paths_or_spec: PathSpec, *, cache_files: bool = False) -> None:
        self.paths = _expand(paths_or_spec)
        self.indexes = [TFRecordIndex.for_file(path, cache_file=cache_files) for path in self.paths]
        self._ends: list[int] = []
        total = 0
        for index in self.indexes:
            total += len(index)
            self._ends.append(total)
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def locate(self, i: int) -> tuple[int, int]:
        """``(file number, record number in that file)`` of global record ``i``."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} out of range for {len(self)} records")
        file_number = bisect_right(self._ends, i)
        start = self._ends[file_number - 1] if file_number else 0
        return file_number, i - start

    def source(self, i: int) -> str:
        """``file#index (offset N)`` of record ``i``, for error messages."""
        file_number, local = self.locate(i)
        index = self.indexes[file_number]
        return record_source(index.path, local, index.offsets[local])

    def __getitem__(self, i: int) -> bytes:
        file_number, local = self.locate(i)
        index = self.indexes[file_number]
        offset, length = index.offsets[local], index.lengths[local]
        fd = self._fds.get(file_number)
        if fd is None:
            fd = self._fds[file_number] = _open_fd(index.path)
        framed = os.pread(fd, length + _FRAMING_SIZE, offset)
        where = f"{index.path}: record {local} at byte offset {offset}"
        if len(framed) != length + _FRAMING_SIZE:
            raise DataError(f"{where}: truncated file (it changed after it was indexed)")
        if _HEADER.unpack_from(framed) != (length, masked_crc32c(framed[:8])):
            raise DataError(
                f"{where}: length header does not match the index or its CRC "
                "(the file changed after it was indexed, or is corrupt)"
            )
        data = framed[_HEADER_SIZE : _HEADER_SIZE + length]
        if masked_crc32c(data) != _FOOTER.unpack_from(framed, _HEADER_SIZE + length)[0]:
            raise DataError(f"{where}: data CRC mismatch ({length} data bytes)")
        return data

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}  # descriptors do not travel between processes
        return state

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
