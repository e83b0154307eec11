"""TF2 object-based checkpoints read without TensorFlow (TensorFlow's "tensor bundle" format,
tensorflow/core/util/tensor_bundle/tensor_bundle.cc).

A checkpoint ``PREFIX`` (e.g. ``DIR/ckpt-0``) is ``PREFIX.index``, an SSTable (tf_table.py)
whose "" key holds a BundleHeaderProto and every other key a BundleEntryProto (dtype, shape,
data shard, offset, size, masked CRC-32C), plus the shards ``PREFIX.data-SSSSS-of-NNNNN``
holding the tensors' raw little-endian bytes. DT_STRING tensors are stored as ``varint64``
lengths, the masked CRC-32C of those lengths (each taken as a uint32), then the bytes.
A variable larger than a shard (``MaxShardSizePolicy``) is stored in slices: its entry lists
them and each lies under its own key (tf_slice_keys.py).

What :meth:`TFCheckpoint.read` returns, per TF dtype: float32/float16/float64, int8/16/32/64,
uint8/16/32/64, complex64/128 and bool as that NumPy dtype; **bfloat16 widened to float32**
(exactly: NumPy has no bfloat16); DT_STRING as an ``object`` array of ``bytes`` (a scalar is
a 0-d array: ``.item()``). Every read verifies the tensor's CRC-32C. Other dtypes (quantized,
float8, int4, resource, variant) raise CheckpointError.

    checkpoint = TFCheckpoint.open("DIR/ckpt-0")     # or "DIR" (its `checkpoint` file)
    kernel = checkpoint.read("model/.../kernel/.ATTRIBUTES/VARIABLE_VALUE")  # [kh, kw, in, out]
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c
import numpy as np
from google.protobuf.message import DecodeError

from objdet.errors import CheckpointError
from objdet.models.checkpoints.tf_object_graph import (
    OBJECT_GRAPH_KEY,
    full_names,
    parse_object_graph,
)
from objdet.models.checkpoints.tf_slice_keys import slice_key
from objdet.models.checkpoints.tf_table import read_table, read_varint, unmask_crc32c
from objdet.protos.tensor_bundle_pb2 import BundleEntryProto, BundleHeaderProto
from objdet.protos.tf_types_pb2 import DataType
from objdet.protos.trackable_object_graph_pb2 import TrackableObjectGraph

STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's state file in a checkpoint directory
TENSOR_BUNDLE_VERSION = 1  # kTensorBundleVersion: the newest format version this reads
_BFLOAT16 = DataType.DT_BFLOAT16
_STRING = DataType.DT_STRING
# TF dtype -> the NumPy dtype of its stored bytes (little-endian, as TF writes on x86/ARM).
_STORED_DTYPES: dict[int, np.dtype] = {
    DataType.DT_FLOAT: np.dtype("<f4"),
    DataType.DT_HALF: np.dtype("<f2"),
    DataType.DT_DOUBLE: np.dtype("<f8"),
    DataType.DT_INT8: np.dtype("i1"),
    DataType.DT_INT16: np.dtype("<i2"),
    DataType.DT_INT32: np.dtype("<i4"),
    DataType.DT_INT64: np.dtype("<i8"),
    DataType.DT_UINT8: np.dtype("u1"),
    DataType.DT_UINT16: np.dtype("<u2"),
    DataType.DT_UINT32: np.dtype("<u4"),
    DataType.DT_UINT64: np.dtype("<u8"),
    DataType.DT_COMPLEX64: np.dtype("<c8"),
    DataType.DT_COMPLEX128: np.dtype("<c16"),
    DataType.DT_BOOL: np.dtype("?"),
    _BFLOAT16: np.dtype("<u2"),  # the upper 16 bits of a float32
}
_CHECKPOINT_FILE_SUFFIX = re.compile(r"\.(index|data-\d{5}-of-\d{5})$")
# text format, C-escaped: model_checkpoint_path: "ckpt-7"
_MODEL_CHECKPOINT_PATH = re.compile(
    rb'^\s*model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE
)


def data_shard_path(prefix: str, shard_id: int, num_shards: int) -> str:
    """``PREFIX.data-00000-of-00001``: the file holding shard ``shard_id``."""
    return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


def resolve_prefix(path: str | os.PathLike[str]) -> str:
    """The checkpoint prefix ``path`` names: itself, ``path`` minus ``.index`` /
    ``.data-*``, or for a directory the newest checkpoint its ``checkpoint`` state file
    names (``model_checkpoint_path``, relative to the directory), as
    ``tf.train.latest_checkpoint`` does."""
    text = os.fspath(path)
    if not os.path.isdir(text):
        return _CHECKPOINT_FILE_SUFFIX.sub("", text)
    state = os.path.join(text, STATE_FILE)
    try:
        match = _MODEL_CHECKPOINT_PATH.search(Path(state).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(
            f"{text}: a directory without a '{STATE_FILE}' state file; "
            "name the checkpoint prefix (DIR/ckpt-N) instead"
        ) from None
    if match is None:
        raise CheckpointError(f"{state}: no model_checkpoint_path in the checkpoint state file")
    name = codecs.escape_decode(match.group(1))[0].decode("utf-8", "surrogateescape")
    return os.path.join(text, name)  # an absolute name replaces the directory


class TFCheckpoint:
    """One TF checkpoint: its index read once at :meth:`open`, tensors read on demand."""

    def __init__(self, prefix: str, header: BundleHeaderProto, entries: dict[bytes, bytes]):
        """Use :meth:`open`. ``entries``: index key -> serialized BundleEntryProto."""
        self.prefix = prefix
        self.num_shards = max(header.num_shards, 1)
        self._entries = entries
        self._keys = sorted(
            key.decode("utf-8", "surrogateescape") for key in entries if not key.startswith(b"\0")
        )  # keys starting with a 0 byte are slices of another key's tensor
        self._parsed: dict[bytes, BundleEntryProto] = {}
        self._object_graph: TrackableObjectGraph | None = None

    @classmethod
    def open(cls, prefix: str | os.PathLike[str]) -> TFCheckpoint:
        """Read ``PREFIX.index`` (see :func:`resolve_prefix` for what ``prefix`` may be).

        Raises CheckpointError for a missing, truncated or corrupt index or an unsupported
        bundle header; the data shards are opened only by :meth:`read`.
        """
        resolved = resolve_prefix(prefix)
        index_path = resolved + ".index"
        try:
            data = Path(index_path).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(
                f"{index_path}: no such file (a TF checkpoint PREFIX is PREFIX.index plus "
                "PREFIX.data-* shards)"
            ) from None
        items = read_table(data, index_path)
        if not items or items[0][0] != b"":
            raise CheckpointError(f'{index_path}: no bundle header (the index\'s "" key)')
        header = BundleHeaderProto()
        try:
            header.ParseFromString(items[0][1])
        except DecodeError:
            raise CheckpointError(f"{index_path}: the bundle header does not parse") from None
        _check_header(header, index_path)
        return cls(resolved, header, dict(items[1:]))

    def keys(self) -> list[str]:
        """Every tensor's key, sorted, as ``tf.train.list_variables`` lists them (the object
        graph included, slice keys not)."""
        return list(self._keys)

    def __iter__(self) -> Iterator[str]:
        """The keys, as :meth:`keys` lists them."""
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _key_bytes(key) in self._entries

    def entry(self, key: str) -> BundleEntryProto:
        """The BundleEntryProto of ``key``; CheckpointError naming close keys if absent."""
        raw_key = _key_bytes(key)
        parsed = self._parsed.get(raw_key)
        if parsed is not None:
            return parsed
        if raw_key not in self._entries:
            close = difflib.get_close_matches(key, self._keys, n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise CheckpointError(
                f"{self.prefix}.index: no key {key!r} among its {len(self._keys)} keys{hint}"
            )
        parsed = BundleEntryProto()
        try:
            parsed.ParseFromString(self._entries[raw_key])
        except DecodeError:
            raise CheckpointError(f"{self.prefix}.index: entry of {key!r} does not parse") from None
        self._parsed[raw_key] = parsed
        return parsed

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of ``key``'s tensor, outermost dimension first."""
        return tuple(int(dim.size) for dim in self.entry(key).shape.dim)

    def tf_dtype(self, key: str) -> str:
        """TF's name of ``key``'s dtype, e.g. ``DT_BFLOAT16``."""
        return _dtype_name(int(self.entry(key).dtype))

    def dtype(self, key: str) -> np.dtype:
        """The NumPy dtype :meth:`read` returns for ``key`` (float32 for bfloat16, object for
        strings)."""
        return _result_dtype(int(self.entry(key).dtype), key, self)

    def read(self, key: str) -> np.ndarray:
        """The value of ``key``, CRC-checked, as a new array of :meth:`shape`."""
        return self._read(key, None)

    def read_all(self, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The values of ``keys`` (default: every key but the object graph), each data shard
        read from disk once."""
        shards: dict[int, np.ndarray] = {}
        chosen = [key for key in self._keys if key != OBJECT_GRAPH_KEY] if keys is None else keys
        return {key: self._read(key, shards) for key in chosen}

    def object_graph(self) -> TrackableObjectGraph:
        """The checkpoint's TrackableObjectGraph (CheckpointError if it has none: a TF1
        name-based checkpoint)."""
        if self._object_graph is None:
            if OBJECT_GRAPH_KEY not in self:
                raise CheckpointError(
                    f"{self.prefix}.index: no {OBJECT_GRAPH_KEY} (a TF1 name-based checkpoint, "
                    "not an object-based TF2 one)"
                )
            serialized = self.read(OBJECT_GRAPH_KEY).item()
            self._object_graph = parse_object_graph(serialized, f"{self.prefix}.index")
        return self._object_graph

    def full_names(self) -> dict[str, str]:
        """Checkpoint key -> the saved variable's full name (SerializedTensor.full_name)."""
        return full_names(self.object_graph())

    def _read(self, key: str, shards: dict[int, np.ndarray] | None) -> np.ndarray:
        entry = self.entry(key)
        result_dtype = _result_dtype(int(entry.dtype), key, self)
        shape = self.shape(key)
        if not entry.slices:
            return self._decode(key, entry, shape, shards)
        value = np.empty(shape, result_dtype)
        covered = 0
        for tensor_slice in entry.slices:
            where = tuple(
                slice(extent.start, extent.start + extent.length)
                if extent.HasField("length")
                else slice(None)
                for extent in tensor_slice.extent
            )
            piece_key = slice_key(key, tensor_slice).decode("utf-8", "surrogateescape")
            if piece_key not in self:
                raise CheckpointError(
                    f"{self.prefix}.index: a slice of {key!r} is missing "
                    f"(extents {[(e.start, e.length) for e in tensor_slice.extent]})"
                )
            piece = self.entry(piece_key)
            piece_shape = tuple(int(dim.size) for dim in piece.shape.dim)
            value[where] = self._decode(f"{key} (slice)", piece, piece_shape, shards)
            covered += int(np.prod(piece_shape))
        if covered != value.size:
            raise CheckpointError(
                f"{self.prefix}.index: the slices of {key!r} hold {covered} of its "
                f"{value.size} elements"
            )
        return value

    def _decode(
        self,
        key: str,
        entry: BundleEntryProto,
        shape: tuple[int, ...],
        shards: dict[int, np.ndarray] | None,
    ) -> np.ndarray:
        """The tensor ``entry`` locates, checked against its size and CRC-32C."""
        number = int(entry.dtype)
        path = data_shard_path(self.prefix, entry.shard_id, self.num_shards)
        count = int(np.prod(shape))
        if number != _STRING:
            stored = _STORED_DTYPES[number]
            if entry.size != count * stored.itemsize:
                raise CheckpointError(
                    f"{self.prefix}.index: key {key!r} stores {entry.size} bytes, but "
                    f"{count} x {_dtype_name(number)} take "
                    f"{count * stored.itemsize}"
                )
        raw = self._bytes(key, entry, path, shards)  # [size] uint8
        if number == _STRING:
            return _decode_strings(raw, count, entry.crc32c, f"{path}: key {key!r}").reshape(shape)
        actual = google_crc32c.value(raw) if raw.size else 0
        if unmask_crc32c(entry.crc32c) != actual:
            raise CheckpointError(
                f"{path}: crc32c mismatch for key {key!r} (bytes {entry.offset}.."
                f"{entry.offset + entry.size}): the data shard is corrupt"
            )
        value = raw.view(_STORED_DTYPES[number]).reshape(shape)
        if number == _BFLOAT16:  # bfloat16 is the upper half of a float32
            return (value.astype(np.uint32) << 16).view(np.float32)
        return value

    def _bytes(
        self, key: str, entry: BundleEntryProto, path: str, shards: dict[int, np.ndarray] | None
    ) -> np.ndarray:
        """The ``entry.size`` stored bytes of ``key`` ([size] uint8): one read of them, or
        with ``shards`` a view of the whole shard, read once and kept there."""
        start, size = int(entry.offset), int(entry.size)
        try:
            if shards is None:
                data = np.empty(size, np.uint8)
                with open(path, "rb") as handle:
                    handle.seek(start)
                    data = data[: handle.readinto(data.data)]
            else:
                if entry.shard_id not in shards:
                    shards[entry.shard_id] = np.fromfile(path, np.uint8)
                data = shards[entry.shard_id][start : start + size]
        except FileNotFoundError:
            raise CheckpointError(
                f"{path}: missing data shard {entry.shard_id + 1} of {self.num_shards} of "
                f"checkpoint {self.prefix} (needed for key {key!r})"
            ) from None
        if data.size != size:
            raise CheckpointError(
                f"{path}: truncated data shard: key {key!r} needs bytes {start}..{start + size} "
                f"but the file has {os.path.getsize(path)}"
            )
        return data


