"""Reading the SSTable behind a TF checkpoint's ``PREFIX.index`` (TensorFlow's copy of LevelDB's
table format, tensorflow/tsl/lib/io/{format,block,table}.cc).

Layout of the file, all integers little-endian::

    [data block 0] ... [data block N-1] [metaindex block] [index block] [footer: 48 bytes]

* footer: the metaindex and index BlockHandles (each two varint64s: offset, size), zero
  padding to 40 bytes, then the 8-byte magic 0xdb4775248b80fb57;
* every block is followed by a 5-byte trailer: a compression type byte and the masked
  CRC-32C of the block's bytes plus that type byte;
* a block holds sorted entries ``varint32 shared, varint32 non_shared, varint32 value_length,
  key[shared:] (non_shared bytes), value``, where each key reuses ``shared`` bytes of the
  previous key's prefix; a restart point (``shared == 0``) every 16 entries; then the restart
  offsets (uint32 each) and their count (uint32);
* the index block maps a separator key (>= the last key of a data block) to that data
  block's BlockHandle; TF's table ignores the metaindex block.

TensorFlow's bundle writer (tensor_bundle.cc: ``BundleWriter::Finish`` and ``MergeBundles``)
always sets ``options.compression = kNoCompression``, so no checkpoint TF writes holds a
compressed block; a block of any other type (1 is snappy) is reported, not decompressed.
"""

from __future__ import annotations

import struct

import google_crc32c

from objdet.errors import CheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles (each up to 2 x 10 varint bytes), padding, 8-byte magic
BLOCK_TRAILER_SIZE = 5  # type byte + masked crc32c
NO_COMPRESSION = 0
_MASK_DELTA = 0xA282EAD8
_UINT32 = struct.Struct("<I")


def unmask_crc32c(masked: int) -> int:
    """The CRC-32C that TensorFlow's ``crc32c::Mask`` turned into ``masked``."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def read_varint(data: bytes, position: int, limit: int) -> tuple[int, int]:
    """The varint starting at ``data[position]`` and the position after it.

    Raises ValueError when the varint runs past ``limit`` or is longer than 10 bytes.
    """
    result = 0
    shift = 0
    while position < limit and shift < 70:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
    raise ValueError(f"bad varint at byte {position}")


def read_table(data: bytes, path: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the SSTable held in ``data`` (the bytes of file ``path``), in
    key order. Block checksums are verified.

    Raises CheckpointError for a bad magic number, a truncated file, a checksum mismatch or
    a malformed block, naming ``path`` and the block's offset.
    """
    limit = len(data) - FOOTER_SIZE  # no block reaches into the footer
    entries: list[tuple[bytes, bytes]] = []
    for handle in data_block_handles(data, path):
        entries.extend(_block_entries(data, handle, limit, path))
    return entries


def data_block_handles(data: bytes, path: str) -> list[tuple[int, int]]:
    """(offset, size) of each data block, in key order, from the footer and index block."""
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(
            f"{path}: truncated checkpoint index ({len(data)} bytes, shorter than its "
            f"{FOOTER_SIZE}-byte footer)"
        )
    footer_start = len(data) - FOOTER_SIZE
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: not a TF checkpoint index (bad table magic 0x{magic:016x}, expected "
            f"0x{TABLE_MAGIC:016x}; truncated or not an SSTable)"
        )
    try:
        _, position = _read_handle(data, footer_start, len(data))  # metaindex: unused
        index_handle, _ = _read_handle(data, position, len(data))
    except ValueError as error:
        raise CheckpointError(f"{path}: corrupt table footer ({error})") from None
    handles = []
    for _, handle_bytes in _block_entries(data, index_handle, footer_start, path):
        try:
            handles.append(_read_handle(handle_bytes, 0, len(handle_bytes))[0])
        except ValueError as error:
            raise CheckpointError(f"{path}: corrupt index block entry ({error})") from None
    return handles


def _read_handle(data: bytes, position: int, limit: int) -> tuple[tuple[int, int], int]:
    """A BlockHandle (offset, size) at ``position`` and the position after it."""
    offset, position = read_varint(data, position, limit)
    size, position = read_varint(data, position, limit)
    return (offset, size), position


def _block_contents(data: bytes, handle: tuple[int, int], limit: int, path: str) -> bytes:
    """The verified bytes of the block at ``handle`` (its trailer checked and stripped)."""
    offset, size = handle
    end = offset + size
    where = f"{path}: block at byte {offset} ({size} bytes)"
    if end + BLOCK_TRAILER_SIZE > limit:
        raise CheckpointError(f"{where} runs past the end of the table: truncated index")
    block_type = data[end]
    (stored,) = _UINT32.unpack_from(data, end + 1)
    actual = google_crc32c.value(data[offset : end + 1])  # the block and its type byte
    if unmask_crc32c(stored) != actual:
        raise CheckpointError(
            f"{where}: crc32c mismatch (stored {unmask_crc32c(stored):08x}, "
            f"computed {actual:08x}): the index is corrupt"
        )
    if block_type != NO_COMPRESSION:
        raise CheckpointError(
            f"{where}: compression type {block_type} (1 is snappy); TensorFlow's bundle "
            "writer never compresses, so this index was not written by TensorFlow"
        )
    return data[offset:end]


def _block_entries(
    data: bytes, handle: tuple[int, int], limit: int, path: str
) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one block, keys expanded from their shared prefixes."""
    block = _block_contents(data, handle, limit, path)
    where = f"{path}: block at byte {handle[0]}"
    if len(block) < 4:
        raise CheckpointError(f"{where} is too short for its restart count: corrupt index")
    (num_restarts,) = _UINT32.unpack_from(block, len(block) - 4)
    entries_end = len(block) - 4 * (num_restarts + 1)
    if entries_end < 0:
        raise CheckpointError(f"{where}: {num_restarts} restart points do not fit its size")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    position = 0
    try:
        while position < entries_end:
            shared, position = read_varint(block, position, entries_end)
            non_shared, position = read_varint(block, position, entries_end)
            value_length, position = read_varint(block, position, entries_end)
            value_start = position + non_shared
            if shared > len(key) or value_start + value_length > entries_end:
                raise ValueError(f"entry at byte {position} overruns the block")
            key = key[:shared] + block[position:value_start]
            position = value_start + value_length
            entries.append((key, block[value_start:position]))
    except ValueError as error:
        raise CheckpointError(f"{where}: corrupt entry ({error})") from None
    return entries
