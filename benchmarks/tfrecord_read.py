"""Benchmark: reading TFRecords of tf.Examples on one thread, CRCs checked.

Generates its own data in a temporary directory (10 shards x 1,000 records of ~100 KB:
random JPEG-like bytes as image/encoded plus 3 boxes with the OD API keys, ~1 GB), then
measures, one pass each over all shards:

* raw read: framing + both CRCs, no parsing (``read_records``);
* read + protobuf parse of each record into an Example message;
* read + objdet's ``ExampleDecoder`` without image decoding (the training fast path);

and prints records/s, MB/s and peak RSS after each phase, then appends them with the
machine description to ``benchmarks/RESULTS.md``. The temporary files are removed.

Reference (TensorFlow 2.21 on the project machine, one thread, TFRecordDataset +
parse_single_example over such files): 417 MB/s (4,160 records/s); raw read 2.6 GB/s.

Usage: ``python benchmarks/tfrecord_read.py [--quick]`` (``--quick``: 2 x 50 records).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import google.protobuf
from google.protobuf.internal import api_implementation

from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.protos import example_pb2

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
IMAGE_SIZE = 100_000  # bytes of image/encoded per record, on average
BOX_KEYS = ("ymin", "xmin", "ymax", "xmax")


def make_example(rng: random.Random, index: int) -> bytes:
    """One serialized tf.Example: ~100 KB of JPEG-like bytes, 640x480, 3 boxes."""
    example = example_pb2.Example()
    feature = example.features.feature
    size = IMAGE_SIZE + rng.randint(-10_000, 10_000)
    feature["image/encoded"].bytes_list.value.append(b"\xff\xd8\xff\xe0" + rng.randbytes(size))
    feature["image/format"].bytes_list.value.append(b"jpeg")
    feature["image/height"].int64_list.value.append(480)
    feature["image/width"].int64_list.value.append(640)
    feature["image/filename"].bytes_list.value.append(f"image-{index}.jpg".encode())
    feature["image/source_id"].bytes_list.value.append(str(index).encode())
    for key in BOX_KEYS:
        low = 0.1 if key in ("ymin", "xmin") else 0.6
        values = [low + rng.random() * 0.3 for _ in range(3)]
        feature[f"image/object/bbox/{key}"].float_list.value.extend(values)
    feature["image/object/class/text"].bytes_list.value.extend([b"cat", b"dog", b"cat"])
    feature["image/object/class/label"].int64_list.value.extend([1, 2, 1])
    return example.SerializeToString()


def generate(directory: Path, num_shards: int, records_per_shard: int) -> list[str]:
    """Write the shards one record at a time (memory stays small); return their paths."""
    rng = random.Random(0)
    paths = []
    for shard in range(num_shards):
        path = directory / f"bench.record-{shard:05d}-of-{num_shards:05d}"
        with TFRecordWriter(path) as writer:
            for i in range(records_per_shard):
                writer.write(make_example(rng, shard * records_per_shard + i))
        paths.append(str(path))
    return paths


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(name: str, records: Iterator[object], total_bytes: int) -> dict[str, float | str]:
    """Consume ``records``; figures include how much the peak RSS grew during the phase."""
    peak_before = peak_rss_mb()
    start = time.perf_counter()
    count = sum(1 for _ in records)
    seconds = time.perf_counter() - start
    figures: dict[str, float | str] = {
        "phase": name,
        "records": count,
        "seconds": seconds,
        "records_per_s": count / seconds,
        "mb_per_s": total_bytes / seconds / 1e6,
        "peak_rss_mb": peak_rss_mb(),
        "rss_growth_mb": peak_rss_mb() - peak_before,
    }
    print(
        f"{name:<42} {count:>6} records {seconds:7.2f} s {count / seconds:9.0f} records/s "
        f"{total_bytes / seconds / 1e6:8.0f} MB/s  peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(+{figures['rss_growth_mb']:.0f} MB in this phase)"
    )
    return figures


def parsed(paths: list[str]) -> Iterator[object]:
    parse: Callable[[bytes], object] = example_pb2.Example.FromString
    for data in read_records(paths):
        yield parse(data)


def decoded(paths: list[str], decoder: Callable[[bytes], object]) -> Iterator[object]:
    for data in read_records(paths):
        yield decoder(data)


def plain(paths: list[str]) -> Iterator[object]:
    """The disk/page-cache ceiling: read the files in 1 MiB chunks into one buffer."""
    buffer = bytearray(1 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                yield None


def training_decoder() -> Callable[[bytes], object]:
    from objdet.data.example import ExampleDecoder
    from objdet.structures.label_map import LabelMap

    return ExampleDecoder(LabelMap.from_names(["cat", "dog"]), decode_image=False)


def machine_description() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), "
        f"Python {platform.python_version()}, protobuf {google.protobuf.__version__} "
        f"({api_implementation.Type()})"
    )


def append_results(results: list[dict[str, float | str]], shape: str, total_bytes: int) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"\n## tfrecord_read — {now}\n",
        f"Machine: {machine_description()}.  ",
        f"Data: {shape}, {total_bytes / 1e6:.0f} MB; one thread, both CRCs checked.  ",
        "Reference (TensorFlow 2.21, one thread): parse 417 MB/s (4,160 records/s); raw 2.6 GB/s.\n",
        "| phase | records/s | MB/s | peak RSS (MB) | peak RSS growth in phase (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in results:
        lines.append(
            f"| {row['phase']} | {row['records_per_s']:,.0f} | {row['mb_per_s']:,.0f} "
            f"| {row['peak_rss_mb']:,.0f} | {row['rss_growth_mb']:,.0f} |"
        )
    if not RESULTS.exists():
        lines.insert(0, "# Benchmark results\n")
    with RESULTS.open("a") as handle:  # one write: other benchmarks append here too
        handle.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 shards x 50 records")
    parser.add_argument("--no_results", action="store_true", help="do not append RESULTS.md")
    args = parser.parse_args()
    num_shards, per_shard = (2, 50) if args.quick else (10, 1000)
    directory = Path(tempfile.mkdtemp(prefix="objdet-tfrecord-bench-"))
    try:
        paths = generate(directory, num_shards, per_shard)
        total_bytes = sum(os.path.getsize(path) for path in paths)
        shape = f"{num_shards} shards x {per_shard} records of ~{IMAGE_SIZE // 1000} KB"
        print(f"{shape}: {total_bytes / 1e6:.0f} MB in {directory}")
        print(machine_description())
        results = [
            measure("plain file read (no framing, no CRC)", plain(paths), total_bytes),
            measure("raw read + CRC (no parse)", read_records(paths), total_bytes),
            measure("read + CRC + protobuf parse (Example)", parsed(paths), total_bytes),
        ]
        decoder = training_decoder()  # imports torch: after the torch-free phases
        results += [
            measure("read + CRC + objdet decode (no image)", decoded(paths, decoder), total_bytes),
        ]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if not args.no_results:
        append_results(results, shape, total_bytes)


if __name__ == "__main__":
    main()
