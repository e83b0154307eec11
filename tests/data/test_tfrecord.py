"""TFRecord framing: CRCs, round trips, sharding, corruption handling, the offset index."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import google_crc32c
import pytest

from objdet.data.tfrecord import (
    ReadReport,
    TFRecordWriter,
    masked_crc32c,
    read_records,
    read_records_with_source,
    verify,
    write_sharded,
)
from objdet.data.tfrecord_index import IndexedTFRecords, TFRecordIndex, count_records
from objdet.errors import DataError

RECORDS = [b"", b"a", b"hello world", bytes(range(256)) * 40, os.urandom(70_000)]


def write_file(path: Path, records: list[bytes]) -> Path:
    with TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def record_offsets(records: list[bytes]) -> list[int]:
    """Byte offset of each record's header in a file holding ``records``."""
    offsets, offset = [], 0
    for record in records:
        offsets.append(offset)
        offset += 16 + len(record)
    return offsets


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


# -- CRC ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "crc"),
    [(b"", 0), (b"123456789", 0xE3069283), (bytes(32), 0x8A9136AA), (b"\xff" * 32, 0x62A8AB43)],
)
def test_crc32c_known_vectors(data: bytes, crc: int) -> None:
    assert google_crc32c.implementation == "c"
    assert google_crc32c.value(data) == crc


@pytest.mark.parametrize(
    ("data", "masked"),
    [(b"", 0xA282EAD8), (b"123456789", 0xC78AB0E5), (bytes(32), 0x0FD7FFFA)],
)
def test_masked_crc32c(data: bytes, masked: int) -> None:
    assert masked_crc32c(data) == masked


def test_writer_reproduces_a_tensorflow_written_file_byte_for_byte(
    raccoon_dir: Path, tmp_path: Path
) -> None:
    original = raccoon_dir / "tfrecord" / "test.record"
    copy = write_file(tmp_path / "copy.record", list(read_records(original)))
    assert copy.read_bytes() == original.read_bytes()


