"""Offline evaluation of detections stored in TFRecords (the OD API's offline_eval_map_corloc).

The records hold ground truth and ``image/detection/{bbox/*,score,label}`` (as batch
inference writes them). The eval config (an ``EvalConfig`` text proto) names the metrics
sets; the input config (an ``InputReader`` text proto) names the TFRecords and label map.
Results go to ``<eval_dir>/metrics.csv`` (``name,value`` rows, as the OD API writes it).

Which records are evaluated is the OD API's rule (its ``TfExampleDetectionAndGTParser``),
exactly: a record is evaluated when every key of ``REQUIRED_KEYS`` holds a list of its
kind. An EMPTY list counts as present: an image without objects, or an image where the
model found nothing (its objects then count as missed). A record where any of them is
absent, or of another kind, is skipped; skips are counted by reason and reported. As in
that parser, ground-truth classes are ``image/object/class/label`` (``class/text`` is not
read) and the image id is ``image/source_id``.

Deliberate differences from the OD API script:

* every metrics set of the eval config is evaluated (it used only the first), with the
  eval config's evaluator options (recall bounds, per-category metrics; it passed none);
* a repeated ``image/source_id`` is an error naming both records (it kept the first);
* boxes are evaluated in pixels of ``image/height`` x ``image/width`` (it fed normalized
  boxes: the same PASCAL VOC / Open Images metrics, but its COCO area ranges then see every
  box as small); masks are read when a metrics set evaluates them (its parser read none):
  ground truth ``image/object/mask``, detections ``image/detection/mask`` (one PNG per
  detection, as ``objdet infer-detections`` writes them for a Mask R-CNN export).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from objdet.errors import ConfigError, DataError
from objdet.evaluation.base import DetectionEvaluator, GroundTruth
from objdet.evaluation.reports import write_metrics_csv
from objdet.protos import example_pb2, feature_pb2
from objdet.structures.detections import Detections

logger = logging.getLogger(__name__)

_BOX_COORDINATES = ("ymin", "xmin", "ymax", "xmax")
DETECTION_MASK_KEY = "image/detection/mask"  # objdet.inference.tfrecords writes it
_GROUND_TRUTH_KEYS = {
    **{f"image/object/bbox/{name}": "float_list" for name in _BOX_COORDINATES},
    "image/object/class/label": "int64_list",
}
_DETECTION_KEYS = {
    **{f"image/detection/bbox/{name}": "float_list" for name in _BOX_COORDINATES},
    "image/detection/label": "int64_list",
    "image/detection/score": "float_list",
}
# Key -> the list kind it must hold for the record to be evaluated (the OD API's HasField).
REQUIRED_KEYS: dict[str, str] = {
    "image/source_id": "bytes_list",
    **_GROUND_TRUTH_KEYS,
    **_DETECTION_KEYS,
}


@dataclass
class OfflineResult:
    """Metrics of an offline evaluation and what was read to get them.

    ``skipped`` counts skipped records by reason (``skip_reason``); ``skipped_sources``
    names the first three of them.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    num_images: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_sources: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip_summary(self) -> str:
        """``'3 without image/detection/* lists, 1 with image/source_id absent'``."""
        return ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())


def skip_reason(features: Mapping[str, feature_pb2.Feature]) -> str | None:
    """Why the OD API's offline evaluation skips a record with these features (None: it
    does not): the ``REQUIRED_KEYS`` that are absent or hold another kind of list."""
    absent, wrong_kind = [], []
    for key, kind in REQUIRED_KEYS.items():
        found = features[key].WhichOneof("kind") if key in features else None
        if found is None:
            absent.append(key)
        elif found != kind:
            wrong_kind.append(f"{key} stored as {found} (expected {kind})")
    reasons = []
    groups = {"image/detection/*": _DETECTION_KEYS,
              "image/object/bbox/* and class/label": _GROUND_TRUTH_KEYS}
    for name, keys in groups.items():
        if all(key in absent for key in keys):  # the whole group: say it once
            reasons.append(f"without {name} lists")
            absent = [key for key in absent if key not in keys]
    reasons += [f"with {key} absent" for key in absent]
    reasons += [f"with {problem}" for problem in wrong_kind]
    return "; ".join(reasons) or None


