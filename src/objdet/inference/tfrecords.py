"""Batch inference over TFRecords of tf.Examples (the OD API's ``infer_detections.py``).

Each input tf.Example is written back unchanged (ground truth and any other feature kept)
with its detections added as ``image/detection/bbox/{ymin,xmin,ymax,xmax}`` (normalized),
``image/detection/label`` (label-map ids) and ``image/detection/score``, all of a
predictor's detections (no score threshold), replacing detections already there. An image
with no detections gets all six lists present and empty: offline evaluation (as the OD
API's) counts its ground truth as missed, where absent lists would skip the record. A model
with instance outputs adds, in the layouts of the OD API's ``image/object/*`` ground truth:

* masks (Mask R-CNN): ``image/detection/mask``, one PNG per detection of the image's size,
  0/1 (the box masks pasted into the image and thresholded at 0.5, as the OD API reframes
  ``detection_masks``): what ``image/object/mask`` holds and objdet's readers decode;
* keypoints (CenterNet keypoint tasks): ``image/detection/keypoint/y`` and ``/x``
  (normalized) and ``image/detection/keypoint/score``, ``num_detections * K`` values
  flattened detection by detection, like ``image/object/keypoint/*``.

These lists, too, are present and empty for an image without detections. With
``discard_image_pixels`` ``image/encoded`` is removed (the evaluation tools need only the
boxes). Records are written in input order.

Scale:

* batching: with an ``OnnxPredictor`` or a ``ProgramPredictor`` up to ``batch_size``
  consecutive images of one size go through one ``predict_batch`` call; other predictors
  take one image at a time (``objdet.inference.record_batches``).
* shards: ``shard``/``num_shards`` split the records over processes and ``OUT@N`` over
  files (``objdet.inference.sharding``); n shard runs write the records of one ``OUT@n``
  run, in the same files.
* resume: with a ``resume_key`` the output is committed after the first batch that ends
  ``commit_every`` or more records after the last commit. A run killed at any point
  (SIGKILL included) and restarted with the same arguments continues from its last commit
  (``objdet.inference.resumable_output``) and, resuming at a batch boundary, batches the
  rest as the uninterrupted run did: it writes the same files byte for byte. The key should
  identify the model; the inputs (path, size, mtime), outputs, shard and flags are added.

Input framing is checked before the first image is inferred (a header pass over every
file); a record that is not a tf.Example or whose image does not decode raises ``DataError``
naming it (``file#index (offset N)``), and the partial output is removed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from google.protobuf.internal.containers import MessageMap

from objdet.data.example import DETECTION_KEYS
from objdet.data.tfrecord import PathSpec
from objdet.data.tfrecord_index import IndexedTFRecords
from objdet.errors import ConfigError, DataError
from objdet.evaluation.offline import DETECTION_MASK_KEY
from objdet.inference.predictor import OnnxPredictor, Predictor, ProgramPredictor
from objdet.inference.record_batches import DecodedRecord, decoded_batches
from objdet.inference.resumable_output import ResumableRecordWriter
from objdet.inference.sharding import Shard, output_paths, progress_path, split_output_spec
from objdet.protos import example_pb2, feature_pb2
from objdet.structures.detections import Detections

__all__ = ["InferenceReport", "add_detections", "infer_detections", "split_output_spec"]

# Test hook: SIGKILL this process right after it wrote this many records (flushed, not
# committed), as a crash at an arbitrary moment would; tests check the restart.
KILL_AFTER_ENV = "OBJDET_INFER_DETECTIONS_KILL_AFTER"

# Instance outputs, where the model has them (see the module docstring).
DETECTION_KEYPOINT_KEYS = ("image/detection/keypoint/y", "image/detection/keypoint/x",
                           "image/detection/keypoint/score")

WHOLE_RUN = Shard()  # one process handles every record
Progress = Callable[[int, int], None]  # (records done, records of this shard) after each batch


@dataclass
class InferenceReport:
    records: int = 0  # records in the output, resumed ones included
    detections: int = 0
    resumed_records: int = 0  # records taken over from an interrupted run
    seconds: float = 0.0  # time of this run
    output_paths: list[str] = field(default_factory=list)
    restart_reason: str | None = None  # why an earlier run's progress was not used

    @property
    def images_per_second(self) -> float:
        inferred = self.records - self.resumed_records
        return inferred / self.seconds if self.seconds > 0 else 0.0


def infer_detections(
    input_paths: PathSpec, output_path: str | os.PathLike[str], predictor: Predictor,
    *, discard_image_pixels: bool = False, batch_size: int = 1, shard: Shard = WHOLE_RUN,
    resume_key: str | None = None, commit_every: int = 1000,
    progress: Progress | None = None,
) -> InferenceReport:
    """Run ``predictor`` on the tf.Examples of ``input_paths`` that ``shard`` selects and
    write them with detections added to ``output_path`` (``OUT`` or ``OUT@N``; a shard of
    several writes ``OUT-0000i-of-0000n``). See the module docstring."""
    if batch_size < 1 or commit_every < 1:
        raise ConfigError(
            f"batch_size and commit_every must be >= 1, got {batch_size}, {commit_every}")
    started = time.perf_counter()
    output_spec = os.fspath(output_path)
    records = IndexedTFRecords(input_paths)  # every header read: bad framing fails here
    indices = shard.record_indices(len(records))
    paths = output_paths(output_spec, shard)
    key = (None if resume_key is None
           else _run_key(records, paths, shard, discard_image_pixels, resume_key))
    report = InferenceReport()
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    with records, ResumableRecordWriter(paths, progress_path(output_spec, paths), key) as writer:
        resumed = writer.open()
        counters = resumed.counters or {}
        report.records = report.resumed_records = resumed.records
        report.detections = counters.get("detections", 0)
        report.restart_reason = resumed.restart_reason
        committed = resumed.records
        try:
            for batch in decoded_batches(records, indices[resumed.records:], batch_size):
                for item, detections in zip(batch, _predict(predictor, batch)):
                    writer.write(_annotated(item.example, detections, discard_image_pixels))
                    report.records += 1
                    report.detections += len(detections)
                    if report.records - report.resumed_records == kill_after:
                        writer.flush()
                        os.kill(os.getpid(), signal.SIGKILL)
                if report.records - committed >= commit_every:  # at a batch boundary: a
                    writer.commit({"detections": report.detections})  # resumed run batches alike
                    committed = report.records
                if progress is not None:
                    progress(report.records, len(indices))
        except DataError:
            writer.abandon()  # the input must change before a rerun, and then nothing resumes
            raise
        report.output_paths = writer.finish()
    report.seconds = time.perf_counter() - started
    return report


def _predict(predictor: Predictor, batch: list[DecodedRecord]) -> list[Detections]:
    if isinstance(predictor, OnnxPredictor | ProgramPredictor) and len(batch) > 1:
        pixels = torch.stack([item.pixels.permute(1, 2, 0) for item in batch])  # uint8 [B, H, W, 3]
        return predictor.predict_batch(predictor.batch_input(pixels))
    return [predictor.predict_pixels(item.pixels) for item in batch]


def _annotated(
    example: example_pb2.Example, detections: Detections, discard_image_pixels: bool,
) -> bytes:
    add_detections(example, detections)
    if discard_image_pixels:
        del example.features.feature["image/encoded"]
    # Sorted map keys: Python's per-process string hashing would order them differently in
    # a restarted (or another shard's) process, and resumed files must match byte for byte.
    return example.SerializeToString(deterministic=True)


def _run_key(
    records: IndexedTFRecords, paths: list[str], shard: Shard, discard_image_pixels: bool,
    resume_key: str,
) -> dict[str, object]:
    """What a resumed run must share with the interrupted one (else it starts over)."""
    inputs = [[os.path.abspath(index.path), index.file_size, index.mtime_ns]
              for index in records.indexes]
    return {"inputs": inputs, "outputs": [os.path.abspath(path) for path in paths],
            "shard": [shard.index, shard.count], "discard_image_pixels": discard_image_pixels,
            "model": resume_key}


def add_detections(example: example_pb2.Example, detections: Detections) -> None:
    """Set the ``image/detection/*`` features of ``example`` (replacing any already there):
    boxes, labels and scores, and masks / keypoints where ``detections`` has them.

    Every list is written, empty ones included (``SetInParent`` marks an empty list present).
    """
    features = example.features.feature
    for key in (*DETECTION_KEYS, DETECTION_MASK_KEY, *DETECTION_KEYPOINT_KEYS):
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
    if detections.masks is not None:
        features[DETECTION_MASK_KEY].bytes_list.SetInParent()
        features[DETECTION_MASK_KEY].bytes_list.value.extend(_png_masks(detections.masks))
    if detections.keypoints is not None:
        _add_keypoints(features, detections)


def _png_masks(masks: np.ndarray) -> list[bytes]:
    """``masks [D, H, W]`` uint8 0/1 -> one grayscale PNG per detection (values 0/1, as the
    OD API's ``image/object/mask`` PNGs)."""
    from torchvision.io import encode_png

    pixels = torch.from_numpy(np.ascontiguousarray(masks, np.uint8))  # [D, H, W]
    return [encode_png(mask[None]).numpy().tobytes() for mask in pixels]


def _add_keypoints(features: MessageMap[str, feature_pb2.Feature], detections: Detections,
                   ) -> None:
    """``image/detection/keypoint/{y,x,score}``: ``[D * K]`` flattened, y and x normalized."""
    assert detections.keypoints is not None
    height, width = detections.image_size or (0, 0)
    if not height or not width:
        raise DataError("detections with keypoints need image_size to normalize them")
    points = detections.keypoints.reshape(-1, 2)  # [D*K, 2] (x, y) pixels
    count = points.shape[0]
    scores = (np.ones(count) if detections.keypoint_scores is None
              else detections.keypoint_scores.reshape(-1))  # [D*K]
    y_key, x_key, score_key = DETECTION_KEYPOINT_KEYS
    for key, values in ((y_key, points[:, 1] / height), (x_key, points[:, 0] / width),
                        (score_key, scores)):
        features[key].float_list.SetInParent()
        features[key].float_list.value.extend(values.astype(np.float32).tolist())
