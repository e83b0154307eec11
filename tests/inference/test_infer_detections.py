"""Batch inference over TFRecords: detections written into each tf.Example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_detector import TinyTraining, example_bytes, sample_image

from objdet.cli.main import main
from objdet.data.example import DETECTION_KEYS, decode_example
from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.errors import DataError
from objdet.evaluation.offline import run_offline_evaluation, skip_reason
from objdet.inference.predictor import Predictor
from objdet.inference.tfrecords import infer_detections
from objdet.protos import example_pb2

IMAGES = [sample_image(height=40 + 8 * i, width=64, seed=i) for i in range(3)]


def write_inputs(directory: Path) -> list[Path]:
    """Two input shards: images 0, 1 and image 2."""
    paths = [directory / "input-00000-of-00002", directory / "input-00001-of-00002"]
    for path, images in zip(paths, (IMAGES[:2], IMAGES[2:])):
        with TFRecordWriter(path) as writer:
            for image in images:
                writer.write(example_bytes(image, filename=f"{image.shape[0]}.png"))
    return paths


def test_records_get_the_predictor_detections_and_keep_ground_truth(
    predictor: Predictor, tmp_path: Path
) -> None:
    inputs = write_inputs(tmp_path)
    report = infer_detections(",".join(map(str, inputs)), tmp_path / "out.record", predictor)
    assert report.records == 3 and report.output_paths == [str(tmp_path / "out.record")]
    outputs = [decode_example(record) for record in read_records(tmp_path / "out.record")]
    originals = [decode_example(record) for record in read_records(inputs)]
    for image, output, original in zip(IMAGES, outputs, originals):
        expected = predictor.predict_pixels(output.image)
        assert len(expected) > 0
        np.testing.assert_allclose(output.detection_boxes.numpy(), expected.boxes, atol=1e-3)
        np.testing.assert_allclose(output.detection_scores.numpy(), expected.scores, atol=1e-6)
        np.testing.assert_array_equal(output.detection_labels.numpy(), expected.labels)
        assert np.array_equal(output.image.permute(1, 2, 0).numpy(), image)
        assert output.boxes.tolist() == original.boxes.tolist()  # ground truth kept
        assert output.label_texts == ["raccoon"] and output.filename == original.filename
    assert report.detections == sum(len(o.detection_scores) for o in outputs)


def test_cli_writes_shards_without_pixels(
    exported_image_tensor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_inputs(tmp_path)
    # In-process main(): the real flags and error handling without another torch import.
    assert main(["infer-detections", "--input_tfrecord_paths", str(tmp_path / "input@2"),
                 "--output_tfrecord_path", str(tmp_path / "detections.record@2"),
                 "--inference_graph", str(exported_image_tensor), "--discard_image_pixels"]) == 0
    assert capsys.readouterr().out.startswith("3 records, ")
    shards = sorted(tmp_path.glob("detections.record-*"))
    assert [p.name for p in shards] == [
        "detections.record-00000-of-00002", "detections.record-00001-of-00002"]
    records = list(read_records(shards))
    assert len(records) == 3
    samples = [decode_example(r, decode_image=False) for r in records]
    assert all(s.encoded_image is None and s.detection_scores is not None for s in samples)
    assert sorted(s.height for s in samples) == [40, 48, 56]
    assert len(list(read_records(inputs))) == 3  # inputs untouched


def test_undecodable_record_names_it_and_writes_nothing(predictor: Predictor, tmp_path: Path) -> None:
    path = tmp_path / "bad.record"
    with TFRecordWriter(path) as writer:
        writer.write(example_bytes(IMAGES[0]))
        writer.write(b"\x0a\x03junk")
    with pytest.raises(DataError, match=r"bad.record#1 .*not a serialized tf.Example"):
        infer_detections(path, tmp_path / "out.record", predictor)
    assert not (tmp_path / "out.record").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.record"]


def test_an_image_without_detections_gets_present_empty_lists(
    tiny_training: TinyTraining, tmp_path: Path
) -> None:
    """The tiny model with a score threshold no sigmoid score reaches finds nothing: the six
    image/detection/* lists are written present and empty, so offline evaluation counts the
    images' objects as missed (the OD API skips only records whose lists are absent)."""
    predictor = Predictor.from_checkpoint(
        tiny_training.config_path, tiny_training.checkpoint_dir,
        overrides=["model.ssd.post_processing.batch_non_max_suppression.score_threshold=1.0"],
    )
    inputs = write_inputs(tmp_path)
    report = infer_detections(",".join(map(str, inputs)), tmp_path / "out.record", predictor)
    assert (report.records, report.detections) == (3, 0)
    for record in read_records(tmp_path / "out.record"):
        features = example_pb2.Example.FromString(record).features.feature
        for key in DETECTION_KEYS:
            assert features[key].WhichOneof("kind") is not None, key  # present ...
        assert skip_reason(features) is None
        sample = decode_example(record, decode_image=False)
        assert sample.detection_scores is not None and len(sample.detection_scores) == 0  # ... empty
    eval_config, input_config = tmp_path / "eval.config", tmp_path / "input.config"
    eval_config.write_text('metrics_set: "pascal_voc_detection_metrics"\n')
    input_config.write_text(f'label_map_path: "{tiny_training.label_map_path}"\n'
                            f'tf_record_input_reader {{ input_path: "{tmp_path / "out.record"}" }}\n')
    result = run_offline_evaluation(tmp_path / "eval", eval_config, input_config)
    assert (result.num_images, result.num_skipped) == (3, 0)
    assert result.metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/raccoon"] == 0.0  # all missed
