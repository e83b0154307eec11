"""Batch inference over TFRecords of tf.Examples (the OD API's ``infer_detections.py``).

Each input tf.Example is written back unchanged (ground truth and any other feature kept)
with its detections added as ``image/detection/bbox/{ymin,xmin,ymax,xmax}`` (normalized),
``image/detection/label`` (label-map ids) and ``image/detection/score``, all of a
predictor's detections (no score threshold), replacing detections already there. An image
with no detections gets all six lists present and empty: offline evaluation (as the OD
API's) counts its ground truth as missed, where absent lists would skip the record. With
``discard_image_pixels`` ``image/encoded`` is removed (the evaluation tools need only the
boxes). Output files are written atomically; ``OUT@N`` writes N shards (record i -> shard
i % N, TensorFlow's ``OUT-0000k-of-0000N`` names), ``OUT`` one file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from objdet.data.example import DETECTION_KEYS
from objdet.data.tfrecord import PathSpec, read_records_with_source, write_sharded
from objdet.inference.inputs import parse_example, pixels_from_example
from objdet.inference.predictor import Predictor
from objdet.protos import example_pb2
from objdet.structures.detections import Detections

_OUTPUT_SHARDS = re.compile(r"^(?P<base>.+)@(?P<count>\d+)$")


@dataclass
class InferenceReport:
    records: int = 0
    detections: int = 0
    seconds: float = 0.0
    output_paths: list[str] = field(default_factory=list)


def infer_detections(
    input_paths: PathSpec, output_path: str | os.PathLike[str], predictor: Predictor,
    *, discard_image_pixels: bool = False,
    progress: Callable[[int], None] | None = None,
) -> InferenceReport:
    """Run ``predictor`` on every tf.Example of ``input_paths`` and write them to
    ``output_path`` (``OUT`` or ``OUT@N``) with detections added; see the module docstring.

    A record that is not a tf.Example or whose image does not decode raises ``DataError``
    naming it (file, index, offset); nothing is written then.
    """
    base, num_shards = split_output_spec(os.fspath(output_path))
    report = InferenceReport()
    started = time.perf_counter()

    def annotated_records() -> Iterator[bytes]:
        for source, data in read_records_with_source(input_paths):
            example = parse_example(data, source)
            detections = predictor.predict_pixels(pixels_from_example(example, source))
            add_detections(example, detections)
            if discard_image_pixels:
                del example.features.feature["image/encoded"]
            report.records += 1
            report.detections += len(detections)
            if progress is not None:
                progress(report.records)
            yield example.SerializeToString()

    report.output_paths = write_sharded(annotated_records(), base, num_shards)
    report.seconds = time.perf_counter() - started
    return report


def split_output_spec(output_path: str) -> tuple[str, int]:
    """``OUT@N`` -> (``OUT``, N); ``OUT`` -> (``OUT``, 1)."""
    match = _OUTPUT_SHARDS.match(output_path)
    if match is None:
        return output_path, 1
    return match["base"], int(match["count"])


def add_detections(example: example_pb2.Example, detections: Detections) -> None:
    """Set the ``image/detection/*`` features of ``example`` (replacing any already there).

    Every list is written, empty ones included (``SetInParent`` marks an empty list present).
    """
    features = example.features.feature
    for key in DETECTION_KEYS:
        if key in features:
            del features[key]
    boxes = detections.normalized_boxes()  # [D, 4] ymin, xmin, ymax, xmax
    float_lists: dict[str, np.ndarray] = {
        key: boxes[:, column] for column, key in enumerate(DETECTION_KEYS[:4])
    }
    float_lists["image/detection/score"] = detections.scores
    for key, values in float_lists.items():
        features[key].float_list.SetInParent()
        features[key].float_list.value.extend(values.tolist())
    features["image/detection/label"].int64_list.SetInParent()
    features["image/detection/label"].int64_list.value.extend(detections.labels.tolist())
