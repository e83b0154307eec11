"""The index keys of tensor slices (tensorflow/core/util/saved_tensor_slice_util.cc).

A variable larger than a checkpoint shard (``tf.train.experimental.MaxShardSizePolicy``), or
a TF1 partitioned variable, is stored in slices: its own BundleEntryProto lists them
(``slices``) and each slice's bytes lie under the key ``EncodeTensorNameSlice(key, slice)``,
written in TF's OrderedCode (tensorflow/core/lib/strings/ordered_code.cc), which sorts
bytewise in the same order as its values. Such keys start with a 0 byte, which no variable's
key does.
"""

from __future__ import annotations

import re

from objdet.protos.tensor_slice_pb2 import TensorSliceProto

# OrderedCode's escapes of the bytes 0x00 and 0xff in strings
_STRING_SPECIAL = re.compile(b"[\x00\xff]")
_STRING_ESCAPES = {b"\x00": b"\x00\xff", b"\xff": b"\xff\x00"}
# kLengthToHeaderBits of TF's OrderedCode: encoding length -> bits XORed into its first 2 bytes
_SIGNED_HEADER_BITS = (
    (0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0),
    (0xFC, 0), (0xFE, 0), (0xFF, 0), (0xFF, 0x80), (0xFF, 0xC0),
)  # fmt: skip


def slice_key(key: str, tensor_slice: TensorSliceProto) -> bytes:
    """The index key of one slice of ``key``'s tensor (TF's ``EncodeTensorNameSlice``: in
    OrderedCode, the number 0, ``key``, the rank, then per dimension the start and the
    length, -1 for a whole dimension)."""
    encoded = bytearray(b"\x00")  # WriteNumIncreasing(0)
    encoded += _STRING_SPECIAL.sub(
        lambda byte: _STRING_ESCAPES[byte[0]], key.encode("utf-8", "surrogateescape")
    )
    encoded += b"\x00\x01"  # the string's terminator
    rank = len(tensor_slice.extent)
    rank_bytes = rank.to_bytes((rank.bit_length() + 7) // 8, "big")
    encoded += bytes([len(rank_bytes)]) + rank_bytes  # WriteNumIncreasing(rank)
    for extent in tensor_slice.extent:
        encoded += signed_ordered_code(extent.start)
        encoded += signed_ordered_code(extent.length if extent.HasField("length") else -1)
    return bytes(encoded)


def signed_ordered_code(value: int) -> bytes:
    """TF's ``OrderedCode::WriteSignedNumIncreasing``: sign and length bits, then the value's
    two's complement, big-endian, in 1 to 10 bytes."""
    magnitude = ~value if value < 0 else value
    if magnitude < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = magnitude.bit_length() // 7 + 1
    encoded = bytearray((value & (1 << 80) - 1).to_bytes(10, "big")[10 - length :])
    encoded[0] ^= _SIGNED_HEADER_BITS[length][0]
    encoded[1] ^= _SIGNED_HEADER_BITS[length][1]
    return bytes(encoded)
