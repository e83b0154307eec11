"""``objdet eval-offline`` over real TFRecords holding ground truth and detections.

Parity: tests/fixtures/odapi_offline_eval holds random records and the metrics the OD API's
own offline evaluation computed on them (make_fixtures.py, run with the reference
environment); objdet must reproduce them, skipped records included, tied scores (the
ties_* cases: scores rounded to 0.1 and 0.01, up to 59 detections per image, unsorted) and
detections of class ids the label map does not name (the unknown_ids case: dropped, as the
OD API drops them, and warned about). Where ties decide a metric, the value depends on the
CPU's numpy sort: tests/tie_order.py picks the values recorded on this kind of machine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from metric_asserts import assert_same_metrics
from PIL import Image
from tie_order import fixture_file

from objdet.data.example import DETECTION_KEYS, decode_example, encode_sample
from objdet.data.tfrecord import TFRecordWriter
from objdet.errors import ConfigError, DataError
from objdet.evaluation.base import GroundTruth
from objdet.evaluation.offline import run_offline_evaluation
from objdet.evaluation.registry import build_evaluators
from objdet.evaluation.reports import read_metrics_csv
from objdet.protos import example_pb2
from objdet.structures.detections import Detections
from objdet.structures.sample import Sample

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi_offline_eval"
ODAPI_EXPECTED = json.loads(fixture_file(FIXTURES, "expected.json").read_text())
LABEL_MAP = 'item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" }\n'
# Every metrics set the OD API's offline path can evaluate (its parser reads no masks or
# keypoints); coco only on 1x1 images, where its normalized boxes equal objdet's pixels.
BOX_METRICS_SETS = (
    "pascal_voc_detection_metrics",
    "weighted_pascal_voc_detection_metrics",
    "precision_at_recall_detection_metrics",
    "oid_V2_detection_metrics",
    "oid_challenge_detection_metrics",
)


def write_configs(
    directory: Path, records: Path, metrics_set: str, label_map: Path | None = None
) -> tuple[Path, Path]:
    """An EvalConfig and an InputReader text proto, as the OD API's script takes them."""
    if label_map is None:
        label_map = directory / "label_map.pbtxt"
        label_map.write_text(LABEL_MAP)
    eval_config = directory / "eval.config"
    eval_config.write_text(f'metrics_set: "{metrics_set}"\n')
    input_config = directory / "input.config"
    input_config.write_text(
        f'label_map_path: "{label_map}"\n'
        f'tf_record_input_reader {{ input_path: "{records}" }}\n'
    )
    return eval_config, input_config


# -- parity with the OD API ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "metrics_set"),
    [(case, metrics_set) for case, data in ODAPI_EXPECTED.items() for metrics_set in data["metrics"]],
)
def test_equals_the_odapi_offline_evaluation(case: str, metrics_set: str, tmp_path: Path) -> None:
    """Random records with empty and absent lists of every kind: the OD API's numbers."""
    expected = ODAPI_EXPECTED[case]
    eval_config, input_config = write_configs(
        tmp_path, FIXTURES / f"{case}.record", metrics_set, FIXTURES / "label_map.pbtxt"
    )
    result = run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    assert (result.num_images, result.num_skipped) == (
        expected["num_evaluated"], expected["num_skipped"])
    assert_same_metrics(result.metrics, expected["metrics"][metrics_set])


def test_fixture_cases_cover_every_record_kind() -> None:
    """The committed cases hold what the rule is about (a guard on make_fixtures.py)."""
    from objdet.data.example import ExampleDecoder
    from objdet.data.tfrecord import read_records_with_source
    from objdet.evaluation.offline import skip_reason

    decode = ExampleDecoder(decode_image=False)
    for case in ODAPI_EXPECTED:
        reasons, empty_detections, empty_objects = set(), 0, 0
        for source, record in read_records_with_source(FIXTURES / f"{case}.record"):
            example = example_pb2.Example.FromString(record)
            reason = skip_reason(example.features.feature)
            if reason is not None:
                reasons.add(reason)
                continue
            sample = decode(record, source)
            empty_detections += len(sample.detection_scores) == 0  # type: ignore[arg-type]
            empty_objects += len(sample.labels) == 0
        assert empty_detections >= 2 and empty_objects >= 2, case
        assert any("without image/detection/*" in r for r in reasons), case
        assert any("without image/object/bbox/*" in r for r in reasons), case
        assert any("image/source_id absent" in r for r in reasons), case
        assert any("stored as int64_list" in r for r in reasons), case
        assert len(reasons) == ODAPI_EXPECTED[case]["num_skipped"], case


