"""Input TFRecords for the infer-detections tests (helper module, not a test file).

Records are tf.Examples of small PNG images with a ground-truth box and extra features of
every kind (so "every input feature kept" is checked on more than the standard keys), each
named by its global index in ``image/filename`` (``img007.png``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiny_detector import example_bytes, sample_image

from objdet.data.example import DETECTION_KEYS
from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.protos import example_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs of one size (batches end where the size changes), 8 of them not a multiple of 8.
SIZES = [(40, 56)] * 5 + [(48, 64)] * 3 + [(40, 56)] * 12 + [(32, 48)] * 4


def example(index: int) -> bytes:
    """Record ``index``: image, box, and extra features the output must keep."""
    height, width = SIZES[index % len(SIZES)]
    parsed = example_pb2.Example.FromString(
        example_bytes(sample_image(height, width, seed=index), filename=f"img{index:03d}.png"))
    features = parsed.features.feature
    features["custom/weights"].float_list.value.extend([0.5, index / 7.0])
    features["custom/ids"].int64_list.value.extend([index, -index, 2**40])
    features["custom/note"].bytes_list.value.append(f"note {index}".encode())
    features["custom/empty"].float_list.SetInParent()
    return parsed.SerializeToString()


def write_inputs(directory: Path, counts: tuple[int, ...] = (14, 10)) -> list[Path]:
    """Input files ``input-0000k-of-0000N`` holding ``counts[k]`` consecutive records."""
    paths, start = [], 0
    for shard, count in enumerate(counts):
        path = directory / f"input-{shard:05d}-of-{len(counts):05d}"
        with TFRecordWriter(path) as writer:
            for index in range(start, start + count):
                writer.write(example(index))
        paths.append(path)
        start += count
    return paths


def examples(paths: Path | list[Path]) -> list[example_pb2.Example]:
    return [example_pb2.Example.FromString(record) for record in read_records(paths)]


def filename(parsed: example_pb2.Example) -> str:
    return parsed.features.feature["image/filename"].bytes_list.value[0].decode()


def input_features(parsed: example_pb2.Example) -> dict[str, bytes]:
    """Every feature but the detections, serialized (equal bytes = equal feature)."""
    return {key: value.SerializeToString() for key, value in parsed.features.feature.items()
            if key not in DETECTION_KEYS}


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m objdet ARGS`` in a fresh process with one intra-op thread (as the tests'
    in-process runs: ONNX Runtime follows torch's thread count, and its sums depend on it)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "objdet", *args], env=environment, cwd=REPO_ROOT,
                          check=False, capture_output=True, text=True, timeout=120)