# -- round trips and sharding -------------------------------------------------------------
def test_round_trip_and_count(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    assert list(read_records(path)) == RECORDS
    assert list(read_records(str(path))) == RECORDS
    assert count_records(path) == len(RECORDS)
    assert path.stat().st_size == sum(16 + len(record) for record in RECORDS)


def test_read_records_with_source_names_file_index_and_offset(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    sources = [source for source, _ in read_records_with_source(path)]
    assert sources[2] == f"{path}#2 (offset {record_offsets(RECORDS)[2]})"


def test_writer_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out.record"
    with pytest.raises(RuntimeError), TFRecordWriter(target) as writer:
        writer.write(b"partial")
        assert not target.exists()  # nothing visible under the final name while writing
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary left behind


def test_write_sharded_round_robin(tmp_path: Path) -> None:
    records = [f"record {i}".encode() for i in range(10)]
    paths = write_sharded(records, tmp_path / "out.record", num_shards=3)
    assert [Path(p).name for p in paths] == [f"out.record-0000{i}-of-00003" for i in range(3)]
    for shard, path in enumerate(paths):
        assert list(read_records(path)) == records[shard::3]
    assert list(read_records(f"{tmp_path}/out.record@3")) == [
        r for shard in range(3) for r in records[shard::3]
    ]


def test_write_sharded_single_shard_writes_the_name_itself(tmp_path: Path) -> None:
    assert write_sharded([b"x"], tmp_path / "one.record", 1) == [str(tmp_path / "one.record")]
    assert list(read_records(tmp_path / "one.record")) == [b"x"]


# -- corruption ---------------------------------------------------------------------------
def test_flipped_data_byte_names_file_record_and_offset(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    offset = record_offsets(RECORDS)[2]
    flip_byte(path, offset + 12 + 3)
    with pytest.raises(
        DataError, match=rf"data\.record: record 2 at byte offset {offset}: data CRC"
    ):
        list(read_records(path))
    report = ReadReport()
    assert list(read_records(path, skip_corrupt=True, report=report)) == RECORDS[:2] + RECORDS[3:]
    assert (report.records_read, report.records_skipped) == (4, 1)
    assert report.bytes_skipped == 16 + len(RECORDS[2])
    assert report.problems[0].record_index == 2 and report.problems[0].offset == offset


def test_flipped_length_byte_stops_the_file(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    offset = record_offsets(RECORDS)[3]
    flip_byte(path, offset + 1)
    with pytest.raises(
        DataError, match=rf"record 3 at byte offset {offset}: corrupt length header"
    ):
        list(read_records(path))
    report = ReadReport()
    assert list(read_records(path, skip_corrupt=True, report=report)) == RECORDS[:3]
    assert report.bytes_skipped == path.stat().st_size - offset
    assert "skipped the last" in report.problems[0].message
    with pytest.raises(DataError, match="corrupt length header"):
        TFRecordIndex.build(str(path))


def test_flipped_data_crc_byte_is_a_data_error(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", [b"abc"])
    flip_byte(path, 12 + 3)  # the footer
    with pytest.raises(DataError, match="data CRC mismatch"):
        list(read_records(path))


@pytest.mark.parametrize("cut", [5, 40])  # inside a header; inside the payload
def test_truncated_file(tmp_path: Path, cut: int) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    offset = record_offsets(RECORDS)[4]
    path.write_bytes(path.read_bytes()[: offset + cut])
    with pytest.raises(DataError, match=rf"record 4 at byte offset {offset}: truncated file"):
        list(read_records(path))
    report = ReadReport()
    assert list(read_records(path, skip_corrupt=True, report=report)) == RECORDS[:4]
    assert report.bytes_skipped == cut


def test_garbage_length_with_valid_crc(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", [b"good"])
    length = struct.pack("<Q", 10**12)
    with path.open("ab") as handle:  # a header claiming a terabyte, correctly checksummed
        handle.write(length + struct.pack("<I", masked_crc32c(length)) + b"tail")
    with pytest.raises(DataError, match=r"record 1 at byte offset 20: .*garbage length"):
        list(read_records(path))


def test_random_bytes_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "random.record"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(DataError, match="record 0 at byte offset 0: corrupt length header"):
        list(read_records(path))


def test_empty_file_has_zero_records_and_verify_warns(tmp_path: Path) -> None:
    path = tmp_path / "empty.record"
    path.write_bytes(b"")
    assert list(read_records(path)) == []
    assert count_records(path) == 0
    (report,) = verify(path)
    assert report.records == 0 and report.problems == []
    assert report.warnings == [f"{path}: 0 records (empty file)"]


def test_missing_file_and_unmatched_glob(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing\.record'?: file not found"):
        list(read_records(tmp_path / "nothing.record"))
    with pytest.raises(DataError, match="matches no files"):
        list(read_records(f"{tmp_path}/*.record"))
    with pytest.raises(DataError, match="not found"):
        TFRecordIndex.for_file(tmp_path / "nothing.record")


def test_verify_reports_every_problem_per_file(tmp_path: Path) -> None:
    good = write_file(tmp_path / "a.record", RECORDS)
    bad = write_file(tmp_path / "b.record", RECORDS)
    flip_byte(bad, record_offsets(RECORDS)[1] + 14)
    reports = verify(f"{good},{bad}")
    assert [(r.records, len(r.problems)) for r in reports] == [(5, 0), (4, 1)]
    assert "record 1" in str(reports[1].problems[0])


# -- random access ------------------------------------------------------------------------
def test_indexed_records_random_access(tmp_path: Path) -> None:
    first = write_file(tmp_path / "a.record", RECORDS)
    second = write_file(tmp_path / "b.record", RECORDS[::-1])
    records = IndexedTFRecords([first, second])
    expected = RECORDS + RECORDS[::-1]
    assert len(records) == len(expected)
    assert [records[i] for i in (7, 0, 9, 3)] == [expected[i] for i in (7, 0, 9, 3)]
    assert records[-1] == expected[-1]
    assert records.source(6) == f"{second}#1 (offset {record_offsets(RECORDS[::-1])[1]})"
    with pytest.raises(IndexError):
        records[len(expected)]
    clone = pickle.loads(pickle.dumps(records))  # DataLoader workers get a copy without fds
    assert [clone[i] for i in range(len(clone))] == expected
    records.close()


def test_index_skips_payloads_but_access_checks_them(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    flip_byte(path, record_offsets(RECORDS)[3] + 12 + 100)
    records = IndexedTFRecords(path)  # builds: only headers are read and checked
    assert len(records) == len(RECORDS) and records[4] == RECORDS[4]
    with pytest.raises(DataError, match="record 3 at byte offset .*data CRC mismatch"):
        records[3]


def test_index_file_is_saved_reused_and_invalidated(tmp_path: Path) -> None:
    path = write_file(tmp_path / "data.record", RECORDS)
    index = TFRecordIndex.for_file(path, cache_file=True)
    saved = TFRecordIndex.load(f"{path}.idx")
    assert saved is not None and list(saved.offsets) == record_offsets(RECORDS)
    assert list(saved.lengths) == [len(record) for record in RECORDS]
    assert saved.signature == index.signature
    assert list(read_records(f"{tmp_path}/*")) == RECORDS  # the .idx beside it is not data
    write_file(path, RECORDS + [b"one more"])
    assert len(TFRecordIndex.for_file(path, cache_file=True)) == len(RECORDS) + 1
    updated = TFRecordIndex.load(f"{path}.idx")
    assert updated is not None and len(updated) == len(RECORDS) + 1


def test_index_of_many_small_records(tmp_path: Path) -> None:
    records = [str(i).encode() * (i % 7) for i in range(5000)]  # many headers per read
    path = write_file(tmp_path / "small.record", records)
    indexed = IndexedTFRecords(path)
    assert len(indexed) == 5000 and indexed[4321] == records[4321]


def test_tfrecord_module_does_not_import_torch() -> None:
    code = (
        "import sys, objdet.data.tfrecord, objdet.data.tfrecord_index, objdet.data.input_paths; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
