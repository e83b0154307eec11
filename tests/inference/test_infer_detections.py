"""Batch inference over TFRecords: detections written into each tf.Example."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import infer_inputs
import numpy as np
import pytest
from infer_inputs import filename
from tiny_detector import TinyTraining, example_bytes, sample_image

from objdet.cli.main import main
from objdet.data.example import DETECTION_KEYS, decode_example
from objdet.data.tfrecord import TFRecordWriter, read_records
from objdet.errors import DataError
from objdet.evaluation.offline import run_offline_evaluation, skip_reason
from objdet.inference.inputs import pixels_from_example
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no partial file or sidecar left
        "input-00000-of-00002", "input-00001-of-00002", "out.record"]


@pytest.mark.parametrize("discard_image_pixels", [False, True])
def test_cli_keeps_every_feature_and_adds_the_predictor_detections(
    exported_image_tensor: Path, predictor: Predictor, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], discard_image_pixels: bool,
) -> None:
    """The default runtime (ONNX Runtime, batches of 8 with size changes inside) against the
    torch Predictor, per image, within 1e-4; every input feature byte-identical."""
    inputs = infer_inputs.write_inputs(tmp_path, counts=(6, 5))
    output = tmp_path / "out.record"
    assert main(["infer-detections", "--input_tfrecord_paths", f"{tmp_path / 'input'}@2",
                 "--output_tfrecord_path", str(output), "--model", str(exported_image_tensor),
                 *(["--discard_image_pixels"] if discard_image_pixels else [])]) == 0
    summary = capsys.readouterr().out
    originals, outputs = infer_inputs.examples(inputs), infer_inputs.examples(output)
    assert len(outputs) == len(originals) == 11
    detections_total = 0
    for original, written in zip(originals, outputs):
        kept = infer_inputs.input_features(original)
        if discard_image_pixels:
            kept.pop("image/encoded")
        assert infer_inputs.input_features(written) == kept
        features = written.features.feature
        pixels = pixels_from_example(original)
        expected = predictor.predict_pixels(pixels)
        assert len(expected) > 0
        boxes = np.stack([features[key].float_list.value for key in DETECTION_KEYS[:4]], axis=1)
        np.testing.assert_allclose(boxes, expected.normalized_boxes(), atol=1e-4)
        np.testing.assert_allclose(features["image/detection/score"].float_list.value,
                                   expected.scores, atol=1e-4)
        assert list(features["image/detection/label"].int64_list.value) == expected.labels.tolist()
        detections_total += len(expected)
    assert summary.startswith(f"11 records, {detections_total} detections, ")


def test_batch_size_1_and_8_and_both_runtimes_write_the_same_records(
    exported_image_tensor: Path, tmp_path: Path
) -> None:
    """ONNX Runtime batches of 1 and of 8 (size changes inside) and the torch runtime (one
    image at a time): the same records, detections within 1e-5 (ONNX batch sizes) and 1e-4
    (torch vs ONNX)."""
    inputs = infer_inputs.write_inputs(tmp_path, counts=(24,))
    written = {}
    for runtime, batch_size in (("onnxruntime", 1), ("onnxruntime", 8), ("torch", 8)):
        output = tmp_path / f"{runtime}{batch_size}.record"
        assert main(["infer-detections", "--input_tfrecord_paths", str(inputs[0]),
                     "--output_tfrecord_path", str(output), "--model", str(exported_image_tensor),
                     "--runtime", runtime, "--batch_size", str(batch_size)]) == 0
        written[runtime, batch_size] = infer_inputs.examples(output)
    for other, tolerance in ((("onnxruntime", 8), 1e-5), (("torch", 8), 1e-4)):
        assert len(written[other]) == len(written["onnxruntime", 1]) == 24
        for one, eight in zip(written["onnxruntime", 1], written[other]):
            assert filename(one) == filename(eight)
            assert infer_inputs.input_features(one) == infer_inputs.input_features(eight)
            for key in DETECTION_KEYS:
                values = [np.asarray(example.features.feature[key].float_list.value
                                     or example.features.feature[key].int64_list.value)
                          for example in (one, eight)]
                assert values[0].shape == values[1].shape and values[0].size > 0
                np.testing.assert_allclose(values[0], values[1], atol=tolerance, err_msg=key)


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


def test_a_float_image_tensor_export_is_batched_like_one_image_at_a_time(
    exported: Callable[[str], Path], tmp_path: Path
) -> None:
    """An export of float_image_tensor takes float32 pixels: batches of 4 give the records of
    one image at a time (the batch path once handed it uint8 and failed)."""
    inputs = infer_inputs.write_inputs(tmp_path, counts=(6,))
    model = exported("float_image_tensor")
    written = {}
    for batch_size in (1, 4):
        output = tmp_path / f"float{batch_size}.record"
        assert main(["infer-detections", "--input_tfrecord_paths", str(inputs[0]),
                     "--output_tfrecord_path", str(output), "--model", str(model),
                     "--runtime", "onnxruntime", "--batch_size", str(batch_size)]) == 0
        written[batch_size] = infer_inputs.examples(output)
    assert len(written[1]) == len(written[4]) == 6
    for one, four in zip(written[1], written[4]):
        for key in DETECTION_KEYS:
            values = [np.asarray(example.features.feature[key].float_list.value
                                 or example.features.feature[key].int64_list.value)
                      for example in (one, four)]
            assert values[0].shape == values[1].shape and values[0].size > 0
            np.testing.assert_allclose(values[0], values[1], atol=1e-5, err_msg=key)
