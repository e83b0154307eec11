"""objdet's TF checkpoint reader against checkpoints TensorFlow 2.21 wrote.

The fixtures and TensorFlow's own answers (keys, dtypes, shapes, full names, sha256 of every
value) come from tests/fixtures/tf_checkpoints/make_fixtures.py; see its docstring.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tarfile
import time
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from objdet.data.tfrecord import masked_crc32c
from objdet.errors import CheckpointError
from objdet.models.checkpoints.tf_bundle import TFCheckpoint, read_tf_checkpoint
from objdet.models.checkpoints.tf_object_graph import OBJECT_GRAPH_KEY
from objdet.models.checkpoints.tf_slice_keys import signed_ordered_code
from objdet.models.checkpoints.tf_table import (
    BLOCK_TRAILER_SIZE,
    data_block_handles,
    unmask_crc32c,
)
from objdet.protos.tf_types_pb2 import DataType

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tf_checkpoints"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
BIG_KEY = "shapes/big/.ATTRIBUTES/VARIABLE_VALUE"
STRING_KEY = "dtypes/string/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packed fixtures (multiblock, ssd_mobilenet_v2) unpacked."""
    root = tmp_path_factory.mktemp("tf_checkpoints")
    for name in ("multiblock", "ssd_mobilenet_v2"):
        with tarfile.open(FIXTURES / f"{name}.tar.gz") as archive:
            archive.extractall(root, filter="data")
    return root


def prefix_of(name: str, unpacked: Path) -> Path:
    directory = FIXTURES / name if (FIXTURES / name).is_dir() else unpacked / name
    return directory / EXPECTED[name]["prefix"]


def digest(value: np.ndarray) -> str:
    """The sha256 make_fixtures.value_digest took of TensorFlow's value."""
    if value.dtype == object:
        hasher = hashlib.sha256()
        for item in value.reshape(-1):
            hasher.update(len(item).to_bytes(8, "little") + item)
        return hasher.hexdigest()
    return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()


def answers(checkpoint: TFCheckpoint, key: str, names: dict[str, str]) -> dict:
    """objdet's answers about ``key`` in the layout of expected.json."""
    value = checkpoint.read(key)
    answer = {
        "dtype": DataType.Value(checkpoint.tf_dtype(key)),
        "shape": list(checkpoint.shape(key)),
        "sha256": digest(value),
    }
    assert value.shape == checkpoint.shape(key) and value.dtype == checkpoint.dtype(key), key
    if key in names:
        answer["full_name"] = names[key]
    return answer


@pytest.mark.parametrize("name", ["basic", "sharded", "ssd_mobilenet_v2"])
def test_every_key_dtype_shape_full_name_and_value_equals_tensorflows(
    name: str, unpacked: Path
) -> None:
    checkpoint = TFCheckpoint.open(prefix_of(name, unpacked))
    expected = EXPECTED[name]["keys"]
    assert checkpoint.keys() == sorted(expected)
    names = checkpoint.full_names()
    for key, entry in expected.items():
        assert answers(checkpoint, key, names) == {k: v for k, v in entry.items() if k != "strings"}


def test_values_equal_tensorflows_and_bfloat16_widens_exactly() -> None:
    stored = np.load(FIXTURES / "values.npz")
    checkpoints = {
        name: TFCheckpoint.open(prefix_of(name, FIXTURES)) for name in ("basic", "sharded")
    }
    assert len(stored.files) > 15
    for name_and_key in stored.files:
        name, key = name_and_key.split(":", 1)
        value = checkpoints[name].read(key)
        np.testing.assert_array_equal(value, stored[name_and_key], err_msg=key)
        assert value.dtype == stored[name_and_key].dtype, key
    basic = checkpoints["basic"]
    assert basic.tf_dtype("dtypes/bfloat16/.ATTRIBUTES/VARIABLE_VALUE") == "DT_BFLOAT16"
    assert basic.dtype("dtypes/bfloat16/.ATTRIBUTES/VARIABLE_VALUE") == np.float32
    assert basic.read("shapes/scalar/.ATTRIBUTES/VARIABLE_VALUE").shape == ()
    assert basic.read("shapes/empty/.ATTRIBUTES/VARIABLE_VALUE").shape == (0, 3)