def test_tie_cases_hold_tied_unsorted_scores() -> None:
    """The ties_* cases tie scores within one image and class, in records not sorted by
    score, with more than 16 per image and class somewhere (numpy's small-array sort
    differs from its large-array one). A guard on make_fixtures.py."""
    from objdet.data.example import ExampleDecoder
    from objdet.data.tfrecord import read_records_with_source
    from objdet.evaluation.offline import skip_reason

    decode = ExampleDecoder(decode_image=False)
    for case in ("ties_tenths", "ties_hundredths"):
        tied = unsorted = largest = 0
        for source, record in read_records_with_source(FIXTURES / f"{case}.record"):
            if skip_reason(example_pb2.Example.FromString(record).features.feature):
                continue
            sample = decode(record, source)
            scores = sample.detection_scores.numpy()
            labels = sample.detection_labels.numpy()  # type: ignore[union-attr]
            unsorted += bool(np.any(np.diff(scores) > 0))
            for label in np.unique(labels):
                class_scores = scores[labels == label]
                tied += len(np.unique(class_scores)) < len(class_scores)
                largest = max(largest, len(class_scores))
        assert tied >= 10 and unsorted >= 5 and largest > 16, (case, tied, unsorted, largest)


def test_unknown_ids_case_drops_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The unknown_ids case gives many evaluated records detections of ids 4 (a gap in the
    label map), 6 and 9 (above its largest id), some with top scores (a guard on
    make_fixtures.py); every evaluator drops them, equal to the OD API (the parity test
    above), and says how many in one warning."""
    from objdet.data.example import ExampleDecoder
    from objdet.data.tfrecord import read_records_with_source
    from objdet.evaluation.offline import skip_reason

    decode = ExampleDecoder(decode_image=False)
    unknown, images, top_score = 0, 0, 0.0
    for source, record in read_records_with_source(FIXTURES / "unknown_ids.record"):
        if skip_reason(example_pb2.Example.FromString(record).features.feature):
            continue
        sample = decode(record, source)
        labels = sample.detection_labels.numpy()  # type: ignore[union-attr]
        is_unknown = np.isin(labels, [4, 6, 9])
        unknown += int(is_unknown.sum())
        images += bool(is_unknown.any())
        top_score = max(top_score, float(sample.detection_scores.numpy()[is_unknown].max(initial=0)))
    assert unknown >= 30 and images >= 10 and top_score > 0.9, (unknown, images, top_score)
    for metrics_set in ("pascal_voc_detection_metrics", "coco_detection_metrics"):
        eval_config, input_config = write_configs(
            tmp_path, FIXTURES / "unknown_ids.record", metrics_set, FIXTURES / "label_map.pbtxt")
        caplog.clear()
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
        dropped = [r.getMessage() for r in caplog.records if "not among the" in r.getMessage()]
        assert len(dropped) == 1 and f"dropped {unknown} detections of class ids [4, 6, 9]" in dropped[0]


# -- the rule, on records written here ---------------------------------------------------


def png_bytes(width: int = 100, height: int = 50) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample(source_id: str, boxes: list[list[float]], labels: list[int],
           detections: tuple[list[list[float]], list[float], list[int]] | None) -> Sample:
    """A 100x50 image with ground truth and, unless None, stored detections (maybe empty)."""
    item = Sample(
        height=50, width=100, encoded_image=png_bytes(), image_format="png",
        source_id=source_id, boxes=torch.tensor(boxes).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
    )
    if detections is not None:
        item.detection_boxes = torch.tensor(detections[0]).reshape(-1, 4)
        item.detection_scores = torch.tensor(detections[1])
        item.detection_labels = torch.tensor(detections[2], dtype=torch.int64)
    return item


NO_DETECTIONS: tuple[list[list[float]], list[float], list[int]] = ([], [], [])


def write_dataset(tmp_path: Path, metrics_set: str = "pascal_voc_detection_metrics") -> tuple[Path, Path]:
    """a: a cat found; b: a cat and a dog, the model found nothing (empty lists);
    c: no detection fields at all (skipped, as the OD API skips it)."""
    cat, dog = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]
    with TFRecordWriter(tmp_path / "eval.record") as writer:
        writer.write(encode_sample(sample("a", [cat], [1], ([cat], [0.9], [1]))))
        writer.write(encode_sample(sample("b", [cat, dog], [1, 2], NO_DETECTIONS)))
        writer.write(encode_sample(sample("c", [dog], [2], None)))
    return write_configs(tmp_path, tmp_path / "eval.record", metrics_set)


def test_empty_detection_lists_count_the_objects_as_missed(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path)
    result = run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    assert (result.num_images, result.num_skipped) == (2, 1)
    assert dict(result.skipped) == {"without image/detection/* lists": 1}
    metrics = read_metrics_csv(tmp_path / "eval" / "metrics.csv")
    # cat: one TP (a) of two cats (a, b): precision 1 at recall 1/2 -> AP 0.5 (1.0 if b
    # were skipped). dog: b's dog missed, no detection -> AP 0; c is skipped whole.
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/cat"] == pytest.approx(0.5)
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == pytest.approx(0.0)
    assert metrics["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.25)


def without_keys(record: bytes, *keys: str) -> bytes:
    example = example_pb2.Example.FromString(record)
    for key in keys:
        assert key in example.features.feature, key
        del example.features.feature[key]
    return example.SerializeToString()


def test_stored_detections_decode_as_all_six_lists_or_none() -> None:
    """Present and empty: zero detections; all absent: none stored; some absent: an error
    naming them (offline evaluation skips such a record before decoding, as the OD API)."""
    record = encode_sample(sample("a", [[0, 0, 5, 5]], [1], NO_DETECTIONS))
    empty = decode_example(record, decode_image=False)
    assert empty.detection_boxes is not None and empty.detection_boxes.shape == (0, 4)
    assert empty.detection_scores is not None and len(empty.detection_scores) == 0
    assert empty.detection_labels is not None and len(empty.detection_labels) == 0
    assert decode_example(without_keys(record, *DETECTION_KEYS), decode_image=False).detection_boxes is None
    with pytest.raises(DataError, match=r"record 7: has image/detection/bbox/ymin, .*"
                                        r"but not image/detection/label; stored detections need"):
        decode_example(without_keys(record, "image/detection/label"), decode_image=False,
                       source="record 7")


def random_case(
    rng: np.random.Generator, directory: Path, num_images: int = 30
) -> tuple[Path, list[tuple[str, GroundTruth, Detections]]]:
    """Random records, and the images the OD API's rule evaluates, built from the same
    arrays without going through a record (pixel boxes on a grid that normalizes exactly)."""
    height, width = 64, 128
    evaluated = []
    path = directory / "random.record"
    with TFRecordWriter(path) as writer:
        for index in range(num_images):
            kind = rng.choice(["full", "full", "full", "no_detections", "no_objects",
                               "absent_detections", "partial_detections", "absent_objects"])
            num_objects = 0 if kind == "no_objects" else int(rng.integers(1, 5))
            num_detections = 0 if kind == "no_detections" else int(rng.integers(1, 8))
            boxes = random_grid_boxes(rng, num_objects, height, width)
            labels = rng.integers(1, 3, size=num_objects)
            # Detections: half near an object, half anywhere; unique scores (no ties).
            detection_boxes = random_grid_boxes(rng, num_detections, height, width)
            near = rng.random(num_detections) < 0.5
            if num_objects:
                detection_boxes[near] = boxes[rng.integers(num_objects, size=int(near.sum()))]
            detection_boxes[near] += rng.integers(-2, 3, size=(int(near.sum()), 4)).clip(0)
            detection_boxes[:, 2:] = np.maximum(detection_boxes[:, 2:], detection_boxes[:, :2])
            detection_boxes = detection_boxes.clip(0, [width, height, width, height])
            scores = rng.permutation(1000)[:num_detections] / 1000.0
            detection_labels = rng.integers(1, 3, size=num_detections)
            image_labels = rng.choice([1, 2], size=int(rng.integers(0, 3)), replace=False)
            item = Sample(
                height=height, width=width, encoded_image=b"\x89PNG", image_format="png",
                source_id=f"image-{index}", boxes=torch.tensor(boxes, dtype=torch.float32),
                labels=torch.tensor(labels), difficult=torch.tensor(rng.random(num_objects) < 0.2),
                group_of=torch.tensor(rng.random(num_objects) < 0.2),
                image_labels=torch.tensor(image_labels),
                detection_boxes=torch.tensor(detection_boxes, dtype=torch.float32),
                detection_scores=torch.tensor(scores, dtype=torch.float32),
                detection_labels=torch.tensor(detection_labels),
            )
            record = encode_sample(item)
            if kind == "absent_detections":
                record = without_keys(record, "image/detection/score", "image/detection/label",
                                      *(f"image/detection/bbox/{c}" for c in ("ymin", "xmin", "ymax", "xmax")))
            elif kind == "partial_detections":
                record = without_keys(record, "image/detection/score")
            elif kind == "absent_objects":
                record = without_keys(record, "image/object/class/label",
                                      *(f"image/object/bbox/{c}" for c in ("ymin", "xmin", "ymax", "xmax")))
            writer.write(record)
            if kind in ("absent_detections", "partial_detections", "absent_objects"):
                continue
            ground_truth = GroundTruth(
                boxes=boxes, labels=labels, difficult=item.difficult, group_of=item.group_of,
                image_labels=image_labels)
            evaluated.append((item.source_id, ground_truth,
                              Detections(boxes=detection_boxes, scores=scores, labels=detection_labels)))
    return path, evaluated


def random_grid_boxes(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """``[count, 4]`` (x1, y1, x2, y2) on the integer grid, inside the image."""
    corner = rng.integers(0, [width - 8, height - 8], size=(count, 2))
    size = rng.integers(4, 40, size=(count, 2))
    far = np.minimum(corner + size, [width, height])
    return np.concatenate([corner, far], axis=1).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_records_equal_the_in_memory_evaluators(seed: int, tmp_path: Path) -> None:
    """eval-offline == the registry's evaluators fed the evaluated images directly."""
    records, evaluated = random_case(np.random.default_rng(seed), tmp_path)
    assert any(len(d) == 0 for _, _, d in evaluated) and any(g.num_objects == 0 for _, g, _ in evaluated)
    for metrics_set in (*BOX_METRICS_SETS, "coco_detection_metrics"):
        eval_config, input_config = write_configs(tmp_path, records, metrics_set)
        result = run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
        [evaluator] = build_evaluators([metrics_set], [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
        for image_id, ground_truth, detections in evaluated:
            evaluator.add_ground_truth(image_id, ground_truth)
            evaluator.add_detections(image_id, detections)
        assert result.num_images == len(evaluated)
        assert_same_metrics(result.metrics, evaluator.evaluate())


# -- errors ----------------------------------------------------------------------------------


def test_offline_evaluation_errors(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path, "no_such_metrics")
    with pytest.raises(ConfigError, match="unknown metrics set 'no_such_metrics'"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    eval_config.write_text("metrics_set: pascal\n")
    with pytest.raises(ConfigError, match=r"eval.config:1"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    eval_config.write_text('metrics_set: "pascal_voc_detection_metrics"\n')
    with TFRecordWriter(tmp_path / "eval.record") as writer:
        writer.write(encode_sample(sample("only", [[0, 0, 5, 5]], [1], None)))
    with pytest.raises(DataError, match=r"eval.record: no record to evaluate: .*1 without image/detection/\* lists"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)


def test_repeated_source_id_names_both_records(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path)
    with TFRecordWriter(tmp_path / "eval.record") as writer:
        for _ in range(2):
            writer.write(encode_sample(sample("same", [[0, 0, 5, 5]], [1], NO_DETECTIONS)))
    with pytest.raises(DataError, match=r"eval.record#1 .*'same' is also that of .*eval.record#0"):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("num_additional_channels: 2", r"input.config: .*num_additional_channels: 2 is not supported"),
        ("sample_1_of_n_examples: 3", r"input.config: sample_1_of_n_examples is 3; .*reads every record"),
    ],
)
def test_input_config_gets_the_readers_checks(line: str, message: str, tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path)
    input_config.write_text(input_config.read_text() + line + "\n")
    with pytest.raises(ConfigError, match=message):
        run_offline_evaluation(tmp_path / "eval", eval_config, input_config)


def test_eval_offline_command(tmp_path: Path) -> None:
    eval_config, input_config = write_dataset(tmp_path)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "objdet",
            "eval-offline",
            f"--eval_dir={tmp_path / 'out'}",
            f"--eval_config_path={eval_config}",
            f"--input_config_path={input_config}",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "PascalBoxes_Precision/mAP@0.5IOU: 0.2500" in completed.stdout
    assert "evaluated 2 images, skipped 1 records (1 without image/detection/* lists)" in completed.stdout
    assert read_metrics_csv(tmp_path / "out" / "metrics.csv")[
        "PascalBoxes_Precision/mAP@0.5IOU"
    ] == pytest.approx(0.25)


def test_eval_offline_command_reports_bad_paths_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from objdet.cli.main import main

    _, input_config = write_dataset(tmp_path)
    code = main(
        [
            "eval-offline",
            f"--eval_dir={tmp_path}",
            f"--eval_config_path={tmp_path / 'absent.config'}",
            f"--input_config_path={input_config}",
        ]
    )
    assert code == 2
    assert "absent.config: eval config not found" in capsys.readouterr().err