def evaluate_records(
    input_paths: str | Sequence[str], evaluators: Sequence[DetectionEvaluator]
) -> OfflineResult:
    """Feed the ground truth and stored detections of every evaluated record to ``evaluators``.

    Args:
        input_paths: TFRecord paths/globs/``@N`` specs (``expand_input_paths`` spellings).
        evaluators: built evaluators; their metrics are merged into one dict.

    Records are evaluated or skipped by the OD API's rule (see the module docstring).
    Raises ``DataError`` when no record is evaluated or two share an image/source_id.
    """
    from objdet.data.example import ExampleDecoder
    from objdet.data.tfrecord import read_records_with_source
    from objdet.evaluation.open_images import OpenImagesChallengeEvaluator

    # No label map: class ids come from class/label only, as in the OD API's parser.
    with_masks = any(_evaluates_masks(evaluator) for evaluator in evaluators)
    decoder = ExampleDecoder(
        None,
        decode_image=False,
        with_masks=with_masks,
        with_keypoints=False,
        with_image_labels=any(isinstance(e, OpenImagesChallengeEvaluator) for e in evaluators),
    )
    result = OfflineResult()
    first_source: dict[str, str] = {}  # image id -> the record that had it
    for source, record in read_records_with_source(input_paths):
        features = _parse_example(record, source).features.feature
        reason = skip_reason(features)
        if reason is not None:
            result.skipped[reason] += 1
            if len(result.skipped_sources) < 3:
                result.skipped_sources.append(source)
            continue
        sample = decoder(record, source)
        image_id = sample.source_id
        if image_id in first_source:
            raise DataError(
                f"{source}: image/source_id {image_id!r} is also that of {first_source[image_id]}; "
                "offline evaluation needs a unique id per image"
            )
        first_source[image_id] = source
        ground_truth = GroundTruth.from_sample(sample)
        detections = Detections.from_sample(sample)
        if with_masks:
            detections = replace(detections, masks=_detection_masks(
                features, len(detections), (sample.height, sample.width), source))
        for evaluator in evaluators:
            evaluator.add_ground_truth(image_id, ground_truth)
            evaluator.add_detections(image_id, detections)
        result.num_images += 1
    if result.num_skipped:
        logger.warning(
            "skipped %d records, as the OD API does: %s (first: %s)",
            result.num_skipped, result.skip_summary(), ", ".join(result.skipped_sources),
        )
    if result.num_images == 0:
        where = input_paths if isinstance(input_paths, str) else ", ".join(map(str, input_paths))
        raise DataError(
            f"{where}: no record to evaluate: each needs image/source_id, "
            f"image/object/bbox/* and class/label, image/detection/bbox/*, label and score "
            f"(empty lists allowed); {result.num_skipped} records were read and skipped"
            + (f" ({result.skip_summary()}). Run batch inference first?" if result.num_skipped else "")
        )
    for evaluator in evaluators:
        result.metrics.update(evaluator.evaluate())
    return result


def _evaluates_masks(evaluator: DetectionEvaluator) -> bool:
    """Whether ``evaluator`` needs masks (COCO mask metrics, Open Images segmentation)."""
    from objdet.evaluation.coco import CocoMaskEvaluator

    return isinstance(evaluator, CocoMaskEvaluator) or bool(
        getattr(evaluator, "evaluate_masks", False))


def _detection_masks(features: Mapping[str, feature_pb2.Feature], count: int,
                     image_size: tuple[int, int], source: str) -> np.ndarray:
    """``uint8 [count, H, W]`` 0/1 masks from ``image/detection/mask`` (one PNG per detection);
    ``DataError`` naming the record when they are absent or do not fit the detections."""
    from objdet.data.image_decode import decode_image_bytes

    key = DETECTION_MASK_KEY
    if key not in features or features[key].WhichOneof("kind") != "bytes_list":
        raise DataError(f"{source}: {key} (PNG bytes_list) is absent: mask metrics need the "
                        "detections' masks (infer-detections writes them for a Mask R-CNN)")
    pngs = list(features[key].bytes_list.value)
    if len(pngs) != count:
        raise DataError(f"{source}: {key} has {len(pngs)} masks for {count} detections")
    masks = np.zeros((count, *image_size), np.uint8)  # [D, H, W]
    for index, png in enumerate(pngs):
        mask = decode_image_bytes(png, f"{source}: {key}[{index}]", gray=True)[0]  # [H, W]
        if tuple(mask.shape) != image_size:
            raise DataError(f"{source}: {key}[{index}] is {mask.shape[0]}x{mask.shape[1]}, the "
                            f"image is {image_size[0]}x{image_size[1]}")
        masks[index] = (mask > 0).numpy()
    return masks


def _parse_example(record: bytes, source: str) -> example_pb2.Example:
    example = example_pb2.Example()
    try:
        example.ParseFromString(record)
    except DecodeError as error:
        raise DataError(f"{source}: not a serialized tf.Example ({error})") from None
    return example


def run_offline_evaluation(
    eval_dir: str | os.PathLike[str],
    eval_config_path: str | os.PathLike[str],
    input_config_path: str | os.PathLike[str],
) -> OfflineResult:
    """The ``objdet eval-offline`` command: evaluate, then write ``eval_dir/metrics.csv``.

    Of the InputReader, ``tf_record_input_reader.input_path`` and ``label_map_path`` are
    read (categories by display name, as the OD API's); it passes the checks every reader
    of TFRecords makes (``data.dataset.check_input_reader``), and
    ``sample_1_of_n_examples`` > 1 is an error: every record is evaluated, as in the OD API.
    """
    from objdet.config.files import read_text_message
    from objdet.data.dataset import check_input_reader
    from objdet.evaluation.registry import build_evaluators_from_eval_config
    from objdet.protos import eval_pb2, input_reader_pb2
    from objdet.structures.label_map import load_label_map

    eval_config = read_text_message(eval_config_path, eval_pb2.EvalConfig(), "eval config")
    input_config = read_text_message(
        input_config_path, input_reader_pb2.InputReader(), "input config"
    )
    try:
        check_input_reader(input_config)
    except ConfigError as error:
        raise ConfigError(f"{input_config_path}: {error}") from None
    if input_config.sample_1_of_n_examples > 1:
        raise ConfigError(
            f"{input_config_path}: sample_1_of_n_examples is {input_config.sample_1_of_n_examples}; "
            "offline evaluation reads every record (as the OD API's does): remove it"
        )
    if not input_config.label_map_path:
        raise ConfigError(f"{input_config_path}: label_map_path is required for evaluation")
    label_map = load_label_map(input_config.label_map_path)
    evaluators = build_evaluators_from_eval_config(eval_config, label_map.categories())
    result = evaluate_records(list(input_config.tf_record_input_reader.input_path), evaluators)
    write_metrics_csv(Path(eval_dir) / "metrics.csv", result.metrics)
    return result