def test_strings_are_bytes_and_the_object_graph_parses() -> None:
    checkpoint = TFCheckpoint.open(FIXTURES / "basic")
    for key in (STRING_KEY, "dtypes/string_scalar/.ATTRIBUTES/VARIABLE_VALUE"):
        expected = [text.encode("latin-1") for text in EXPECTED["basic"]["keys"][key]["strings"]]
        assert checkpoint.read(key).reshape(-1).tolist() == expected
    assert checkpoint.read(STRING_KEY).tolist()[3] == b"x" * 200  # a two-byte varint length
    graph = checkpoint.object_graph()
    roots = {child.local_name for child in graph.nodes[0].children}
    assert roots == {"dtypes", "shapes", "model", "optimizer", "keras_optimizer", "save_counter"}
    assert sum(len(node.slot_variables) for node in graph.nodes) == 2  # SGD momentum slots
    slots = [key for key in checkpoint if ".OPTIMIZER_SLOT/" in key]
    assert len(slots) == 2 and all(key in checkpoint.full_names() for key in slots)


def test_sharded_checkpoint_reads_slices_across_shards() -> None:
    checkpoint = TFCheckpoint.open(FIXTURES / "sharded" / "ckpt")
    large = checkpoint.entry("large/.ATTRIBUTES/VARIABLE_VALUE")
    assert checkpoint.num_shards == 6 and len(large.slices) > 3
    assert max(piece.extent[0].start for piece in large.slices) >= 64  # 2-byte OrderedCode
    assert {checkpoint.entry(key).shard_id for key in checkpoint} != {0}


def test_index_of_several_data_blocks(unpacked: Path) -> None:
    """3001 keys with long names: an index of several 256 KiB blocks, keys prefix-compressed."""
    prefix = prefix_of("multiblock", unpacked)
    index = Path(f"{prefix}.index").read_bytes()
    assert len(data_block_handles(index, "multiblock")) >= 3
    checkpoint = TFCheckpoint.open(prefix)
    expected = EXPECTED["multiblock"]
    assert len(checkpoint.keys()) == expected["num_keys"]
    names = checkpoint.full_names()
    lines = []
    for key in checkpoint:
        answer = answers(checkpoint, key, names)
        if key in expected["keys"]:
            assert answer == expected["keys"][key]
        lines.append(
            f"{key}\t{answer['dtype']}\t{answer['shape']}\t{answer.get('full_name')}\t"
            f"{answer['sha256']}\n"
        )
    assert hashlib.sha256("".join(lines).encode()).hexdigest() == expected["digest"]


def test_open_accepts_a_directory_and_file_names(unpacked: Path) -> None:
    ssd = unpacked / "ssd_mobilenet_v2"
    assert TFCheckpoint.open(ssd).prefix == str(ssd / "ckpt-1")  # its `checkpoint` state file
    for name in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
        assert TFCheckpoint.open(ssd / name).prefix == str(ssd / "ckpt-1")


def test_read_tf_checkpoint_returns_every_variable_fast(unpacked: Path) -> None:
    """The 2.6 MB OD API checkpoint: one read of its shard, no per-element Python work."""
    prefix = prefix_of("ssd_mobilenet_v2", unpacked)
    started = time.perf_counter()
    values = read_tf_checkpoint(prefix)
    elapsed = time.perf_counter() - started
    expected = EXPECTED["ssd_mobilenet_v2"]["keys"]
    assert sorted(values) == sorted(key for key in expected if key != OBJECT_GRAPH_KEY)
    assert all(digest(values[key]) == expected[key]["sha256"] for key in values)
    assert elapsed < 0.5, f"{elapsed:.2f} s"


def test_ordered_code_matches_tensorflows_documented_examples() -> None:
    """The examples in the comments of TF's ordered_code.cc."""
    assert signed_ordered_code(0x424242) == bytes.fromhex("f0424242")
    assert signed_ordered_code(-0x800) == bytes.fromhex("3800")
    assert signed_ordered_code(-1) == b"\x7f"  # a whole dimension
    assert signed_ordered_code(63) == b"\xbf"


def test_unmasked_crc_inverts_tfrecord_masking() -> None:
    payload = b"objdet"
    masked = masked_crc32c(payload)
    assert unmask_crc32c(masked) == google_crc32c.value(payload)


# --- bad input: each a one-line CheckpointError naming the file (and key) -----------------


def copy_basic(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "basic", tmp_path / "basic")
    return tmp_path / "basic" / "ckpt-1"


