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
from objdet.export.exporter import version_directory

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
         "--output_directory", str(output), "--formats", "pt2",
         "--override",
         f"{NMS_FIELD}.max_total_detections={MAX_DETECTIONS_OVERRIDE}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"step {STEP}, ema weights, input_type tf_example, canvas 64x64" in completed.stdout
    assert sorted(p.name for p in output.iterdir()) == ["1"]  # the first version of the base path
    output = output / "1"
    saved = cfg.read_config(output / "pipeline.config")
    nms = saved.model.ssd.post_processing.batch_non_max_suppression
    assert nms.max_total_detections == MAX_DETECTIONS_OVERRIDE
    signature = json.loads((output / "signature.json").read_text())
    assert signature["outputs"]["detection_scores"]["shape"] == [1, MAX_DETECTIONS_OVERRIDE]
    assert signature["inputs"]["input_tensor"] == {"dtype": "string", "shape": [1]}
    assert "onnx" not in signature and not (output / "model.onnx").exists()  # --formats pt2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--input_type", "png"], "input_type: 'png' is not supported"),
        (["--trained_checkpoint_dir", "/nonexistent/model_dir"], "checkpoint directory does not exist"),
        (["--pipeline_config_path", "/nonexistent/pipeline.config"], "/nonexistent/pipeline.config"),
        (["--formats", "pt2,tflite"], "formats: tflite unknown; expected some of pt2, onnx"),
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


def test_export_versions_are_numbered_and_never_overwritten(
    tiny_training: TinyTraining, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from objdet.inference.predictor import Predictor, resolve_export_directory

    base = tmp_path / "models" / "tiny"
    flags = ["export", "--pipeline_config_path", str(tiny_training.config_path),
             "--trained_checkpoint_dir", str(tiny_training.checkpoint_dir),
             "--output_directory", str(base), "--formats", "pt2"]
    assert main(flags) == 0 and main([*flags, "--version", "7"]) == 0
    assert sorted(p.name for p in base.iterdir()) == ["1", "7"]
    assert str(base / "7") in capsys.readouterr().out.splitlines()[-1]
    # "next" (the default) is one past the highest version; other names are not versions
    (base / ".7.tmp-export").mkdir()
    assert version_directory(base, "next") == base / "8"
    # the base path resolves to its highest version
    assert resolve_export_directory(base) == base / "7"
    assert Predictor.from_export(base).label_map is not None
    assert main([*flags, "--version", "1"]) == 2
    assert "version 1 already exists" in capsys.readouterr().err
    assert main([*flags, "--version", "x"]) == 2
    assert "expected a positive integer or 'next'" in capsys.readouterr().err
    flat = tmp_path / "flat"
    assert main([*flags[:-4], "--output_directory", str(flat), "--formats", "pt2", "--version", "none"]) == 0
    assert (flat / "signature.json").is_file()
    assert main([*flags[:-4], "--output_directory", str(flat), "--formats", "pt2"]) == 2
    assert "holds an unversioned export" in capsys.readouterr().err
