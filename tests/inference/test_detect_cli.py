"""``objdet detect``: JSON detections and a drawn PNG from a real export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_detector import png_bytes, sample_image

from objdet.cli.main import main
from objdet.inference.predictor import Predictor

IMAGE = sample_image()


def test_detect_prints_json_and_draws_the_boxes(
    exported_image_tensor: Path, predictor: Predictor, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image_path = tmp_path / "a.png"
    image_path.write_bytes(png_bytes(IMAGE))
    drawing = tmp_path / "drawn" / "a_boxes.png"
    # In-process main(): the real argument parsing and error handling, without paying a
    # second torch import (tests/export/test_export_cli.py covers `python -m objdet`).
    assert main(["detect", "--model", str(exported_image_tensor), "--image", str(image_path),
                 "--output", str(drawing), "--min_score", "0.5"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    expected = predictor.detect(IMAGE, min_score=0.5)
    assert result["num_detections"] == len(expected) > 0
    assert result["drawing"] == str(drawing)
    for found, score, name in zip(result["detections"], expected.scores, expected.class_names(predictor.label_map)):
        assert found["score"] == pytest.approx(float(score), abs=1e-5)
        assert found["class_name"] == name
        assert set(found) == {"box_normalized_yxyx", "box_xyxy", "score", "class", "class_name"}
    drawn = np.asarray(Image.open(drawing).convert("RGB"))
    assert drawn.shape == IMAGE.shape
    x1, y1, _, y2 = (round(v) for v in result["detections"][0]["box_xyxy"])
    changed = (drawn != IMAGE).any(axis=-1)
    assert changed.any() and changed.mean() < 0.9  # boxes drawn, image not painted over
    edge_x = min(max(x1, 0), IMAGE.shape[1] - 1)
    assert changed[max(y1, 0):min(y2, IMAGE.shape[0]), edge_x].any()  # the left edge


def test_detect_with_onnx_runtime_prints_the_same_detections(
    exported_image_tensor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    image_path = tmp_path / "a.png"
    image_path.write_bytes(png_bytes(IMAGE))
    results = {}
    for runtime in ("torch", "onnxruntime"):
        assert main(["detect", "--model", str(exported_image_tensor), "--image", str(image_path),
                     "--min_score", "0.3", "--runtime", runtime]) == 0
        [results[runtime]] = json.loads(capsys.readouterr().out)
    torch_result, onnx_result = results["torch"], results["onnxruntime"]
    assert onnx_result["num_detections"] == torch_result["num_detections"] > 0
    for found, expected in zip(onnx_result["detections"], torch_result["detections"]):
        assert found["class_name"] == expected["class_name"]
        assert found["score"] == pytest.approx(expected["score"], abs=1e-5)
        assert found["box_xyxy"] == pytest.approx(expected["box_xyxy"], abs=0.01)


def test_detect_errors_are_one_line(
    exported_image_tensor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    cases = [
        (["--model", str(exported_image_tensor), "--image", str(broken)], "JPEG data cut short"),
        (["--model", str(tmp_path / "none"), "--image", str(broken)], "directory does not exist"),
        (["--model", str(exported_image_tensor), "--image", "a.png", "--image", "b.png",
          "--output", str(tmp_path / "x.png")], "use --output_dir"),
    ]
    for flags, message in cases:
        assert main(["detect", *flags]) == 2
        error = capsys.readouterr().err
        assert error.startswith("objdet detect: error:") and message in error, error
