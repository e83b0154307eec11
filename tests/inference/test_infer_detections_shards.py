"""Sharded ``objdet infer-detections``: shard i of n takes global records i, i + n, ... and
writes OUT-0000i-of-0000n; the shards together equal one unsharded run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import infer_inputs
import pytest

from objdet.cli.main import main
from objdet.errors import ConfigError
from objdet.inference.sharding import Shard, output_paths, resolve_shard


def test_two_shards_together_equal_one_unsharded_run(
    exported_image_tensor: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = f"{infer_inputs.write_inputs(tmp_path, counts=(7, 6))[0].parent / 'input'}@2"
    base = ["infer-detections", "--input_tfrecord_paths", inputs,
            "--model", str(exported_image_tensor)]
    assert main([*base, "--output_tfrecord_path", str(tmp_path / "all.record")]) == 0
    assert main([*base, "--output_tfrecord_path", str(tmp_path / "det.record"),
                 "--shard", "0", "--num_shards", "2"]) == 0
    monkeypatch.setenv("RANK", "1")  # as torchrun starts rank 1 of 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*base, "--output_tfrecord_path", str(tmp_path / "det.record")]) == 0
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert main([*base, "--output_tfrecord_path", str(tmp_path / "inproc.record@2")]) == 0

    unsharded = [e.SerializeToString() for e in infer_inputs.examples(tmp_path / "all.record")]
    shards = [tmp_path / f"det.record-0000{k}-of-00002" for k in range(2)]
    sharded = [[e.SerializeToString() for e in infer_inputs.examples(path)] for path in shards]
    assert len(unsharded) == 13 and [len(s) for s in sharded] == [7, 6]
    assert Counter(sharded[0] + sharded[1]) == Counter(unsharded)  # same records, none twice
    for k in range(2):
        assert sharded[k] == unsharded[k::2]  # record i in shard i % 2, in input order
        # One process writing OUT@2 writes the same files, byte for byte.
        assert (tmp_path / f"inproc.record-0000{k}-of-00002").read_bytes() == shards[k].read_bytes()


def test_shard_selection_and_output_names() -> None:
    assert list(Shard(1, 3).record_indices(8)) == [1, 4, 7]
    assert list(Shard().record_indices(3)) == [0, 1, 2]
    assert output_paths("out", Shard(1, 3)) == ["out-00001-of-00003"]
    assert output_paths("out@3", Shard(2, 3)) == ["out-00002-of-00003"]
    assert output_paths("out@2", Shard()) == ["out-00000-of-00002", "out-00001-of-00002"]
    assert output_paths("out", Shard()) == ["out"]
    assert resolve_shard(None, None, {"RANK": "3", "WORLD_SIZE": "4"}) == Shard(3, 4)
    assert resolve_shard(None, None, {"RANK": "0", "WORLD_SIZE": "1"}) == Shard()
    assert resolve_shard(1, 2, {"RANK": "3", "WORLD_SIZE": "4"}) == Shard(1, 2)  # flags win


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Shard(2, 2), r"shard 2 of 2: expected .*0 <= shard < num_shards"),
    (lambda: resolve_shard(1, None, {}), r"--shard and --num_shards go together"),
    (lambda: resolve_shard(None, None, {"RANK": "x", "WORLD_SIZE": "2"}), r"RANK='x'"),
    (lambda: output_paths("out@3", Shard(0, 2)), r"out@3: 3 output shards, but .* 2 processes"),
])
def test_inconsistent_shard_settings_are_config_errors(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()  # type: ignore[operator]
