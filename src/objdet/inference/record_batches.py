"""Decoded tf.Examples for batch inference, in input order, grouped into same-size batches.

``decoded_batches`` reads the selected records of an ``IndexedTFRecords`` (one seek + read
each, both CRCs checked), parses each tf.Example and decodes its ``image/encoded``, and
groups consecutive images of one size into batches of up to ``batch_size`` (a size change
ends a batch early: a batched model input has one size). Errors name the record
(``file#index (offset N)``).

Decoding runs in the inferring thread: measured on the raccoon SSD (300x300, ONNX Runtime,
one thread), decoding a 640x480 JPEG takes about 2 ms and inferring it about 50 ms, so
overlapping the two could save at most ~4%; a prefetch thread tried here was not measurably
faster on a 2-core machine, and was removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from torch import Tensor

from objdet.data.tfrecord_index import IndexedTFRecords
from objdet.inference.inputs import parse_example, pixels_from_example
from objdet.protos import example_pb2


@dataclass
class DecodedRecord:
    """One input record: its global index, where it came from, the tf.Example, its pixels."""

    index: int
    source: str  # file#index (offset N), for error messages
    example: example_pb2.Example
    pixels: Tensor  # uint8 [3, H, W] RGB


def decoded_batches(
    records: IndexedTFRecords, indices: Iterable[int], batch_size: int,
) -> Iterator[list[DecodedRecord]]:
    """Batches of consecutive same-size images of ``records[i] for i in indices``."""
    return _batches(_decoded(records, indices), batch_size)


def _decoded(records: IndexedTFRecords, indices: Iterable[int]) -> Iterator[DecodedRecord]:
    for index in indices:
        source = records.source(index)
        example = parse_example(records[index], source)
        yield DecodedRecord(index, source, example, pixels_from_example(example, source))


def _batches(items: Iterator[DecodedRecord], batch_size: int) -> Iterator[list[DecodedRecord]]:
    batch: list[DecodedRecord] = []
    for item in items:
        if batch and (len(batch) == batch_size or item.pixels.shape != batch[0].pixels.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