def read_tf_checkpoint(prefix: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of a TF checkpoint but its object graph: key -> array (see
    :class:`TFCheckpoint` for the dtypes)."""
    return TFCheckpoint.open(prefix).read_all()


def _decode_strings(raw: np.ndarray, count: int, stored_crc: int, where: str) -> np.ndarray:
    """A DT_STRING tensor's ``count`` strings from its stored bytes (see the module doc)."""
    strings = np.empty(count, dtype=object)
    if raw.size == 0:  # TF reads nothing then and checks the CRC of nothing
        if unmask_crc32c(stored_crc) != 0:
            raise CheckpointError(f"{where}: crc32c mismatch (no bytes stored)")
        return strings
    data = raw.tobytes()
    lengths = []
    position = 0
    try:
        for _ in range(count):
            length, position = read_varint(data, position, len(data))
            lengths.append(length)
    except ValueError:
        raise CheckpointError(f"{where}: corrupt string lengths") from None
    length_bytes = b"".join(
        struct.pack("<I", n) if n <= 0xFFFFFFFF else struct.pack("<Q", n) for n in lengths
    )
    crc = google_crc32c.value(length_bytes)
    if position + 4 + sum(lengths) != len(data):
        raise CheckpointError(f"{where}: string lengths do not add up to the stored size")
    (length_crc,) = struct.unpack_from("<I", data, position)
    actual = google_crc32c.extend(crc, data[position:])  # length checksum, then the strings
    if unmask_crc32c(length_crc) != crc or unmask_crc32c(stored_crc) != actual:
        raise CheckpointError(f"{where}: crc32c mismatch: the data shard is corrupt")
    position += 4
    for index, length in enumerate(lengths):
        strings[index] = data[position : position + length]
        position += length
    return strings


def _check_header(header: BundleHeaderProto, index_path: str) -> None:
    if header.endianness != BundleHeaderProto.LITTLE:
        raise CheckpointError(f"{index_path}: a big-endian checkpoint (objdet reads little-endian)")
    version = header.version
    if (
        version.min_consumer > TENSOR_BUNDLE_VERSION
        or TENSOR_BUNDLE_VERSION in version.bad_consumers
    ):
        raise CheckpointError(
            f"{index_path}: bundle format version {version.producer} (min_consumer "
            f"{version.min_consumer}) is newer than this reader's {TENSOR_BUNDLE_VERSION}"
        )


def _result_dtype(number: int, key: str, checkpoint: TFCheckpoint) -> np.dtype:
    if number == _STRING:
        return np.dtype(object)
    if number == _BFLOAT16:
        return np.dtype(np.float32)
    if number in _STORED_DTYPES:
        return _STORED_DTYPES[number]
    supported = ", ".join(sorted(_dtype_name(n) for n in (*_STORED_DTYPES, _STRING)))
    raise CheckpointError(
        f"{checkpoint.prefix}.index: key {key!r} has dtype {checkpoint.tf_dtype(key)}, which "
        f"objdet cannot read (it reads {supported})"
    )


def _dtype_name(number: int) -> str:
    return DataType.Name(number) if number in DataType.values() else f"DataType {number}"


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")
