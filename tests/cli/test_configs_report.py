"""``objdet configs-report``, run as a user would, on configs written here.

Four configs under one folder (one in a subfolder): a tiny SSD that trains, one whose model
has an unsupported field, one whose train_config has one, and one that does not parse.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ssd_configs import ssd_config_text

from objdet.cli.main import main
from objdet.models.coverage import IMAGE_SIZE, NUM_IMAGES, random_batch

TRAIN_CONFIG = """train_config {
  batch_size: 2
  optimizer { momentum_optimizer {
    learning_rate { constant_learning_rate { learning_rate: 0.01 } }
    momentum_optimizer_value: 0.9 }
    use_moving_average: false }
  fine_tune_checkpoint: "/no/such/checkpoint"
  data_augmentation_options { random_horizontal_flip {} }
}
train_input_reader { label_map_path: "/no/such/label_map.pbtxt"
  tf_record_input_reader { input_path: "/no/such/train.record" } }
"""
UNSUPPORTED_EXTRACTOR = "ssd_no_such_extractor"


def _pipeline(model_text: str, train_text: str = TRAIN_CONFIG) -> str:
    return f"model {{ {model_text} }}\n{train_text}"


@pytest.fixture(scope="module")
def config_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    (folder / "nested").mkdir()
    (folder / "a_good.config").write_text(_pipeline(ssd_config_text()))
    (folder / "b_unsupported_model.config").write_text(
        _pipeline(ssd_config_text(extractor=UNSUPPORTED_EXTRACTOR)))
    (folder / "nested" / "c_unsupported_train.config").write_text(
        _pipeline(ssd_config_text(), TRAIN_CONFIG.replace("batch_size: 2", "batch_size: 2 use_multiclass_scores: true")))
    (folder / "d_broken.config").write_text("model { ssd { num_classes: 2 ")
    (folder / "not_a_config.txt").write_text("ignored: the name does not end in .config")
    return folder


def _objdet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "objdet", "configs-report", *args],
                          check=False, capture_output=True, text=True, timeout=120)


def test_lines_and_totals(config_folder: Path, tmp_path: Path) -> None:
    result = _objdet(str(config_folder), "--json_output", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr  # a report: failures do not fail it
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert [line.split(":")[0] for line in lines[:4]] == [
        str(config_folder / name) for name in
        ("a_good.config", "b_unsupported_model.config", "d_broken.config",
         "nested/c_unsupported_train.config")
    ]  # sorted by path, recursively
    assert "parse ✓ build ✓ train step ✓" in lines[0] and "error" not in lines[0]
    assert "parse ✓ build ✗ train step ✗" in lines[1]
    assert f"model.ssd.feature_extractor.type: '{UNSUPPORTED_EXTRACTOR}' is not supported" in lines[1]
    assert "parse ✗ build ✗ train step ✗" in lines[2] and "error: " in lines[2]
    assert "parse ✓ build ✓ train step ✗" in lines[3]
    assert "error: train_config.use_multiclass_scores: true is not supported" in lines[3]
    assert lines[4] == "4 configs: 3 parse, 2 build, 1 train step"
    saved = json.loads((tmp_path / "report.json").read_text())  # the same run, as JSON
    assert [(r["parse"], r["build"], r["train_step"]) for r in saved] == [
        (True, True, True), (True, False, False), (False, False, False), (True, True, False)]
    assert all((r["error"] is None) == (" error: " not in line) and (r["error"] or "") in line
               for r, line in zip(saved, lines, strict=False))


def test_json(config_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["configs-report", str(config_folder / "nested"), str(config_folder), "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [Path(r["config"]).name for r in reports] == [
        "a_good.config", "b_unsupported_model.config", "d_broken.config",
        "c_unsupported_train.config"]  # a config under two given folders is reported once
    assert {key for r in reports for key in r} == {
        "config", "parse", "build", "train_step", "error", "seconds"}
    good, model, broken, train = reports
    assert (good["parse"], good["build"], good["train_step"], good["error"]) == (True, True, True, None)
    assert (model["parse"], model["build"], model["train_step"]) == (True, False, False)
    assert UNSUPPORTED_EXTRACTOR in model["error"]
    assert (broken["parse"], broken["build"], broken["train_step"]) == (False, False, False)
    assert "d_broken.config" in broken["error"]
    assert (train["parse"], train["build"], train["train_step"]) == (True, True, False)
    assert train["error"].startswith("train_config.use_multiclass_scores")


def test_train_step_time_limit(config_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(config_folder / "a_good.config")
    assert main(["configs-report", good, "--json", "--max_seconds", "0.001"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert (report["build"], report["train_step"]) == (True, False)
    assert report["error"] == "train step: stopped after the time limit of 0.001 s"


def test_missing_folder_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["configs-report", str(tmp_path), str(tmp_path / "missing")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"objdet configs-report: error: {tmp_path / 'missing'}: no such folder"]


@pytest.mark.parametrize("seed", range(5))
def test_random_batch_is_valid_training_data(seed: int) -> None:
    images, targets = random_batch(num_classes=3, seed=seed)
    assert [tuple(image.shape) for image in images] == [(3, IMAGE_SIZE, IMAGE_SIZE)] * NUM_IMAGES
    for target in targets:
        boxes, labels = target["boxes"], target["labels"]
        assert 1 <= boxes.shape[0] <= 3 and labels.shape == (boxes.shape[0],)
        assert (boxes[:, 2:] - boxes[:, :2] >= 4).all()
        assert (boxes >= 0).all() and (boxes <= IMAGE_SIZE).all()
        assert ((labels >= 1) & (labels <= 3)).all()
