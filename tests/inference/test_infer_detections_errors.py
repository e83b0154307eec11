"""Bad input to ``objdet infer-detections``: one line naming the file and record, exit code
2, and no output or partial files left behind."""

from __future__ import annotations

import fcntl
import re
import struct
from collections.abc import Callable
from pathlib import Path

import infer_inputs
import pytest

from objdet.cli.main import main
from objdet.data.tfrecord import TFRecordWriter
from objdet.errors import ObjdetError
from objdet.inference.resumable_output import ResumableRecordWriter


def write_records(path: Path, records: list[bytes]) -> None:
    with TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def corrupt_data(path: Path) -> None:
    """Records 0-2 good, then record 2's last payload byte flipped (its data CRC fails)."""
    write_records(path, [infer_inputs.example(i) for i in range(3)])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def truncated(path: Path) -> None:
    write_records(path, [infer_inputs.example(i) for i in range(2)])
    path.write_bytes(path.read_bytes()[:-10])


def not_an_example(path: Path) -> None:
    write_records(path, [infer_inputs.example(0), b"\x0a\x03junk"])


def undecodable_image(path: Path) -> None:
    from objdet.protos import example_pb2

    bad = example_pb2.Example.FromString(infer_inputs.example(1))
    bad.features.feature["image/encoded"].bytes_list.value[0] = b"\x89PNG\r\n\x1a\n broken"
    write_records(path, [infer_inputs.example(0), bad.SerializeToString()])


def garbage_length(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 10**12) + b"\x00" * 20)


@pytest.mark.parametrize(("make_input", "message"), [
    (corrupt_data, r"in\.record: record 2 at byte offset \d+: data CRC mismatch"),
    (truncated, r"in\.record: record 1 at byte offset \d+: truncated file"),
    (garbage_length, r"in\.record: record 0 at byte offset 0: corrupt length header"),
    (not_an_example, r"in\.record#1 \(offset \d+\): not a serialized tf\.Example"),
    (undecodable_image, r"in\.record#1 \(offset \d+\): image/encoded: "),
])
def test_bad_records_are_one_line_errors_naming_file_and_record(
    exported_image_tensor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    make_input: Callable[[Path], None], message: str,
) -> None:
    make_input(tmp_path / "in.record")
    code = main(["infer-detections", "--input_tfrecord_paths", str(tmp_path / "in.record"),
                 "--output_tfrecord_path", str(tmp_path / "out.record"),
                 "--model", str(exported_image_tensor), "--batch_size", "1"])
    error = capsys.readouterr().err
    assert code == 2
    # The error line, after at most the progress bar of the records before it.
    *bar, last = error.strip().split("\n")
    assert "Traceback" not in error
    assert all(line.lstrip("\r").startswith("infer-detections") for line in bar)
    assert last.startswith("objdet infer-detections: error: ") and re.search(message, last), last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.record"]  # no output, no partial


@pytest.mark.parametrize(("flags", "message"), [
    (["--shard", "2", "--num_shards", "2"], "shard 2 of 2: expected"),
    (["--shard", "0"], "--shard and --num_shards go together"),
    (["--output_tfrecord_path", "OUT@3", "--shard", "0", "--num_shards", "2"], "3 output shards"),
    (["--input_tfrecord_paths", "missing.record"], "input path 'MISSING': file not found"),
    (["--batch_size", "0"], "batch_size and commit_every must be >= 1"),
])
def test_bad_flags_are_one_line_errors(
    exported_image_tensor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    flags: list[str], message: str,
) -> None:
    inputs = infer_inputs.write_inputs(tmp_path, counts=(2,))
    defaults = {"--input_tfrecord_paths": str(inputs[0]), "--output_tfrecord_path": "OUT"}
    flags = [flag.replace("missing.record", str(tmp_path / "missing.record")) for flag in flags]
    for flag, value in defaults.items():
        if flag not in flags:
            flags += [flag, value]
    flags = [str(tmp_path / flag) if flag.startswith("OUT") else flag for flag in flags]
    assert main(["infer-detections", "--model", str(exported_image_tensor), *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert message.replace("MISSING", str(tmp_path / "missing.record")) in error


def test_a_second_writer_of_the_same_output_is_refused(tmp_path: Path) -> None:
    """The partial file is flock'ed: a concurrent run fails fast (here: a second open file
    description in this process, which flock treats as another owner)."""
    first = ResumableRecordWriter([str(tmp_path / "out.record")], tmp_path / ".p.json", key="k")
    first.open()
    try:
        second = ResumableRecordWriter([str(tmp_path / "out.record")], tmp_path / ".q.json", "k")
        with pytest.raises(ObjdetError, match=r"out\.record: another process is writing it"):
            second.open()
    finally:
        first.close()
    with open(tmp_path / ".out.record.partial", "rb") as handle:  # the lock went with close()
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
