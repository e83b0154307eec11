"""input_path spellings: files, comma lists, globs, base@N, and what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from objdet.data.input_paths import expand_input_paths, sharded_name
from objdet.errors import DataError


def touch(directory: Path, *names: str) -> list[str]:
    paths = []
    for name in names:
        (directory / name).write_bytes(b"")
        paths.append(str(directory / name))
    return paths


def shard_names(base: str, count: int) -> list[str]:
    return [f"{base}-{i:05d}-of-{count:05d}" for i in range(count)]


def test_sharded_name_is_tensorflows() -> None:
    assert sharded_name("out.record", 3, 10) == "out.record-00003-of-00010"


def test_plain_files_and_comma_lists_keep_order(tmp_path: Path) -> None:
    a, b = touch(tmp_path, "a.record", "b.record")
    assert expand_input_paths(a) == [a]
    assert expand_input_paths(f"{b}, {a}") == [b, a]
    assert expand_input_paths([b, f"{a},{b}"]) == [b, a, b]  # duplicates kept, as TF does


def test_globs_are_sorted(tmp_path: Path) -> None:
    paths = touch(tmp_path, "z.record", "a.record", "m.record", "notes.txt")
    assert expand_input_paths(f"{tmp_path}/*.record") == sorted(paths[:3])
    (tmp_path / "sub.record").mkdir()  # directories are never input files
    assert expand_input_paths(f"{tmp_path}/*.record") == sorted(paths[:3])


def test_shard_glob_and_at_n(tmp_path: Path) -> None:
    base = str(tmp_path / "train.record")
    names = shard_names(base, 10)
    touch(tmp_path, *[Path(name).name for name in names])
    assert expand_input_paths(f"{base}-?????-of-00010") == names
    assert expand_input_paths(f"{base}@10") == names
    assert expand_input_paths(f"{tmp_path}/*") == names


def test_incomplete_at_n_names_the_missing_shards(tmp_path: Path) -> None:
    base = str(tmp_path / "train.record")
    names = shard_names(base, 4)
    touch(tmp_path, *[Path(name).name for name in names[:1] + names[2:3]])
    with pytest.raises(DataError, match="2 of 4 shards missing") as error:
        expand_input_paths(f"{base}@4")
    assert names[1] in str(error.value) and names[3] in str(error.value)


def test_incomplete_shard_glob_names_the_missing_shard(tmp_path: Path) -> None:
    base = str(tmp_path / "train.record")
    names = shard_names(base, 10)
    touch(tmp_path, *[Path(name).name for name in names if not name.endswith("00007-of-00010")])
    with pytest.raises(DataError, match=r"incomplete sharded set, missing .*00007-of-00010$"):
        expand_input_paths(f"{base}-?????-of-00010")
    # A pattern that asks for only some shards is not incomplete.
    assert expand_input_paths(f"{base}-0000[0-4]-of-00010") == names[:5]


def test_missing_inputs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        expand_input_paths(str(tmp_path / "absent.record"))
    with pytest.raises(DataError, match="matches no files"):
        expand_input_paths(f"{tmp_path}/train-?????-of-00010")
    with pytest.raises(DataError, match="is a directory"):
        expand_input_paths(str(tmp_path))
    with pytest.raises(DataError, match="no input paths"):
        expand_input_paths(" , ")


def test_an_existing_file_named_like_a_spec_is_taken_literally(tmp_path: Path) -> None:
    (literal,) = touch(tmp_path, "odd@2")
    assert expand_input_paths(literal) == [literal]


def test_index_files_beside_records_are_not_inputs(tmp_path: Path) -> None:
    record, _, lonely = touch(tmp_path, "a.record", "a.record.idx", "b.idx")
    assert expand_input_paths(f"{tmp_path}/*") == [record, lonely]