def one_line_error(call, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def rewrite_index_block(index: Path, position: int, new_bytes: bytes) -> None:
    """Replace bytes at ``position`` (in a data block, or a block's type byte) and refresh
    that block's CRC, as a writer producing those bytes would have."""
    data = bytearray(index.read_bytes())
    for offset, size in data_block_handles(bytes(data), str(index)):
        if offset <= position <= offset + size:
            data[position : position + len(new_bytes)] = new_bytes
            crc = google_crc32c.value(bytes(data[offset : offset + size + 1]))
            masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
            data[offset + size + 1 : offset + size + BLOCK_TRAILER_SIZE] = struct.pack("<I", masked)
            index.write_bytes(bytes(data))
            return
    raise AssertionError(f"byte {position} is in no data block")


def test_corrupt_data_byte_names_the_key(tmp_path: Path) -> None:
    prefix = copy_basic(tmp_path)
    checkpoint = TFCheckpoint.open(prefix)
    shard = Path(f"{prefix}.data-00000-of-00001")
    for key in (BIG_KEY, STRING_KEY):
        data = bytearray(shard.read_bytes())
        data[checkpoint.entry(key).offset + checkpoint.entry(key).size - 1] ^= 0x10
        shard.write_bytes(bytes(data))
        one_line_error(lambda key=key: checkpoint.read(key), str(shard), key, "crc32c mismatch")
    checkpoint.read("dtypes/float32/.ATTRIBUTES/VARIABLE_VALUE")  # the others still read
    one_line_error(lambda: read_tf_checkpoint(prefix), "crc32c mismatch")


def test_truncated_or_corrupt_index(tmp_path: Path) -> None:
    prefix = copy_basic(tmp_path)
    index = Path(f"{prefix}.index")
    original = index.read_bytes()
    index.write_bytes(original[:-10])
    one_line_error(lambda: TFCheckpoint.open(prefix), str(index), "bad table magic")
    index.write_bytes(original[:30])
    one_line_error(lambda: TFCheckpoint.open(prefix), str(index), "truncated")
    corrupt = bytearray(original)
    corrupt[100] ^= 0x01
    index.write_bytes(bytes(corrupt))
    one_line_error(lambda: TFCheckpoint.open(prefix), str(index), "crc32c mismatch")
    index.unlink()
    one_line_error(lambda: TFCheckpoint.open(prefix), str(index), "no such file")


def test_missing_or_truncated_data_shard(tmp_path: Path) -> None:
    prefix = copy_basic(tmp_path)
    checkpoint = TFCheckpoint.open(prefix)
    shard = Path(f"{prefix}.data-00000-of-00001")
    last_key = max(checkpoint.keys(), key=lambda key: checkpoint.entry(key).offset)
    shard.write_bytes(shard.read_bytes()[: checkpoint.entry(last_key).offset + 1])
    one_line_error(lambda: checkpoint.read(last_key), str(shard), last_key, "truncated data shard")
    shard.unlink()
    one_line_error(lambda: checkpoint.read(BIG_KEY), str(shard), BIG_KEY, "missing data shard")


def test_unknown_dtype_and_compressed_block(tmp_path: Path) -> None:
    prefix = copy_basic(tmp_path)
    index = Path(f"{prefix}.index")
    key = "dtypes/float32/.ATTRIBUTES/VARIABLE_VALUE"
    entry_bytes = TFCheckpoint.open(prefix).entry(key).SerializeToString()
    assert entry_bytes.startswith(b"\x08\x01")  # dtype: DT_FLOAT
    rewrite_index_block(index, index.read_bytes().index(entry_bytes) + 1, b"\x0b")  # DT_QINT8
    checkpoint = TFCheckpoint.open(prefix)
    one_line_error(lambda: checkpoint.read(key), str(index), key, "DT_QINT8")
    offset, size = data_block_handles(index.read_bytes(), str(index))[0]
    rewrite_index_block(index, offset + size, b"\x01")  # the block's type byte: snappy
    one_line_error(lambda: TFCheckpoint.open(prefix), str(index), "compression type 1")


def test_unknown_key_suggests_close_ones_and_directories_need_a_state_file(
    tmp_path: Path,
) -> None:
    checkpoint = TFCheckpoint.open(FIXTURES / "basic")
    one_line_error(
        lambda: checkpoint.read("dtypes/float23/.ATTRIBUTES/VARIABLE_VALUE"),
        "dtypes/float23",
        "closest: dtypes/float32/.ATTRIBUTES/VARIABLE_VALUE",
    )
    one_line_error(lambda: TFCheckpoint.open(tmp_path), str(tmp_path), "'checkpoint' state file")
