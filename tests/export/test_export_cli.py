"""``objdet export``: the real command line (a subprocess for the success path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_detector import STEP, TinyTraining

from objdet import config as cfg
from objdet.cli.main import main

MAX_DETECTIONS_OVERRIDE = 5
NMS_FIELD = "model.ssd.post_processing.batch_non_max_suppression"


def test_export_command_writes_the_directory_with_overrides(
    tiny_training: TinyTraining, tmp_path: Path
) -> None:
    output = tmp_path / "exported"
    completed = subprocess.run(
        [sys.executable, "-m", "objdet", "export", "--input_type", "tf_example",
         "--pipeline_config_path", str(tiny_training.config_path),
         "--trained_checkpoint_dir", str(tiny_training.checkpoint_dir),
         "--output_directory", str(output),
         "--override",
         f"{NMS_FIELD}.max_total_detections={MAX_DETECTIONS_OVERRIDE}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"step {STEP}, ema weights, input_type tf_example, canvas 64x64" in completed.stdout
    saved = cfg.read_config(output / "pipeline.config")
    nms = saved.model.ssd.post_processing.batch_non_max_suppression
    assert nms.max_total_detections == MAX_DETECTIONS_OVERRIDE
    signature = json.loads((output / "signature.json").read_text())
    assert signature["outputs"]["detection_scores"]["shape"] == [1, MAX_DETECTIONS_OVERRIDE]
    assert signature["inputs"]["input_tensor"] == {"dtype": "string", "shape": [1]}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--input_type", "png"], "input_type: 'png' is not supported"),
        (["--trained_checkpoint_dir", "/nonexistent/model_dir"], "checkpoint directory does not exist"),
        (["--pipeline_config_path", "/nonexistent/pipeline.config"], "/nonexistent/pipeline.config"),
    ],
)
def test_export_command_errors_are_one_line(
    flags: list[str], message: str, tiny_training: TinyTraining, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = {
        "--pipeline_config_path": str(tiny_training.config_path),
        "--trained_checkpoint_dir": str(tiny_training.checkpoint_dir),
        "--output_directory": str(tmp_path / "out"),
    }
    arguments.update(dict(zip(flags[::2], flags[1::2])))
    assert main(["export", *[part for pair in arguments.items() for part in pair]]) == 2
    error = capsys.readouterr().err
    assert error.startswith("objdet export: error:") and message in error
    assert "Traceback" not in error and not (tmp_path / "out").exists()
