"""``objdet records count|verify|dump``, run as a user runs it: a subprocess."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from objdet.protos import example_pb2

RACCOON_RECORD = (
    Path(__file__).resolve().parents[2] / "datasets" / "raccoon" / "tfrecord" / "test.record"
)


def objdet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "objdet", "records", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_count_says_it_does_not_check_data_crcs(tmp_path: Path) -> None:
    result = objdet("count", str(RACCOON_RECORD))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"40\t{RACCOON_RECORD}", "40\ttotal"]
    assert "data CRCs were not checked: run `objdet records verify`" in result.stderr
    # And indeed: a flipped data byte is still counted (verify is the data checker).
    corrupt = tmp_path / "corrupt.record"
    data = bytearray(RACCOON_RECORD.read_bytes())
    data[1000] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    assert objdet("count", str(corrupt)).stdout.splitlines()[-1] == "40\ttotal"
    help_text = subprocess.run(
        [sys.executable, "-m", "objdet", "records", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "data CRCs are not checked" in " ".join(help_text.split())


def test_verify_passes_good_files_and_fails_corrupt_ones(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.record"
    data = bytearray(RACCOON_RECORD.read_bytes())
    data[1000] ^= 0xFF  # inside record 0's image bytes
    corrupt.write_bytes(bytes(data))
    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")

    good = objdet("verify", str(RACCOON_RECORD))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "40 good records in 1 files, 0 problems" in good.stdout

    bad = objdet("verify", f"{RACCOON_RECORD},{corrupt}")
    assert bad.returncode == 1
    # Findings on stderr, one line each; the per-file table and the summary on stdout.
    assert bad.stderr.splitlines() == [
        (
            f"objdet records verify: error: {corrupt}: record 0 at byte offset 0: data CRC "
            "mismatch (54142 data bytes)"
        )
    ]
    assert bad.stdout.splitlines() == [
        f"ok\t40 records\t2464963 bytes\t{RACCOON_RECORD}",
        f"FAILED\t39 records\t2464963 bytes\t{corrupt}",
        "79 good records in 2 files, 1 problems",
    ]

    warned = objdet("verify", str(empty))
    assert warned.returncode == 0 and "warning: " not in warned.stdout
    assert warned.stderr == f"objdet records verify: warning: {empty}: 0 records (empty file)\n"
    assert objdet("verify", "--strict", str(empty)).returncode == 1


def test_dump_no_image_and_limit() -> None:
    result = objdet("dump", str(RACCOON_RECORD), "--limit", "2", "--no_image")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])["features"]["feature"]
    original = example_pb2.Example.FromString(first_raccoon_record())
    image_bytes = original.features.feature["image/encoded"].bytes_list.value[0]
    assert first["image/encoded"] == {"int64List": {"value": [str(len(image_bytes))]}}
    filename = base64.b64decode(first["image/filename"]["bytesList"]["value"][0]).decode()
    assert filename == original.features.feature["image/filename"].bytes_list.value[0].decode()


def test_dump_keeps_the_image_by_default() -> None:
    result = objdet("dump", str(RACCOON_RECORD), "--limit", "1")
    feature = json.loads(result.stdout)["features"]["feature"]
    image = base64.b64decode(feature["image/encoded"]["bytesList"]["value"][0])
    assert image.startswith(b"\xff\xd8")  # the JPEG itself


@pytest.mark.parametrize("pattern", ["/nonexistent/*.record", "/nonexistent/x.record@3"])
def test_missing_input_is_a_clean_error(pattern: str) -> None:
    result = objdet("count", pattern)
    assert result.returncode == 2
    assert result.stderr.startswith("objdet records: error: input path")
    assert "Traceback" not in result.stderr


def first_raccoon_record() -> bytes:
    """Record 0's payload, cut out by hand rather than by objdet's reader."""
    data = RACCOON_RECORD.read_bytes()
    length = int.from_bytes(data[:8], "little")
    return data[12 : 12 + length]
