"""Offline evaluation of detections stored in TFRecords (the OD API's offline_eval_map_corloc).

The records hold ground truth and ``image/detection/{bbox/*,score,label}`` (as batch
inference writes them). The eval config (an ``EvalConfig`` text proto) names the metrics
sets; the input config (an ``InputReader`` text proto) names the TFRecords and label map.
Results go to ``<eval_dir>/metrics.csv`` (``name,value`` rows, as the OD API writes it).

Differences from the OD API script: every metrics set in the eval config is evaluated (the
OD API used only the first); records without detection fields are skipped, counted and
reported, and a dataset where every record lacks them is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from objdet.errors import ConfigError, DataError
from objdet.evaluation.base import DetectionEvaluator, GroundTruth, ImageDetections
from objdet.evaluation.reports import write_metrics_csv

logger = logging.getLogger(__name__)


@dataclass
class OfflineResult:
    """Metrics of an offline evaluation and what was read to get them."""

    metrics: dict[str, float] = field(default_factory=dict)
    num_images: int = 0
    num_skipped: int = 0
    skipped_sources: list[str] = field(default_factory=list)


def read_text_message(path: str | os.PathLike[str], message: Any) -> Any:
    """Parse a text-format proto file into ``message``; errors name ``path:line:col``."""
    from objdet.config.text_errors import config_error_from_parse_error

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config: {error}") from None
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as error:
        raise config_error_from_parse_error(error, text, str(path), message.DESCRIPTOR) from None
    return message


def evaluate_records(
    input_paths: str | Sequence[str],
    evaluators: Sequence[DetectionEvaluator],
    label_map: Any = None,
) -> OfflineResult:
    """Feed every record's ground truth and stored detections to ``evaluators``.

    Args:
        input_paths: TFRecord paths/globs/``@N`` specs (``expand_input_paths`` spellings).
        evaluators: built evaluators; their metrics are merged into one dict.
        label_map: a ``LabelMap`` to map ``class/text`` to ids (optional).

    The image id is ``image/source_id`` (the OD API's key), else the record's position.
    """
    from objdet.data.example import ExampleDecoder
    from objdet.data.tfrecord import read_records_with_source

    needs_masks = any(getattr(e, "evaluate_masks", False) for e in evaluators)
    decoder = ExampleDecoder(
        label_map, decode_image=False, with_masks=needs_masks, with_keypoints=False
    )
    result = OfflineResult()
    for source, record in read_records_with_source(input_paths):
        sample = decoder(record, source)
        if sample.detection_boxes is None:
            result.num_skipped += 1
            if len(result.skipped_sources) < 10:
                result.skipped_sources.append(source)
            continue
        image_id = sample.source_id or source
        ground_truth = GroundTruth.from_sample(sample)
        detections = ImageDetections.from_sample(sample)
        for evaluator in evaluators:
            evaluator.add_ground_truth(image_id, ground_truth)
            evaluator.add_detections(image_id, detections)
        result.num_images += 1
    if result.num_skipped:
        logger.warning(
            "skipped %d records without image/detection/* fields (first: %s)",
            result.num_skipped,
            ", ".join(result.skipped_sources),
        )
    if result.num_images == 0:
        raise DataError(
            f"{input_paths}: no record holds detections (image/detection/bbox/*, score, label); "
            f"{result.num_skipped} records were read. Run batch inference first."
        )
    for evaluator in evaluators:
        result.metrics.update(evaluator.evaluate())
    return result


def run_offline_evaluation(
    eval_dir: str | os.PathLike[str],
    eval_config_path: str | os.PathLike[str],
    input_config_path: str | os.PathLike[str],
) -> OfflineResult:
    """The ``objdet eval-offline`` command: evaluate, then write ``eval_dir/metrics.csv``."""
    from objdet.evaluation.registry import build_evaluators_from_eval_config
    from objdet.protos import eval_pb2, input_reader_pb2
    from objdet.structures.label_map import load_label_map

    eval_config = read_text_message(eval_config_path, eval_pb2.EvalConfig())
    input_config = read_text_message(input_config_path, input_reader_pb2.InputReader())
    if input_config.WhichOneof("input_reader") != "tf_record_input_reader":
        raise ConfigError(
            f"{input_config_path}: expected tf_record_input_reader, found "
            f"{input_config.WhichOneof('input_reader')}"
        )
    if not input_config.label_map_path:
        raise ConfigError(f"{input_config_path}: label_map_path is required for evaluation")
    label_map = load_label_map(input_config.label_map_path)
    evaluators = build_evaluators_from_eval_config(eval_config, label_map.categories())
    result = evaluate_records(
        list(input_config.tf_record_input_reader.input_path), evaluators, label_map
    )
    write_metrics_csv(Path(eval_dir) / "metrics.csv", result.metrics)
    return result
