"""Batch inference over TFRecords: detections written into each tf.Example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_detector import example_bytes, sample_image

from objdet.cli.main import main
from objdet.data.example import decode_example
from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.errors import DataError
from objdet.inference.predictor import Predictor
from objdet.inference.tfrecords import infer_detections

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
        np.testing.assert_array_equal(output.detection_labels.numpy(), expected.classes)
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
