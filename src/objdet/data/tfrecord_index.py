"""Random access to TFRecord files through an offset index, and counting their records.

``TFRecordIndex`` holds the byte offset and payload length of every record of one file. It
is built by reading only the 12-byte record headers (length CRCs are checked, payloads are
seeked over), cached in memory per file and, when asked, saved beside the file as
``<file>.idx``. A cached index is used only while the file's size and mtime are unchanged.

``.idx`` layout (little-endian): an ``OBJDIDX1`` magic, file size, mtime_ns and record
count, then the uint64 offsets, then the uint64 lengths. An unreadable or mismatched
``.idx`` is ignored and rebuilt, never an error.

``IndexedTFRecords`` serves ``records[i]`` over one or more files with one ``pread`` per
record, checking both CRCs. The framing itself is ``objdet.data.tfrecord``'s.
This module does not import torch.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from objdet.atomic import atomic_write
from objdet.data.input_paths import INDEX_SUFFIX
from objdet.data.tfrecord import (
    FRAMING_SIZE,
    HEADER_SIZE,
    RECORD_FOOTER,
    RECORD_HEADER,
    PathSpec,
    RecordProblem,
    expand_paths,
    masked_crc32c,
    open_record_fd,
    parse_header,
    record_source,
)
from objdet.errors import DataError

_INDEX_MAGIC = b"OBJDIDX1"
_INDEX_HEADER = struct.Struct("<8sQqQ")  # magic, file size, mtime_ns, record count
_INDEX_CACHE: dict[str, TFRecordIndex] = {}  # path -> its index, for this process


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
        fd = open_record_fd(path)
        try:
            stat = os.fstat(fd)
            offset, window, window_start, length = 0, b"", 0, 0
            while offset < stat.st_size:
                if offset + HEADER_SIZE > window_start + len(window):
                    # Small records: one read covers many headers. Large: read just the header.
                    window = os.pread(fd, HEADER_SIZE if length > 4096 else 1 << 16, offset)
                    window_start = offset
                start = offset - window_start
                length, problem = parse_header(window[start : start + 12], offset, stat.st_size)
                if problem is not None:
                    raise DataError(str(RecordProblem(path, len(offsets), offset, problem)))
                offsets.append(offset)
                lengths.append(length)
                offset += FRAMING_SIZE + length
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
        self.paths = expand_paths(paths_or_spec)
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
            fd = self._fds[file_number] = open_record_fd(index.path)
        framed = os.pread(fd, length + FRAMING_SIZE, offset)
        where = f"{index.path}: record {local} at byte offset {offset}"
        if len(framed) != length + FRAMING_SIZE:
            raise DataError(f"{where}: truncated file (it changed after it was indexed)")
        if RECORD_HEADER.unpack_from(framed) != (length, masked_crc32c(framed[:8])):
            raise DataError(
                f"{where}: length header does not match the index or its CRC "
                "(the file changed after it was indexed, or is corrupt)"
            )
        data = framed[HEADER_SIZE : HEADER_SIZE + length]
        if masked_crc32c(data) != RECORD_FOOTER.unpack_from(framed, HEADER_SIZE + length)[0]:
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


def count_records(paths_or_spec: PathSpec) -> int:
    """Number of records, from the offset index (length headers are CRC-checked, payloads skipped)."""
    return sum(len(TFRecordIndex.for_file(path)) for path in expand_paths(paths_or_spec))
